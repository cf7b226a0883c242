//! Knowing when data is safe, and why a connection failed, on real swarms on 127.0.0.1:
//! `wait_until_replicated` resolves only once a peer holds this node's writes,
//! `wait_until_caught_up` only once this node holds what its peer has, `peers()` counts
//! `behind` truthfully, and failed dials and handshakes say why.

use futures::StreamExt;
use sea_orm::{EntityTrait, PaginatorTrait, TransactionTrait};
use std::time::Duration;
use wavesyncdb::testing::{ScriptedPeer, ScriptedRequest, ScriptedResponse};
use wavesyncdb::{Error, GroupSecret, SyncEvent, WaveSyncDbBuilder};
use wavesyncdb_integration_tests::{TestPeer, new_task, task, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// `future`'s output, or `None` if `within` passes first.
async fn within<T>(within: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(future.await) }, async {
        smol::Timer::after(within).await;
        None
    })
    .await
}

async fn insert_tasks(peer: &TestPeer, prefix: &str, count: usize) {
    for n in 0..count {
        task::Entity::insert(new_task(&format!("{prefix}-{n:05}"), "t"))
            .exec(&peer.db)
            .await
            .expect("insert");
    }
}

#[test]
fn replicated_resolves_only_once_a_peer_holds_the_writes() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        insert_tasks(&a, "a", 30).await;
        // Nobody holds them: the future must still be waiting.
        let alone = within(Duration::from_millis(1500), a.db.wait_until_replicated(1)).await;
        assert!(alone.is_none(), "resolved with no peer: {alone:?}");

        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let holders = within(WAIT, a.db.wait_until_replicated(1))
            .await
            .expect("a peer holds the writes within the deadline")
            .expect("replicated");
        assert_eq!(holders, vec![b.db.peer_id().expect("b's id")]);
        // The claim is true: B has every row, at once.
        assert_eq!(task::Entity::find().count(&b.db).await.expect("count"), 30);
        assert_eq!(b.db.head(a.db.node_id()).await.expect("head"), 30);

        // Writes after the first answer: the future waits for the new ones.
        insert_tasks(&a, "more", 5).await;
        within(WAIT, a.db.wait_until_replicated(1))
            .await
            .expect("the new writes reach B")
            .expect("replicated");
        assert_eq!(b.db.head(a.db.node_id()).await.expect("head"), 35);
        // Two peers asked for, one online: still waiting.
        assert!(
            within(Duration::from_millis(800), a.db.wait_until_replicated(2))
                .await
                .is_none()
        );
    });
}

