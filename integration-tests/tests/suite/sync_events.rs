//! Sync events and relays on loopback (no root needed): the app is told when peers come
//! and go and how they are connected; two peers that know only a relay server (a real
//! `wavesync-server` process) find each other through its rendezvous and sync.

use futures::StreamExt;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wavesyncdb::{ConnectionKind, Error, SyncEvent, WaveSyncDbBuilder};
use wavesyncdb_integration_tests::{TestPeer, assert_converge, task, wait_until};

const NODE: &str = env!("CARGO_BIN_EXE_nat_node");
const WAIT: Duration = Duration::from_secs(30);

/// Waits for the first event `matches` accepts; panics after `WAIT` with what was seen.
async fn next_matching(
    events: &mut wavesyncdb::SyncEvents,
    matches: impl Fn(&SyncEvent) -> bool,
) -> SyncEvent {
    let mut seen = Vec::new();
    let found = smol::future::or(
        async {
            while let Some(event) = events.next().await {
                let event = event.expect("no lag in a quiet test");
                if matches(&event) {
                    return Some(event);
                }
                seen.push(format!("{event:?}"));
            }
            None
        },
        async {
            smol::Timer::after(WAIT).await;
            None
        },
    )
    .await;
    found.unwrap_or_else(|| panic!("no matching event within {WAIT:?}; saw {seen:?}"))
}

#[test]
fn peers_coming_and_going_are_pushed_with_their_connection_kind() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        // Subscribe before anything can happen.
        let mut events = a.db.sync_events();
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let b_id = b.db.peer_id().expect("b has a network");
        let connected = next_matching(
            &mut events,
            |e| matches!(e, SyncEvent::PeerConnected { peer, .. } if *peer == b_id),
        )
        .await;
        assert_eq!(
            connected,
            SyncEvent::PeerConnected {
                peer: b_id,
                connection: ConnectionKind::Direct
            }
        );
        // The status follows the event within a moment (the driver records the member).
        assert!(
            wait_until(WAIT, || async {
                a.db.peers().iter().any(|p| {
                    p.peer_id == b_id && p.connected && p.connection == Some(ConnectionKind::Direct)
                })
            })
            .await,
            "a does not list b as connected directly: {:?}",
            a.db.peers()
        );

        b.stop().await;
        next_matching(
            &mut events,
            |e| matches!(e, SyncEvent::PeerDisconnected { peer } if *peer == b_id),
        )
        .await;
        assert!(
            wait_until(WAIT, || async {
                a.db.peers()
                    .iter()
                    .all(|p| p.peer_id != b_id || (!p.connected && p.connection.is_none()))
            })
            .await,
            "a still shows b connected"
        );
        // Once the engine stops, the stream ends.
        a.db.shutdown().await;
        let ended = smol::future::or(
            async {
                while events.next().await.is_some() {}
                true
            },
            async {
                smol::Timer::after(WAIT).await;
                false
            },
        )
        .await;
        assert!(ended, "the event stream did not end after shutdown");
    });
}

#[test]
fn a_relay_address_without_the_server_id_is_refused_with_the_fix() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let result = WaveSyncDbBuilder::new(
            format!("sqlite:{}?mode=rwc", dir.path().join("a.db").display()),
            "tests",
        )
        .relay("/ip4/127.0.0.1/tcp/4001".parse().expect("multiaddr"))
        .build()
        .await;
        let err = result.expect_err("a relay address must name its server");
        assert!(matches!(err, Error::InvalidRelayAddress { .. }), "{err}");
        assert!(err.to_string().contains("/p2p/"), "{err}");
    });
}

