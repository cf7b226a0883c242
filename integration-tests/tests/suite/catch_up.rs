//! Catch-up: a peer that was offline gets what it missed, and only that; a new peer gets
//! the current state; a gap left by lost gossip is repaired.

use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use std::time::Duration;
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn connected(peer: &TestPeer) -> bool {
    wait_until(TIMEOUT, || async {
        peer.db.sync_status().await.unwrap().connected_peers >= 1
    })
    .await
}

/// Waits until `peer` has compared heads with a peer and lacks nothing it has.
async fn up_to_date(peer: &TestPeer) -> bool {
    wait_until(TIMEOUT, || async {
        let status = peer.db.sync_status().await.unwrap();
        status
            .peers
            .iter()
            .any(|p| p.connected && !p.heads.is_empty())
            && status.behind == 0
    })
    .await
}

#[test]
fn an_offline_peer_catches_up_on_ten_thousand_rows_then_transfers_nothing() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let b_path = dir.path().join("b.db");
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let b = TestPeer::start(&b_path, &[a.address()]).await;
        assert!(connected(&b).await);
        new_task("before", "seen live").insert(&a.db).await.unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        b.stop().await;

        // B is offline: 10,000 rows in transactions of 500, 2,000 updated, 500 deleted.
        for batch in 0..20 {
            let txn = a.db.begin().await.unwrap();
            task::Entity::insert_many((0..500).map(|i| {
                let n = batch * 500 + i;
                new_task(&format!("r{n:05}"), &format!("row {n}, with 'quotes'"))
            }))
            .exec(&txn)
            .await
            .unwrap();
            txn.commit().await.unwrap();
        }
        task::Entity::update_many()
            .col_expr(task::Column::Completed, Expr::value(true))
            .filter(task::Column::Id.lt("r02000"))
            .exec(&a.db)
            .await
            .unwrap();
        task::Entity::delete_many()
            .filter(task::Column::Id.gte("r09500"))
            .exec(&a.db)
            .await
            .unwrap();

        let b = TestPeer::start(&b_path, &[a.address()]).await;
        assert_converge(&[&a, &b], TIMEOUT).await;
        assert_eq!(b.tasks().await.len(), 9_501);
        let first_run = b.db.metrics();
        assert!(
            first_run.catch_up_operations_received >= 9_500,
            "{first_run:?}"
        );
        b.stop().await;

        // Restarted again with nothing new: it compares heads and pulls nothing.
        let b = TestPeer::start(&b_path, &[a.address()]).await;
        assert!(up_to_date(&b).await, "b never confirmed it is up to date");
        let second_run = b.db.metrics();
        assert_eq!(second_run.catch_up_operations_received, 0, "{second_run:?}");
        assert_converge(&[&a, &b], TIMEOUT).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_new_peer_receives_the_current_state() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        task::Entity::insert_many((0..300).map(|i| new_task(&format!("t{i:03}"), "v1")))
            .exec(&a.db)
            .await
            .unwrap();
        for round in 0..5 {
            task::Entity::update_many()
                .col_expr(task::Column::Title, Expr::value(format!("v{}", round + 2)))
                .exec(&a.db)
                .await
                .unwrap();
        }
        task::Entity::delete_many()
            .filter(task::Column::Id.lt("t100"))
            .exec(&a.db)
            .await
            .unwrap();
        let newcomer = TestPeer::start(&dir.path().join("new.db"), &[a.address()]).await;
        assert_converge(&[&a, &newcomer], TIMEOUT).await;
        let rows = newcomer.tasks().await;
        assert_eq!(rows.len(), 200);
        assert!(rows.iter().all(|t| t.title == "v6"));
        // The current state, not the history: the history is 1,900 operations (300
        // inserts, 5 x 300 updates, 100 deletes); the state is at most one operation per
        // surviving version group of a row (insert, last update, delete).
        let received = newcomer.db.metrics().catch_up_operations_received;
        assert!(
            received <= 3 * 300,
            "received {received} operations for 300 rows"
        );
        a.stop().await;
        newcomer.stop().await;
    });
}

#[test]
fn partitioned_sides_write_independently_and_converge_when_healed() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let c = TestPeer::start(&dir.path().join("c.db"), &[]).await;
        let d = TestPeer::start(&dir.path().join("d.db"), &[c.address()]).await;
        assert!(connected(&b).await && connected(&d).await);
        for (side, peers) in [("left", [&a, &b]), ("right", [&c, &d])] {
            for (n, peer) in peers.iter().enumerate() {
                for i in 0..10 {
                    new_task(&format!("{side}-{n}-{i}"), side)
                        .insert(&peer.db)
                        .await
                        .unwrap();
                }
                // Both sides also write the same row.
                let _ = new_task("shared", &format!("{side} {n}"))
                    .insert(&peer.db)
                    .await;
                task::Entity::update_many()
                    .col_expr(
                        task::Column::Title,
                        Expr::value(format!("edited on {side} {n}")),
                    )
                    .filter(task::Column::Id.eq("shared"))
                    .exec(&peer.db)
                    .await
                    .unwrap();
            }
        }
        assert_converge(&[&a, &b], TIMEOUT).await;
        assert_converge(&[&c, &d], TIMEOUT).await;
        assert_ne!(a.tasks().await, c.tasks().await, "the sides are apart");

        c.db.dial(a.address()).await.unwrap();
        assert_converge(&[&a, &b, &c, &d], TIMEOUT).await;
        assert_eq!(a.tasks().await.len(), 41);
        for peer in [a, b, c, d] {
            peer.stop().await;
        }
    });
}

#[test]
fn a_lost_live_message_is_repaired_by_the_pull() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        // B cannot take gossip messages over 2 KiB: a large one is lost to it, as if the
        // network had dropped it; the next change shows B the gap.
        let b = TestPeer::start_with(&dir.path().join("b.db"), &[a.address()], |builder| {
            builder
                .max_message_size(2048)
                .catch_up_interval(Duration::from_secs(3600))
        })
        .await;
        assert!(connected(&b).await);
        new_task("small", "arrives live")
            .insert(&a.db)
            .await
            .unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        new_task("large", &"x".repeat(10_000))
            .insert(&a.db)
            .await
            .unwrap();
        new_task("after", "shows the gap")
            .insert(&a.db)
            .await
            .unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        let metrics = b.db.metrics();
        assert_eq!(metrics.rejected.get("malformed"), Some(&1), "{metrics:?}");
        assert!(metrics.catch_up_operations_received >= 1, "{metrics:?}");
        a.stop().await;
        b.stop().await;
    });
}