#[test]
fn caught_up_resolves_once_this_node_holds_what_its_peer_has() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        a.db.transaction::<_, (), sea_orm::DbErr>(|txn| {
            Box::pin(async move {
                for n in 0..3000 {
                    task::Entity::insert(new_task(&format!("bulk-{n:05}"), "t"))
                        .exec(txn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
        .expect("bulk insert");
        insert_tasks(&a, "a", 200).await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let from = within(WAIT, b.db.wait_until_caught_up())
            .await
            .expect("caught up within the deadline")
            .expect("caught up");
        assert_eq!(from, a.db.peer_id().expect("a's id"));
        // Every row is here the moment it resolves.
        assert_eq!(
            task::Entity::find().count(&b.db).await.expect("count"),
            3200
        );
        let status = b.db.sync_status().await.expect("status");
        assert_eq!(status.behind, 0);
        // peers() follows (it counts against heads kept in memory).
        let a_id = a.db.peer_id().expect("a's id");
        let zero = wait_until(WAIT, || async {
            b.db.peers()
                .iter()
                .any(|p| p.peer_id == a_id && p.behind == 0)
        })
        .await;
        assert!(zero, "peers() still counts A's rows: {:?}", b.db.peers());
    });
}

#[test]
fn peers_counts_behind_without_reading_the_database() {
    smol::block_on(async {
        // A peer that claims 40 transactions of some origin and serves none of them:
        // this node lacks all 40, and `peers()` (synchronous) says so.
        let origin =
            wavesyncdb::NodeId::from_peer_id_bytes(&wavesyncdb::PeerId::random().to_bytes());
        let claimer = ScriptedPeer::start("tests", move |request| match request {
            ScriptedRequest::Heads => ScriptedResponse::Heads(vec![(origin, 40)]),
            ScriptedRequest::Pull { .. } => ScriptedResponse::Page {
                operations: Vec::new(),
                last: true,
            },
        })
        .expect("scripted peer");
        let dir = tempfile::tempdir().expect("temp dir");
        let b = TestPeer::start(
            &dir.path().join("b.db"),
            std::slice::from_ref(&claimer.address),
        )
        .await;
        let counted = wait_until(WAIT, || async {
            b.db.peers().iter().any(|p| p.connected && p.behind == 40)
        })
        .await;
        assert!(counted, "peers() never said 40 behind: {:?}", b.db.peers());
        assert_eq!(b.db.sync_status().await.expect("status").behind, 40);
    });
}

#[test]
fn without_network_the_futures_fail_with_a_typed_error() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = wavesyncdb_integration_tests::open(&dir.path().join("x.db"))
            .await
            .expect("open");
        let err = db.wait_until_replicated(1).await.expect_err("no network");
        assert!(matches!(err, Error::NoNetwork { .. }), "{err:?}");
        assert!(err.to_string().contains("without_network()"), "{err}");
        let err = db.wait_until_caught_up().await.expect_err("no network");
        assert!(matches!(err, Error::NoNetwork { .. }), "{err:?}");
    });
}

#[test]
fn the_futures_end_when_the_engine_stops() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        insert_tasks(&a, "a", 1).await;
        let waiting = a.db.clone();
        let waiter = smol::spawn(async move { waiting.wait_until_replicated(1).await });
        smol::Timer::after(Duration::from_millis(300)).await;
        a.db.shutdown().await;
        let result = within(WAIT, waiter).await.expect("the waiter ends");
        assert!(matches!(result, Err(Error::EngineStopped)), "{result:?}");
    });
}

#[test]
fn listening_on_an_address_this_host_lacks_names_the_cause() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // TEST-NET-3: documentation addresses, never assigned to a host.
        let address: wavesyncdb::Multiaddr = "/ip4/203.0.113.9/tcp/0".parse().expect("addr");
        let err = WaveSyncDbBuilder::new(
            format!("sqlite:{}?mode=rwc", dir.path().join("x.db").display()),
            "tests",
        )
        .listen_on(address.clone())
        .mdns(false)
        .build()
        .await
        .expect_err("cannot listen there");
        match &err {
            Error::Listen {
                address: failed,
                source,
            } => {
                assert_eq!(failed, &address);
                assert!(!source.to_string().is_empty(), "an empty cause");
            }
            other => panic!("not Error::Listen: {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("/ip4/203.0.113.9/tcp/0"), "{message}");
        assert!(
            message.to_lowercase().contains("assign"),
            "the OS's cause is missing: {message}"
        );
        assert!(message.contains("port 0"), "no way forward: {message}");
    });
}

/// The first `ConnectionFailed` event.
async fn first_failure(
    events: &mut wavesyncdb::SyncEvents,
) -> Option<wavesyncdb::ConnectionFailure> {
    while let Some(event) = events.next().await {
        if let Ok(SyncEvent::ConnectionFailed(failure)) = event {
            return Some(failure);
        }
    }
    None
}

#[test]
fn a_dial_where_nothing_listens_is_reported() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let mut events = a.db.sync_events();
        let target: wavesyncdb::Multiaddr =
            format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
        a.db.dial(target.clone()).await.expect("dial");
        let failure = within(WAIT, first_failure(&mut events))
            .await
            .flatten()
            .expect("a ConnectionFailed event");
        assert_eq!(failure.address.as_ref(), Some(&target));
        assert!(!failure.incoming);
        assert!(failure.reason.contains("is the peer running"), "{failure}");
        let status = a.db.sync_status().await.expect("status");
        assert!(
            status.connection_failures.contains(&failure),
            "{:?}",
            status.connection_failures
        );
    });
}