/// A relay server process on loopback; killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a relay server process on loopback with `extra` arguments; its address.
fn start_server(dir: &std::path::Path, extra: &[&str]) -> (Server, wavesyncdb::Multiaddr) {
    let mut child = Command::new(NODE)
        .args(["server", "--listen", "/ip4/127.0.0.1/tcp/0", "--key"])
        .arg(dir.join("server.key"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the relay server");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let relay = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("the server prints its address");
        if let Some(address) = line.strip_prefix("listening: ") {
            break address.parse().expect("a multiaddr");
        }
    };
    (server, relay)
}

#[test]
fn the_server_refuses_connections_beyond_its_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, relay) = start_server(dir.path(), &["--max-connections", "2"]);
    smol::block_on(async {
        let with_relay = |builder: WaveSyncDbBuilder| builder.relay(relay.clone());
        let mut reserved = Vec::new();
        let mut peers = Vec::new();
        for name in ["a", "b", "c"] {
            let peer =
                TestPeer::start_with(&dir.path().join(format!("{name}.db")), &[], with_relay).await;
            let mut events = peer.db.sync_events();
            // Each in turn, so the first two are the ones let in.
            let got = smol::future::or(
                async {
                    while let Some(event) = events.next().await {
                        if matches!(event, Ok(SyncEvent::RelayReserved { .. })) {
                            return true;
                        }
                    }
                    false
                },
                async {
                    smol::Timer::after(if reserved.len() < 2 {
                        WAIT
                    } else {
                        Duration::from_secs(5)
                    })
                    .await;
                    false
                },
            )
            .await;
            reserved.push(got);
            peers.push(peer);
        }
        assert_eq!(
            reserved,
            vec![true, true, false],
            "two connections allowed, the third refused"
        );
        for peer in peers {
            peer.stop().await;
        }
    });
    drop(server);
}

#[test]
fn peers_that_know_only_the_relay_find_each_other_and_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, relay) = start_server(dir.path(), &[]);
    smol::block_on(async {
        let with_relay = |builder: WaveSyncDbBuilder| builder.relay(relay.clone());
        let a = TestPeer::start_with(&dir.path().join("a.db"), &[], with_relay).await;
        let mut events = a.db.sync_events();
        let b = TestPeer::start_with(&dir.path().join("b.db"), &[], with_relay).await;
        let b_id = b.db.peer_id().expect("b has a network");
        use sea_orm::{ActiveModelTrait, Set};
        task::ActiveModel {
            id: Set("a1".into()),
            title: Set("found through the relay".into()),
            completed: Set(false),
        }
        .insert(&a.db)
        .await
        .expect("insert");
        task::ActiveModel {
            id: Set("b1".into()),
            title: Set("and back".into()),
            completed: Set(false),
        }
        .insert(&b.db)
        .await
        .expect("insert");
        next_matching(
            &mut events,
            |e| matches!(e, SyncEvent::PeerConnected { peer, .. } if *peer == b_id),
        )
        .await;
        assert_converge(&[&a, &b], WAIT).await;
        assert_eq!(a.tasks().await.len(), 2);
        // A's circuit address is one it hands out while the relay carries it ...
        let circuit = |db: &wavesyncdb::WaveSyncDb| {
            db.listening_addresses()
                .iter()
                .any(|address| address.to_string().contains("/p2p-circuit"))
        };
        assert!(
            wait_until(WAIT, || async { circuit(&a.db) }).await,
            "no circuit address: {:?}",
            a.db.listening_addresses()
        );
        // ... and not after the relay is gone.
        drop(server);
        assert!(
            wait_until(WAIT, || async { !circuit(&a.db) }).await,
            "a circuit address outlived its relay: {:?}",
            a.db.listening_addresses()
        );
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_catch_up_is_pushed_as_started_progress_and_finished() {
    smol::block_on(async {
        use sea_orm::{EntityTrait, TransactionTrait};
        let dir = tempfile::tempdir().expect("temp dir");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        for start in (0..600).step_by(100) {
            let txn = a.db.begin().await.unwrap();
            task::Entity::insert_many(
                (start..start + 100)
                    .map(|i| wavesyncdb_integration_tests::new_task(&format!("t{i:04}"), "row")),
            )
            .exec(&txn)
            .await
            .unwrap();
            txn.commit().await.unwrap();
        }
        // After a restart these are only in A's log: B gets them by catch-up, not live.
        a.close().await;
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let a_id = a.db.peer_id().expect("a has a network");
        // B's events are subscribed before B connects to anyone.
        let b = TestPeer::start(&dir.path().join("b.db"), &[]).await;
        let mut events = b.db.sync_events();
        b.db.dial(a.address()).await.expect("dial a");
        let started = next_matching(
            &mut events,
            |e| matches!(e, SyncEvent::CatchUpStarted { peer, .. } if *peer == a_id),
        )
        .await;
        assert_eq!(
            started,
            SyncEvent::CatchUpStarted {
                peer: a_id,
                total: 6
            }
        );
        let finished = next_matching(
            &mut events,
            |e| matches!(e, SyncEvent::CatchUpFinished { peer, .. } if *peer == a_id),
        )
        .await;
        assert_eq!(
            finished,
            SyncEvent::CatchUpFinished {
                peer: a_id,
                done: 6
            }
        );
        assert_converge(&[&a, &b], WAIT).await;
    });
}
