//! Two peers on 127.0.0.1: every write form on one converges on the other, live.

use sea_orm::prelude::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, ModelTrait, QueryFilter, Set,
    TransactionTrait,
};
use std::time::Duration;
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn every_write_form_converges_live() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        assert!(
            wait_until(TIMEOUT, || async {
                b.db.sync_status().await.unwrap().connected_peers == 1
            })
            .await,
            "b never connected to a"
        );

        // insert
        let one = new_task("1", "Buy milk").insert(&a.db).await.unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        // update
        let mut edit = one.clone().into_active_model();
        edit.title = Set("Buy oat milk, 'please'".into());
        edit.update(&a.db).await.unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        // insert_many
        task::Entity::insert_many(
            (2..40).map(|i| new_task(&format!("{i:02}"), &format!("task {i}"))),
        )
        .exec(&a.db)
        .await
        .unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        // update_many
        task::Entity::update_many()
            .col_expr(task::Column::Completed, Expr::value(true))
            .filter(task::Column::Id.lt("20"))
            .exec(&a.db)
            .await
            .unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        // delete_many
        task::Entity::delete_many()
            .filter(task::Column::Id.gt("30"))
            .exec(&a.db)
            .await
            .unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        // delete
        one.delete(&a.db).await.unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        // a multi-statement transaction, written on b this time
        let txn = b.db.begin().await.unwrap();
        new_task("x", "in a transaction")
            .insert(&txn)
            .await
            .unwrap();
        task::Entity::update_many()
            .col_expr(
                task::Column::Title,
                Expr::value("renamed in the transaction"),
            )
            .filter(task::Column::Id.eq("05"))
            .exec(&txn)
            .await
            .unwrap();
        task::Entity::delete_by_id("06").exec(&txn).await.unwrap();
        txn.commit().await.unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;

        let rows = a.tasks().await;
        assert_eq!(rows.len(), 29);
        assert!(rows.iter().any(|t| t.title == "renamed in the transaction"));
        assert!(a.db.metrics().gossip_received > 0 && b.db.metrics().gossip_received > 0);
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn shutdown_and_drop_stop_the_engine() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let c = TestPeer::start(&dir.path().join("c.db"), &[a.address()]).await;
        assert!(
            wait_until(TIMEOUT, || async {
                a.db.sync_status().await.unwrap().connected_peers == 2
            })
            .await
        );
        // shutdown waits for the engine; the database stays usable without it.
        b.db.shutdown().await;
        new_task("after-shutdown", "kept locally")
            .insert(&b.db)
            .await
            .unwrap();
        assert_eq!(b.tasks().await.len(), 1);
        // Dropping the last handle stops the engine too.
        drop(c);
        assert!(
            wait_until(TIMEOUT, || async {
                a.db.sync_status().await.unwrap().connected_peers == 0
            })
            .await,
            "a still sees connected peers"
        );
        a.stop().await;
    });
}
