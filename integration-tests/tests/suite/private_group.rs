//! A private group: outsiders without the secret, or with a wrong one, cannot connect,
//! read or write; members sync as usual.

use sea_orm::ActiveModelTrait;
use std::time::Duration;
use wavesyncdb::{GroupSecret, WaveSyncDb};
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn outsiders_cannot_connect_read_or_write() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let secret = WaveSyncDb::generate_secret();
        let wrong = GroupSecret::from_passphrase("not the group passphrase", "tests").unwrap();
        let member =
            |secret: GroupSecret| move |b: wavesyncdb::WaveSyncDbBuilder| b.group_secret(secret);
        let a = TestPeer::start_with(&dir.path().join("a.db"), &[], member(secret.clone())).await;
        let b = TestPeer::start_with(
            &dir.path().join("b.db"),
            &[a.address()],
            member(secret.clone()),
        )
        .await;
        let open = TestPeer::start(&dir.path().join("open.db"), &[a.address(), b.address()]).await;
        let wrong = TestPeer::start_with(
            &dir.path().join("wrong.db"),
            &[a.address(), b.address()],
            member(wrong),
        )
        .await;

        for i in 0..5 {
            new_task(&format!("member-{i}"), "private")
                .insert(&a.db)
                .await
                .unwrap();
        }
        new_task("from-open", "intruder")
            .insert(&open.db)
            .await
            .unwrap();
        new_task("from-wrong", "intruder")
            .insert(&wrong.db)
            .await
            .unwrap();
        // The members sync: the group works.
        assert_converge(&[&a, &b], TIMEOUT).await;
        assert_eq!(a.tasks().await.len(), 5);

        // Outsiders get nowhere, for several catch-up rounds.
        let leaked = wait_until(Duration::from_secs(3), || async {
            open.tasks().await.len() > 1
                || wrong.tasks().await.len() > 1
                || open.db.sync_status().await.unwrap().connected_peers > 0
                || wrong.db.sync_status().await.unwrap().connected_peers > 0
        })
        .await;
        assert!(!leaked, "an outsider connected or received data");
        for member in [&a, &b] {
            let status = member.db.sync_status().await.unwrap();
            assert_eq!(status.connected_peers, 1, "members see only each other");
            assert!(
                member.tasks().await.iter().all(|t| t.title == "private"),
                "an outsider's row arrived"
            );
        }
        for peer in [a, b, open, wrong] {
            peer.stop().await;
        }
    });
}
