//! `use_sync_status` in a headless `VirtualDom`: it shows where the node stands.

mod common;

use common::*;
use dioxus::prelude::*;
use wavesyncdb::WaveSyncDb;
use wavesyncdb_dioxus::use_sync_status;

#[derive(Clone)]
struct Db(WaveSyncDb);

#[allow(non_snake_case)]
fn Status() -> Element {
    let Db(db) = use_context::<Db>();
    let status = use_sync_status(&db);
    match status.read().as_ref() {
        Some(s) => {
            rsx! { p { "peers={s.connected_peers} behind={s.behind} heads={s.heads.len()}" } }
        }
        None => rsx! { p { "starting" } },
    }
}

#[test]
fn shows_the_status_and_follows_local_commits() {
    smol::block_on(async {
        let peer = Peer::open().await;
        let mut dom = dom_with(Status, Db(peer.db.clone()));
        render_until(&mut dom, "the first status", |h| {
            h.contains("peers=0 behind=0 heads=0")
        })
        .await;
        // A first commit gives this node a head; the status follows.
        peer.add_task("a", "Ask").await;
        render_until(&mut dom, "the new head", |h| h.contains("heads=1")).await;
    });
}
