//! `use_synced_query` in a headless `VirtualDom`: a filtered, ordered query that re-runs
//! on changes of the table it reads (not of others), and when a signal it reads changes.

mod common;

use common::*;
use dioxus::prelude::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use wavesyncdb::WaveSyncDb;
use wavesyncdb_dioxus::use_synced_query;

#[derive(Clone)]
struct Harness {
    db: WaveSyncDb,
    renders: Rc<Cell<usize>>,
    /// The component's search signal, handed out so the test can type into it.
    search: Rc<RefCell<Option<Signal<String>>>>,
}

#[allow(non_snake_case)]
fn OpenTasks() -> Element {
    let harness = use_context::<Harness>();
    harness.renders.set(harness.renders.get() + 1);
    let search = use_signal(String::new);
    use_hook(|| *harness.search.borrow_mut() = Some(search));
    let open = use_synced_query(&harness.db, move || {
        task::Entity::find()
            .filter(task::Column::Completed.eq(false))
            .filter(task::Column::Title.contains(search()))
            .order_by_desc(task::Column::Title)
    });
    let open = open.read();
    rsx! {
        p { "loading={open.loading()} count={open.len()}" }
        for task in open.iter() { span { "[{task.title}]" } }
    }
}

async fn add(db: &WaveSyncDb, id: &str, title: &str, completed: bool) {
    task::ActiveModel {
        id: Set(id.into()),
        title: Set(title.into()),
        completed: Set(completed),
    }
    .insert(db)
    .await
    .expect("insert task");
}

#[test]
fn a_filtered_ordered_query_follows_its_table_and_its_signals() {
    smol::block_on(async {
        let peer = Peer::open().await;
        add(&peer.db, "1", "alpha", false).await;
        add(&peer.db, "2", "beta", true).await;
        add(&peer.db, "3", "gamma", false).await;
        let renders = Rc::new(Cell::new(0));
        let search = Rc::new(RefCell::new(None));
        let harness = Harness {
            db: peer.db.clone(),
            renders: Rc::clone(&renders),
            search: Rc::clone(&search),
        };
        let mut dom = dom_with(OpenTasks, harness);
        assert!(dioxus_ssr::render(&dom).contains("loading=true"));

        // Filtered (no completed `beta`) and ordered by title, descending.
        render_until(&mut dom, "the open tasks", |h| {
            h.contains("loading=false count=2") && h.find("[gamma]") < h.find("[alpha]")
        })
        .await;

        // A write to the table re-runs the query, local or remote.
        add(&peer.db, "4", "delta", false).await;
        render_until(&mut dom, "the new open task", |h| h.contains("count=3")).await;
        let other = Peer::open().await;
        add(&other.db, "5", "epsilon", false).await;
        for change_set in other.take_change_sets() {
            peer.db
                .apply_remote(change_set)
                .await
                .expect("apply remote");
        }
        render_until(&mut dom, "the remote task", |h| h.contains("[epsilon]")).await;

        // A write to another table does not re-run it (no render).
        render_for(&mut dom, Duration::from_millis(400)).await;
        let before = renders.get();
        peer.add_note("n", "a note").await;
        render_for(&mut dom, Duration::from_millis(800)).await;
        assert_eq!(
            renders.get(),
            before,
            "a change to `notes` re-ran the task query"
        );

        // The closure reads `search`: typing re-runs the query with the new filter.
        let search = search
            .borrow()
            .expect("the component handed out its signal");
        dom.in_runtime(|| {
            let mut search = search;
            search.set("lph".to_owned());
        });
        render_until(&mut dom, "the searched task", |h| {
            h.contains("count=1") && h.contains("[alpha]")
        })
        .await;
        // And the new query still follows the table.
        add(&peer.db, "6", "alphabet", false).await;
        render_until(&mut dom, "the new match", |h| {
            h.contains("count=2") && h.contains("[alphabet]")
        })
        .await;
    });
}
