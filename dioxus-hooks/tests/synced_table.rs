//! `use_synced_table` in a headless `VirtualDom`: rows in key order, re-rendered on local
//! and remote changes of their table only, with bursts coalesced.

mod common;

use common::*;
use dioxus::prelude::*;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use wavesyncdb::WaveSyncDb;
use wavesyncdb_dioxus::{provide_db, use_db, use_synced_table};

#[derive(Clone)]
struct Harness {
    db: WaveSyncDb,
    renders: Rc<Cell<usize>>,
}

#[allow(non_snake_case)]
fn TaskList() -> Element {
    let harness = use_context::<Harness>();
    harness.renders.set(harness.renders.get() + 1);
    let tasks = use_synced_table::<task::Entity>(&harness.db);
    let tasks = tasks.read();
    rsx! {
        p { "count={tasks.len()}" }
        ul {
            for task in tasks.iter() {
                li { key: "{task.id}", "[{task.id}:{task.title}]" }
            }
        }
    }
}

fn harness(db: WaveSyncDb) -> (Harness, Rc<Cell<usize>>) {
    let renders = Rc::new(Cell::new(0));
    (
        Harness {
            db,
            renders: Rc::clone(&renders),
        },
        renders,
    )
}

#[test]
fn shows_rows_in_key_order_and_re_renders_on_local_insert() {
    smol::block_on(async {
        let peer = Peer::open().await;
        peer.add_task("c", "Cook").await;
        peer.add_task("a", "Ask").await;
        let (harness, _) = harness(peer.db.clone());
        let mut dom = dom_with(TaskList, harness);

        let html = render_until(&mut dom, "the two stored rows", |h| h.contains("count=2")).await;
        let (a, c) = (html.find("[a:Ask]"), html.find("[c:Cook]"));
        assert!(
            a.is_some() && c.is_some() && a < c,
            "rows not in key order: {html}"
        );

        peer.add_task("b", "Buy milk").await;
        let html = render_until(&mut dom, "the local insert", |h| h.contains("[b:Buy milk]")).await;
        let positions: Vec<_> = ["[a:", "[b:", "[c:"].iter().map(|k| html.find(k)).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "rows not in key order: {html}"
        );
    });
}

#[test]
fn re_renders_on_a_remote_change() {
    smol::block_on(async {
        let here = Peer::open().await;
        let there = Peer::open().await;
        let (harness, _) = harness(here.db.clone());
        let mut dom = dom_with(TaskList, harness);
        render_until(&mut dom, "the empty table", |h| h.contains("count=0")).await;

        there.add_task("r", "From a peer").await;
        for change_set in there.take_change_sets() {
            here.db
                .apply_remote(change_set)
                .await
                .expect("apply remote");
        }
        render_until(&mut dom, "the remote row", |h| {
            h.contains("[r:From a peer]")
        })
        .await;
    });
}

#[test]
fn a_change_to_another_table_does_not_re_render() {
    smol::block_on(async {
        let peer = Peer::open().await;
        peer.add_task("a", "Ask").await;
        let (harness, renders) = harness(peer.db.clone());
        let mut dom = dom_with(TaskList, harness);
        render_until(&mut dom, "the stored row", |h| h.contains("[a:Ask]")).await;
        // Let the first load's aftermath settle, then count.
        render_for(&mut dom, Duration::from_millis(400)).await;
        let before = renders.get();

        let other = Peer::open().await;
        peer.add_note("n1", "local note").await;
        other.add_note("n2", "remote note").await;
        for change_set in other.take_change_sets() {
            peer.db
                .apply_remote(change_set)
                .await
                .expect("apply remote");
        }
        // Longer than the hooks' coalescing window: a reload would have rendered by now.
        render_for(&mut dom, Duration::from_millis(800)).await;
        assert_eq!(
            renders.get(),
            before,
            "a change to `notes` re-rendered the task list"
        );

        // The list still follows its own table, with one render.
        peer.add_task("b", "Buy").await;
        render_until(&mut dom, "the new task", |h| h.contains("[b:Buy]")).await;
        render_for(&mut dom, Duration::from_millis(400)).await;
        assert_eq!(renders.get(), before + 1);
    });
}

#[test]
fn a_burst_of_1000_remote_writes_is_coalesced() {
    smol::block_on(async {
        let here = Peer::open().await;
        let there = Peer::open().await;
        // 1,000 transactions on the other peer: 1,000 change sets.
        let mut change_sets = Vec::new();
        for i in 0..1000 {
            there
                .add_task(&format!("t{i:04}"), &format!("task {i}"))
                .await;
            change_sets.extend(there.take_change_sets());
        }
        assert_eq!(change_sets.len(), 1000);

        let (harness, renders) = harness(here.db.clone());
        let mut dom = dom_with(TaskList, harness);
        render_until(&mut dom, "the empty table", |h| h.contains("count=0")).await;
        render_for(&mut dom, Duration::from_millis(300)).await;
        let before = renders.get();

        // Apply them as fast as the database allows, from another thread, while this
        // thread keeps rendering whatever the hook asks for.
        let db = here.db.clone();
        let started = Instant::now();
        let applier = std::thread::spawn(move || {
            smol::block_on(async move {
                for change_set in change_sets {
                    db.apply_remote(change_set).await.expect("apply remote");
                }
            });
        });
        render_until(&mut dom, "all 1000 rows", |h| h.contains("count=1000")).await;
        applier.join().expect("applier thread");
        render_for(&mut dom, Duration::from_millis(400)).await;
        let burst_renders = renders.get() - before;
        eprintln!(
            "1000 remote change sets applied in {:?}: {burst_renders} renders",
            started.elapsed()
        );
        assert!(
            (1..=30).contains(&burst_renders),
            "{burst_renders} renders for a burst of 1000 writes; they should be coalesced"
        );
    });
}

#[derive(Clone)]
struct RootDb(WaveSyncDb);

#[allow(non_snake_case)]
fn ProvidingRoot() -> Element {
    let RootDb(db) = use_context::<RootDb>();
    use_hook(|| provide_db(db));
    rsx! { ContextChild {} }
}

#[allow(non_snake_case)]
fn ContextChild() -> Element {
    let tasks = use_synced_table::<task::Entity>(use_db());
    rsx! {
        for task in tasks.read().iter() {
            span { "ctx:{task.title}" }
        }
    }
}

#[test]
fn use_db_finds_the_provided_database() {
    smol::block_on(async {
        let peer = Peer::open().await;
        peer.add_task("a", "From context").await;
        let mut dom = dom_with(ProvidingRoot, RootDb(peer.db.clone()));
        render_until(&mut dom, "the row read through use_db", |h| {
            h.contains("ctx:From context")
        })
        .await;
    });
}
