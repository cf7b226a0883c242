//! `use_synced_row` in a headless `VirtualDom`: it follows one row through updates (local
//! and remote), ignores other rows, and becomes `None` when the row is deleted.

mod common;

use common::*;
use dioxus::prelude::*;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use wavesyncdb::WaveSyncDb;
use wavesyncdb_dioxus::use_synced_row;

#[derive(Clone)]
struct Harness {
    db: WaveSyncDb,
    renders: Rc<Cell<usize>>,
}

#[allow(non_snake_case)]
fn OneTask() -> Element {
    let harness = use_context::<Harness>();
    harness.renders.set(harness.renders.get() + 1);
    let task = use_synced_row::<task::Entity>(&harness.db, "a".to_owned());
    match task.read().as_ref() {
        Some(task) => rsx! { p { "row=({task.title})" } },
        None => rsx! { p { "row=none" } },
    }
}

async fn rename(db: &WaveSyncDb, id: &str, title: &str) {
    task::ActiveModel {
        id: Set(id.into()),
        title: Set(title.into()),
        ..Default::default()
    }
    .update(db)
    .await
    .expect("update task");
}

#[test]
fn follows_one_row_until_it_is_deleted() {
    smol::block_on(async {
        let peer = Peer::open().await;
        let renders = Rc::new(Cell::new(0));
        let harness = Harness {
            db: peer.db.clone(),
            renders: Rc::clone(&renders),
        };
        let mut dom = dom_with(OneTask, harness);
        render_until(&mut dom, "no row yet", |h| h.contains("row=none")).await;

        peer.add_task("a", "first").await;
        render_until(&mut dom, "the inserted row", |h| h.contains("row=(first)")).await;

        rename(&peer.db, "a", "second").await;
        render_until(&mut dom, "the updated row", |h| h.contains("row=(second)")).await;

        // Another row of the same table: no re-render.
        render_for(&mut dom, Duration::from_millis(400)).await;
        let before = renders.get();
        peer.add_task("b", "other").await;
        rename(&peer.db, "b", "other, renamed").await;
        render_for(&mut dom, Duration::from_millis(800)).await;
        assert_eq!(
            renders.get(),
            before,
            "a change to row `b` re-rendered the view of row `a`"
        );

        // A remote update of the row.
        let other = Peer::open().await;
        other.add_task("a", "from a peer").await;
        for change_set in other.take_change_sets() {
            peer.db
                .apply_remote(change_set)
                .await
                .expect("apply remote");
        }
        render_until(&mut dom, "the remote update", |h| {
            h.contains("row=(from a peer)")
        })
        .await;

        task::Entity::delete_by_id("a".to_owned())
            .exec(&peer.db)
            .await
            .expect("delete task");
        render_until(&mut dom, "the deletion", |h| h.contains("row=none")).await;
    });
}