#[test]
fn a_wrong_group_secret_is_told_on_both_sides() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let one = GroupSecret::generate();
        let other = GroupSecret::generate();
        let a = TestPeer::start_with(&dir.path().join("a.db"), &[], |b| b.group_secret(one)).await;
        let mut a_events = a.db.sync_events();
        let b =
            TestPeer::start_with(&dir.path().join("b.db"), &[], |b| b.group_secret(other)).await;
        let mut b_events = b.db.sync_events();
        b.db.dial(a.address()).await.expect("dial");
        let outgoing = within(WAIT, first_failure(&mut b_events))
            .await
            .flatten()
            .expect("B is told its dial failed");
        assert!(!outgoing.incoming);
        assert!(outgoing.reason.contains("group secret"), "{outgoing}");
        let incoming = within(WAIT, first_failure(&mut a_events))
            .await
            .flatten()
            .expect("A is told a handshake failed");
        assert!(incoming.incoming);
        assert!(incoming.reason.contains("group secret"), "{incoming}");
        assert!(b.db.peers().is_empty() && a.db.peers().is_empty());
    });
}

/// The database file and its WAL.
fn database_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    ["", "-wal"]
        .iter()
        .map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", path.display())))
        .collect()
}

/// Restores `backup` over `path` in place (same file, same identity: lost commits).
fn restore(backup: &std::path::Path, path: &std::path::Path) {
    let _ = std::fs::remove_file(format!("{}-shm", path.display()));
    for (source, target) in database_files(backup).into_iter().zip(database_files(path)) {
        if source.exists() {
            std::fs::copy(&source, &target).expect("copy");
        } else if target.exists() {
            std::fs::remove_file(&target).expect("remove");
        }
    }
}

#[test]
fn replicated_is_not_fooled_by_numbers_an_earlier_life_issued() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a_path, backup) = (dir.path().join("a.db"), dir.path().join("backup.db"));
        let b = TestPeer::start(&dir.path().join("b.db"), &[]).await;
        let a = TestPeer::start(&a_path, &[b.address()]).await;
        insert_tasks(&a, "old", 5).await;
        within(WAIT, a.db.wait_until_replicated(1))
            .await
            .expect("B holds the first five")
            .expect("replicated");
        a.close().await;
        database_files(&a_path)
            .iter()
            .zip(database_files(&backup))
            .filter(|(source, _)| source.exists())
            .for_each(|(source, target)| {
                std::fs::copy(source, target).expect("backup");
            });
        let a = TestPeer::start(&a_path, &[b.address()]).await;
        insert_tasks(&a, "lost", 3).await;
        within(WAIT, a.db.wait_until_replicated(1))
            .await
            .expect("B holds eight")
            .expect("replicated");
        a.close().await;
        // Power cut: A's last three commits are gone; B holds them as A's 6..8.
        restore(&backup, &a_path);
        // A writes while offline: number 6 again, unconfirmed.
        let offline = wavesyncdb_integration_tests::test_builder(&a_path)
            .without_network()
            .build()
            .await
            .expect("offline");
        offline
            .schema()
            .register::<task::Entity>()
            .sync()
            .await
            .expect("register");
        task::Entity::insert(new_task("fresh", "written after the loss"))
            .exec(&offline)
            .await
            .expect("insert");
        offline.close().await.expect("close");
        let a = TestPeer::start(&a_path, &[b.address()]).await;
        // B claims A's 8 at once; that is the earlier life's 6..8, not the new write.
        within(WAIT, a.db.wait_until_replicated(1))
            .await
            .expect("resolved within the deadline")
            .expect("replicated");
        let fresh = task::Entity::find_by_id("fresh".to_owned())
            .one(&b.db)
            .await
            .expect("read");
        assert!(
            fresh.is_some(),
            "wait_until_replicated resolved before B held the new write"
        );
        assert_eq!(task::Entity::find().count(&b.db).await.expect("count"), 9);
    });
}
