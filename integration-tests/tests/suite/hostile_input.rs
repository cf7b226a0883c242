//! A peer of the group sends hostile messages over a real swarm: each kind is rejected
//! (or, for a column this peer lacks, set aside in the log) and counted, no row changes, replays change nothing, the group keeps syncing, and a
//! peer that keeps sending garbage is banned.

use sea_orm::ActiveModelTrait;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wavesyncdb::testing::encode_live;
use wavesyncdb::{CellValue, ChangeSet, Hlc, NodeId, SyncOperation, WriteKind};
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn insert(origin: NodeId, seq: u64, table: &str, values: Vec<(&str, CellValue)>) -> ChangeSet {
    ChangeSet {
        origin,
        seq,
        operations: vec![SyncOperation {
            table: table.into(),
            kind: WriteKind::Insert,
            hlc: Hlc {
                time_ms: now_ms(),
                counter: 0,
                node: origin,
            },
            primary_key: vec![("id".into(), CellValue::Text(format!("evil-{seq}")))],
            values: values.into_iter().map(|(c, v)| (c.to_owned(), v)).collect(),
        }],
    }
}

fn good_values() -> Vec<(&'static str, CellValue)> {
    vec![
        ("title", "planted".into()),
        ("completed", CellValue::Integer(0)),
    ]
}

#[test]
fn hostile_messages_are_rejected_counted_and_change_nothing() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start_with(&dir.path().join("a.db"), &[], |b| {
            b.max_message_size(16 << 10)
        })
        .await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let mallory = TestPeer::start(&dir.path().join("m.db"), &[a.address()]).await;
        assert!(
            wait_until(TIMEOUT, || async {
                a.db.sync_status().await.unwrap().connected_peers == 2
            })
            .await
        );
        let m = mallory.db.node_id();
        // A valid message first: once it arrives, the gossip path is up.
        let valid = encode_live(&insert(m, 1, "tasks", good_values()));
        assert!(
            wait_until(TIMEOUT, || {
                let (mallory, a, valid) = (&mallory, &a, valid.clone());
                async move {
                    mallory.db.publish_raw(valid).await.unwrap();
                    a.tasks().await.len() == 1
                }
            })
            .await,
            "a valid message never arrived"
        );

        let mut with_future_clock = insert(m, 6, "tasks", good_values());
        with_future_clock.operations[0].hlc.time_ms += 3_600_000;
        let mut missing_key = insert(m, 5, "tasks", good_values());
        missing_key.operations[0].primary_key.clear();
        let mut unknown_column = insert(m, 2, "tasks", vec![("is_admin", CellValue::Integer(1))]);
        unknown_column.operations[0].kind = WriteKind::Update;
        unknown_column.operations[0].primary_key = vec![("id".into(), "evil-1".into())];
        let hostile: Vec<Vec<u8>> = vec![
            b"definitely not a message".to_vec(),
            vec![0u8; 40 << 10], // over A's 16 KiB bound
            encode_live(&insert(m, 8, "secrets", good_values())),
            // A column this peer does not have: set aside in the log, never in the table.
            encode_live(&unknown_column),
            encode_live(&insert(
                m,
                3,
                "tasks",
                vec![
                    ("title", CellValue::Integer(7)),
                    ("completed", CellValue::Integer(0)),
                ],
            )),
            encode_live(&missing_key),
            encode_live(&with_future_clock),
            encode_live(&insert(a.db.node_id(), 1, "tasks", good_values())), // forged origin
        ];
        for message in hostile {
            mallory.db.publish_raw(message).await.unwrap();
        }
        let reasons = [
            "malformed",
            "unknown_table",
            "unknown_column",
            "wrong_type",
            "missing_key",
            "clock_drift",
            "forged_origin",
        ];
        let all_counted = wait_until(TIMEOUT, || async {
            let rejected = a.db.metrics().rejected;
            reasons.iter().all(|r| rejected.contains_key(*r)) && rejected["malformed"] >= 2
        })
        .await;
        assert!(all_counted, "{:?}", a.db.metrics().rejected);
        assert_eq!(a.tasks().await.len(), 1, "a hostile message changed a row");
        let status = a.db.sync_status().await.unwrap();
        let seen = status
            .peers
            .iter()
            .find(|p| p.node_id == m)
            .expect("mallory is known");
        assert!(seen.rejected_messages >= 6, "{seen:?}");

        // The valid message, replayed, changes nothing.
        let changed_before = a.db.metrics().remote_rows_changed;
        mallory.db.publish_raw(valid).await.unwrap();
        // The group keeps syncing meanwhile.
        new_task("honest", "still syncing")
            .insert(&b.db)
            .await
            .unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        assert_eq!(
            a.db.metrics().remote_rows_changed,
            changed_before + 1,
            "only the honest row changed"
        );

        // Garbage on and on: mallory is banned and disconnected.
        for _ in 0..12 {
            mallory.db.publish_raw(b"garbage".to_vec()).await.unwrap();
        }
        let banned = wait_until(TIMEOUT, || async {
            a.db.peers()
                .iter()
                .any(|p| p.node_id == m && p.banned && !p.connected)
        })
        .await;
        assert!(banned, "{:?}", a.db.peers());
        for peer in [a, b, mallory] {
            peer.stop().await;
        }
    });
}
