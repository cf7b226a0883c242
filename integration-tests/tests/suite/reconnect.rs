//! Peers named by address stay connected: a bootstrap address whose peer is not up yet,
//! or restarts, is dialled again until it answers; and the status agrees with the
//! connection events at the moment they are read.

use futures::StreamExt;
use std::time::Duration;
use wavesyncdb::{SyncEvent, WaveSyncDbBuilder};
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, task, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

async fn start_on(
    path: &std::path::Path,
    port: u16,
    bootstrap: &[wavesyncdb::Multiaddr],
) -> TestPeer {
    let listen: wavesyncdb::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
    TestPeer::start_with(path, bootstrap, move |builder: WaveSyncDbBuilder| {
        builder.listen_on(listen)
    })
    .await
}

#[test]
fn a_bootstrap_peer_that_starts_later_or_restarts_is_reached() {
    smol::block_on(async {
        use sea_orm::EntityTrait;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let a_address: wavesyncdb::Multiaddr =
            format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
        // B knows A's address before A runs: its first dial is refused.
        let b = TestPeer::start(&dir.path().join("b.db"), std::slice::from_ref(&a_address)).await;
        task::Entity::insert(new_task("b1", "written before A was up"))
            .exec(&b.db)
            .await
            .expect("insert");
        smol::Timer::after(Duration::from_secs(2)).await;
        let a = start_on(&dir.path().join("a.db"), port, &[]).await;
        assert_converge(&[&a, &b], WAIT).await;
        assert_eq!(a.tasks().await.len(), 1);

        // A restarts on the same address; B dials it again by itself.
        a.close().await;
        let b_sees_a_gone =
            wait_until(WAIT, || async { b.db.peers().iter().all(|p| !p.connected) }).await;
        assert!(b_sees_a_gone, "{:?}", b.db.peers());
        let a = start_on(&dir.path().join("a.db"), port, &[]).await;
        task::Entity::insert(new_task("a1", "written after the restart"))
            .exec(&a.db)
            .await
            .expect("insert");
        assert_converge(&[&a, &b], WAIT).await;
        assert_eq!(b.tasks().await.len(), 2);
    });
}

/// At the first `PeerConnected` (or `PeerDisconnected`) of `peer`: whether `peers()`,
/// read at once, shows it connected. `None` if no such event came within `WAIT`.
async fn status_at_event(
    events: &mut wavesyncdb::SyncEvents,
    db: &wavesyncdb::WaveSyncDb,
    peer: wavesyncdb::PeerId,
    connected: bool,
) -> Option<bool> {
    smol::future::or(
        async {
            while let Some(event) = events.next().await {
                let hit = match event {
                    Ok(SyncEvent::PeerConnected { peer: p, .. }) => connected && p == peer,
                    Ok(SyncEvent::PeerDisconnected { peer: p }) => !connected && p == peer,
                    _ => false,
                };
                if hit {
                    return Some(db.peers().iter().any(|p| p.peer_id == peer && p.connected));
                }
            }
            None
        },
        async {
            smol::Timer::after(WAIT).await;
            None
        },
    )
    .await
}

#[test]
fn the_status_agrees_with_connection_events_when_they_are_read() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let mut events = a.db.sync_events();
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let b_id = b.db.peer_id().expect("b's id");
        // Read at once: no waiting for the driver.
        let connected_at_event = status_at_event(&mut events, &a.db, b_id, true).await;
        assert_eq!(connected_at_event, Some(true));
        b.stop().await;
        let gone_at_event = status_at_event(&mut events, &a.db, b_id, false).await;
        assert_eq!(
            gone_at_event,
            Some(false),
            "still connected when the event was read"
        );
    });
}
