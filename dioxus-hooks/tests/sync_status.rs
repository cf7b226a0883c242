//! `use_sync_status` in a headless `VirtualDom`: it shows where the node stands, pushed by
//! commits and by the engine's events (peers coming and going), without polling.

mod common;

use common::*;
use dioxus::prelude::*;
use wavesyncdb::{ConnectionKind, WaveSyncDb};
use wavesyncdb_dioxus::use_sync_status;

#[derive(Clone)]
struct Db(WaveSyncDb);

#[allow(non_snake_case)]
fn Status() -> Element {
    let Db(db) = use_context::<Db>();
    let status = use_sync_status(&db);
    match status.read().as_ref() {
        Some(s) => {
            let links: Vec<&str> = s
                .peers
                .iter()
                .filter_map(|p| p.connection)
                .map(|kind| match kind {
                    ConnectionKind::Direct => "direct",
                    ConnectionKind::Relayed => "relayed",
                })
                .collect();
            let links = links.join(",");
            rsx! { p { "peers={s.connected_peers} behind={s.behind} heads={s.heads.len()} links=[{links}]" } }
        }
        None => rsx! { p { "starting" } },
    }
}

/// Without network there are no sync events (the stream ends at once): the hook follows
/// the change bus alone.
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

/// Two real engines on 127.0.0.1, with nothing to sync: no commit, so no change
/// notification moves the status, only the engine's events do. The peer is shown when it
/// connects and gone when it shuts down; once this node's own engine stopped, commits
/// still move the status.
#[test]
fn a_peer_connecting_and_leaving_is_pushed_to_the_status() {
    smol::block_on(async {
        let topic = format!("dioxus-status-{}", std::process::id());
        let secret = WaveSyncDb::generate_secret();
        let here = Peer::start(&topic, &secret, &[]).await;
        let mut dom = dom_with(Status, Db(here.db.clone()));
        render_until(&mut dom, "no peer yet", |h| h.contains("peers=0")).await;

        let there = Peer::start(&topic, &secret, &[here.address()]).await;
        render_until(&mut dom, "the peer, connected directly", |h| {
            h.contains("peers=1") && h.contains("links=[direct]")
        })
        .await;

        there.db.shutdown().await;
        render_until(&mut dom, "the peer gone", |h| {
            h.contains("peers=0") && h.contains("links=[]")
        })
        .await;

        // The event stream ends with the engine; the change bus still moves the status.
        here.db.shutdown().await;
        here.add_task("a", "After the engine").await;
        render_until(&mut dom, "the new head", |h| h.contains("heads=1")).await;
    });
}
