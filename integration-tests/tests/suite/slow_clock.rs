//! A node whose clock is behind its peers' (here: an hour behind the changes it receives)
//! refuses those changes as too far in the future, counts them, and still bans nobody:
//! its own clock may be the wrong one.

use sea_orm::ActiveModelTrait;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wavesyncdb::testing::encode_live;
use wavesyncdb::{CellValue, ChangeSet, Hlc, NodeId, SyncOperation, WriteKind};
use wavesyncdb_integration_tests::{TestPeer, new_task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

fn ahead_of_us(origin: NodeId, seq: u64) -> ChangeSet {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    ChangeSet {
        origin,
        seq,
        operations: vec![SyncOperation {
            table: "tasks".into(),
            kind: WriteKind::Insert,
            hlc: Hlc {
                time_ms: now_ms + 3_600_000,
                counter: 0,
                node: origin,
            },
            primary_key: vec![("id".into(), CellValue::Text(format!("future-{seq}")))],
            values: vec![
                ("title".into(), "from a clock an hour ahead".into()),
                ("completed".into(), CellValue::Integer(0)),
            ],
        }],
    }
}

#[test]
fn a_slow_clock_bans_no_honest_peer() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let slow = TestPeer::start(&dir.path().join("slow.db"), &[]).await;
        let ahead = TestPeer::start(&dir.path().join("ahead.db"), &[slow.address()]).await;
        // The gossip path is up once a first write arrives.
        new_task("first", "on time")
            .insert(&ahead.db)
            .await
            .unwrap();
        assert!(
            wait_until(TIMEOUT, || async { slow.tasks().await.len() == 1 }).await,
            "the first write never arrived"
        );
        let origin = ahead.db.node_id();
        for seq in 100..120 {
            ahead
                .db
                .publish_raw(encode_live(&ahead_of_us(origin, seq)))
                .await
                .unwrap();
        }
        assert!(
            wait_until(TIMEOUT, || async {
                slow.db
                    .metrics()
                    .rejected
                    .get("clock_drift")
                    .copied()
                    .unwrap_or(0)
                    >= 20
            })
            .await,
            "{:?}",
            slow.db.metrics().rejected
        );
        let peer = slow
            .db
            .peers()
            .into_iter()
            .find(|p| p.node_id == origin)
            .expect("the peer is known");
        assert!(
            !peer.banned && peer.connected,
            "an honest peer was banned: {peer:?}"
        );
        // And it keeps syncing.
        new_task("later", "still on time")
            .insert(&ahead.db)
            .await
            .unwrap();
        assert!(
            wait_until(TIMEOUT, || async {
                slow.tasks().await.iter().any(|t| t.id == "later")
            })
            .await,
            "the honest peer's later write never arrived"
        );
        for peer in [slow, ahead] {
            peer.stop().await;
        }
    });
}

/// The same through catch-up: a peer whose clock was pushed an hour ahead serves pages
/// the slow node refuses, tick after tick (each a page re-served after our refusal);
/// the slow node keeps counting them and bans nobody.
#[test]
fn pages_refused_for_drift_ban_nobody() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // `ahead` accepts timestamps up to two hours ahead, so a change from an hour
        // ahead moves its clock an hour forward: its own writes are stamped there.
        let ahead = TestPeer::start_with(&dir.path().join("ahead.db"), &[], |b| {
            b.max_clock_drift(Duration::from_secs(7_200))
        })
        .await;
        let pusher = TestPeer::start(&dir.path().join("pusher.db"), &[ahead.address()]).await;
        let future = encode_live(&ahead_of_us(pusher.db.node_id(), 1));
        assert!(
            wait_until(TIMEOUT, || {
                let (pusher, ahead, future) = (&pusher, &ahead, future.clone());
                async move {
                    pusher.db.publish_raw(future).await.unwrap();
                    ahead.tasks().await.len() == 1
                }
            })
            .await,
            "the future change never reached `ahead`"
        );
        pusher.stop().await;
        for n in 0..3 {
            new_task(&format!("ahead-{n}"), "stamped an hour ahead")
                .insert(&ahead.db)
                .await
                .unwrap();
        }
        let slow = TestPeer::start(&dir.path().join("slow.db"), &[ahead.address()]).await;
        let origin = ahead.db.node_id();
        assert!(
            wait_until(TIMEOUT, || async {
                slow.db
                    .metrics()
                    .rejected
                    .get("clock_drift")
                    .copied()
                    .unwrap_or(0)
                    >= 15
            })
            .await,
            "{:?}",
            slow.db.metrics().rejected
        );
        let peer = slow
            .db
            .peers()
            .into_iter()
            .find(|p| p.node_id == origin)
            .expect("the peer is known");
        assert!(
            !peer.banned && peer.connected,
            "an honest peer was banned: {peer:?}"
        );
        for peer in [slow, ahead] {
            peer.stop().await;
        }
    });
}
