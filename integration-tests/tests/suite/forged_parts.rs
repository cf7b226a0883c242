//! A peer forges parts of another node's split transaction: parts it signs itself but
//! labels with the victim's origin. Only parts signed by the origin count, so the forged
//! rows never appear, and the victim's own parts still complete the transaction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wavesyncdb::testing::encode_part;
use wavesyncdb::{CellValue, Hlc, NodeId, SyncOperation, WriteKind};
use wavesyncdb_integration_tests::{TestPeer, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

fn insert(node: NodeId, id: &str) -> SyncOperation {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    SyncOperation {
        table: "tasks".into(),
        kind: WriteKind::Insert,
        hlc: Hlc {
            time_ms: now_ms,
            counter: 0,
            node,
        },
        primary_key: vec![("id".into(), CellValue::Text(id.into()))],
        values: vec![
            ("title".into(), id.into()),
            ("completed".into(), CellValue::Integer(0)),
        ],
    }
}

#[test]
fn forged_parts_never_complete_a_transaction() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let receiver = TestPeer::start(&dir.path().join("r.db"), &[]).await;
        let victim = TestPeer::start(&dir.path().join("v.db"), &[receiver.address()]).await;
        let mallory = TestPeer::start(&dir.path().join("m.db"), &[receiver.address()]).await;
        assert!(
            wait_until(TIMEOUT, || async {
                receiver.db.sync_status().await.unwrap().connected_peers == 2
            })
            .await
        );
        let v = victim.db.node_id();
        let received = || receiver.db.metrics().gossip_received;
        // Mallory's part 0 of the victim's transaction 1000 (of 2), with a forged row.
        let forged = encode_part(v, 1000, 0, 2, vec![insert(v, "forged")]);
        let before = received();
        assert!(
            wait_until(TIMEOUT, || {
                let forged = forged.clone();
                let mallory = &mallory;
                async move {
                    mallory.db.publish_raw(forged).await.unwrap();
                    received() > before
                }
            })
            .await,
            "mallory's part never arrived"
        );
        // The victim's own part 1 arrives next: with it, the forged part would complete.
        let genuine_last = encode_part(v, 1000, 1, 2, vec![insert(v, "genuine-1")]);
        let before = received();
        assert!(
            wait_until(TIMEOUT, || {
                let part = genuine_last.clone();
                let victim = &victim;
                async move {
                    victim.db.publish_raw(part).await.unwrap();
                    received() > before
                }
            })
            .await,
            "the victim's part never arrived"
        );
        // Then its part 0: the transaction is whole, with the victim's rows only.
        let genuine_first = encode_part(v, 1000, 0, 2, vec![insert(v, "genuine-0")]);
        assert!(
            wait_until(TIMEOUT, || {
                let part = genuine_first.clone();
                let victim = &victim;
                let receiver = &receiver;
                async move {
                    victim.db.publish_raw(part).await.unwrap();
                    receiver.tasks().await.len() >= 2
                }
            })
            .await,
            "the victim's transaction never completed: {:?}",
            receiver.tasks().await
        );
        let ids: Vec<String> = receiver.tasks().await.into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["genuine-0", "genuine-1"], "a forged part was applied");
        for peer in [receiver, victim, mallory] {
            peer.stop().await;
        }
    });
}
