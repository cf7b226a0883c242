//! A node whose last commits are lost, and a database file copied to a second node
//! (issue 12, defect 5): sequence numbers are never reused, lost writes come back, and two
//! copies never write as one origin.

use std::path::{Path, PathBuf};
use std::time::Duration;
use wavesyncdb_integration_tests::{
    TestPeer, assert_converge, assert_logs_consistent, new_task, wait_until,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The database file and its WAL (the shared-memory index is rebuilt on open).
fn files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
        .collect()
}

/// Copies the database (with whatever WAL it has) from `from` to `to`, writing over the
/// files at `to` in place (as a restore from a backup does) and removing companions the
/// source lacks.
fn copy_database(from: &Path, to: &Path) {
    for (source, target) in files(from).into_iter().zip(files(to)) {
        let _ = std::fs::remove_file(format!("{}-shm", to.display()));
        if source.exists() {
            std::fs::copy(&source, &target).expect("copy database file");
        } else if target.exists() {
            std::fs::remove_file(&target).expect("remove stale WAL file");
        }
    }
}

async fn insert(peer: &TestPeer, id: &str) {
    use sea_orm::ActiveModelTrait;
    new_task(id, id).insert(&peer.db).await.expect("insert");
}

async fn has(peer: &TestPeer, count: usize) -> bool {
    peer.tasks().await.len() == count
}

/// A's last three commits are lost after B and C got them; A then writes two more (as
/// numbers 8 and 9 again), online at once or first offline and restarted.
fn lost_commits(write_offline_first: bool) {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a_path, b_path, c_path) = (
            dir.path().join("a.db"),
            dir.path().join("b.db"),
            dir.path().join("c.db"),
        );
        let backup = dir.path().join("backup.db");
        let b = TestPeer::start(&b_path, &[]).await;
        let a = TestPeer::start(&a_path, &[b.address()]).await;
        let c = TestPeer::start(&c_path, &[b.address()]).await;
        for n in 1..=7 {
            insert(&a, &format!("t{n:02}")).await;
        }
        assert_converge(&[&a, &b, &c], TIMEOUT).await;

        // The state the database will fall back to: seven transactions.
        a.close().await;
        copy_database(&a_path, &backup);
        let a = TestPeer::start(&a_path, &[b.address()]).await;
        for n in 8..=10 {
            insert(&a, &format!("t{n:02}")).await;
        }
        assert_converge(&[&a, &b, &c], TIMEOUT).await;
        // C goes away holding A's transactions up to 10.
        c.stop().await;

        // Power cut: A's last three commits are gone.
        a.close().await;
        copy_database(&backup, &a_path);
        let a = if write_offline_first {
            // Written without the network, then A starts again: the restart must not
            // take those numbers for confirmed.
            let offline = wavesyncdb_integration_tests::test_builder(&a_path)
                .without_network()
                .build()
                .await
                .unwrap();
            offline
                .schema()
                .register::<wavesyncdb_integration_tests::task::Entity>()
                .sync()
                .await
                .unwrap();
            for id in ["n1", "n2"] {
                use sea_orm::ActiveModelTrait;
                new_task(id, id).insert(&offline).await.unwrap();
            }
            offline.close().await.unwrap();
            TestPeer::start(&a_path, &[b.address()]).await
        } else {
            let a = TestPeer::start(&a_path, &[b.address()]).await;
            assert_eq!(
                a.tasks().await.len(),
                7,
                "the restored file lost three rows"
            );
            // Written at once, before A hears from any peer: numbers 8 and 9 again.
            insert(&a, "n1").await;
            insert(&a, "n2").await;
            a
        };
        let c = TestPeer::start(&c_path, &[b.address()]).await;

        let all = wait_until(TIMEOUT, || async {
            has(&a, 12).await && has(&b, 12).await && has(&c, 12).await
        })
        .await;
        let counts = (
            a.tasks().await.len(),
            b.tasks().await.len(),
            c.tasks().await.len(),
        );
        assert!(
            all,
            "every peer must hold the 10 old rows (A's lost ones back) and A's 2 new ones; \
             rows on A, B, C: {counts:?}"
        );
        assert_converge(&[&a, &b, &c], TIMEOUT).await;
        assert_logs_consistent(&[&a, &b, &c]).await;

        // A later write of A reaches everyone, live or by catch-up.
        insert(&a, "n3").await;
        assert!(
            wait_until(TIMEOUT, || async { has(&b, 13).await && has(&c, 13).await }).await,
            "a write after the recovery reaches every peer"
        );
    });
}

#[test]
fn transactions_a_node_lost_come_back_and_its_new_ones_reach_every_peer() {
    lost_commits(false);
}

#[test]
fn transactions_written_offline_after_a_loss_are_not_taken_for_confirmed() {
    lost_commits(true);
}

#[test]
fn a_copied_database_file_takes_a_new_identity_and_both_copies_sync() {
    smol::block_on(async {
        use sea_orm::{ActiveModelTrait, Set};
        use wavesyncdb_integration_tests::task;
        let dir = tempfile::tempdir().unwrap();
        let (a_path, b_path, c_path) = (
            dir.path().join("a.db"),
            dir.path().join("b.db"),
            dir.path().join("c.db"),
        );
        let a = TestPeer::start(&a_path, &[]).await;
        insert(&a, "shared").await;
        let original = a.db.node_id();
        a.close().await;
        copy_database(&a_path, &b_path);

        let c = TestPeer::start(&c_path, &[]).await;
        let a = TestPeer::start(&a_path, &[c.address()]).await;
        let b = TestPeer::start(&b_path, &[c.address()]).await;
        assert_eq!(
            a.db.node_id(),
            original,
            "the original file keeps its identity"
        );
        assert_ne!(
            b.db.node_id(),
            original,
            "a copy of the file must not write as the original"
        );

        let rename = |title: &str| task::ActiveModel {
            id: Set("shared".to_owned()),
            title: Set(title.to_owned()),
            ..Default::default()
        };
        rename("written on A")
            .update(&a.db)
            .await
            .expect("update on A");
        insert(&a, "from A").await;
        // Past the clock lease both copies resume from (a second): B's write is later.
        smol::Timer::after(Duration::from_millis(1_200)).await;
        rename("written on B")
            .update(&b.db)
            .await
            .expect("update on B");
        insert(&b, "from B").await;

        let settled = wait_until(TIMEOUT, || async {
            has(&a, 3).await && has(&b, 3).await && has(&c, 3).await
        })
        .await;
        assert!(settled, "every peer holds the rows of both copies");
        assert_converge(&[&a, &b, &c], TIMEOUT).await;
        let title = c
            .tasks()
            .await
            .into_iter()
            .find(|t| t.id == "shared")
            .map(|t| t.title);
        assert_eq!(
            title.as_deref(),
            Some("written on B"),
            "the later write wins everywhere; A {:?} B {:?}",
            a.tasks().await,
            b.tasks().await
        );
        assert_logs_consistent(&[&a, &b, &c]).await;
    });
}

#[test]
fn reopening_the_same_file_keeps_the_identity() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let first = wavesyncdb_integration_tests::open(&path).await.unwrap();
        let id = first.node_id();
        drop(first);
        let again = wavesyncdb_integration_tests::open(&path).await.unwrap();
        assert_eq!(again.node_id(), id);
    });
}
