//! Three peers write conflicting values to the same rows and columns at the same time;
//! afterwards every table is identical.

use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use std::time::Duration;
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn concurrent_conflicting_writes_converge() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        let c = TestPeer::start(&dir.path().join("c.db"), &[a.address(), b.address()]).await;
        for peer in [&a, &b, &c] {
            assert!(
                wait_until(TIMEOUT, || async {
                    peer.db.sync_status().await.unwrap().connected_peers == 2
                })
                .await,
                "a peer did not connect to both others"
            );
        }
        let peers = [&a, &b, &c];
        // Rows every peer inserts under the same keys, then edits, all without waiting.
        let writes = peers.iter().enumerate().map(|(n, peer)| async move {
            for round in 0..20 {
                let key = format!("k{}", round % 5);
                let _ = new_task(&key, &format!("peer {n} round {round}"))
                    .insert(&peer.db)
                    .await;
                task::Entity::update_many()
                    .col_expr(
                        task::Column::Title,
                        Expr::value(format!("title by {n} at {round}")),
                    )
                    .filter(task::Column::Id.eq(key.clone()))
                    .exec(&peer.db)
                    .await
                    .unwrap();
                if (round + n) % 3 == 0 {
                    task::Entity::update_many()
                        .col_expr(task::Column::Completed, Expr::value(n % 2 == 0))
                        .filter(task::Column::Id.eq(format!("k{}", (round + 1) % 5)))
                        .exec(&peer.db)
                        .await
                        .unwrap();
                }
                if (round + n) % 7 == 0 {
                    task::Entity::delete_by_id(format!("k{}", (round + 2) % 5))
                        .exec(&peer.db)
                        .await
                        .unwrap();
                }
            }
        });
        futures::future::join_all(writes).await;
        assert_converge(&peers, TIMEOUT).await;
        for peer in peers {
            peer.db.shutdown().await;
        }
    });
}
