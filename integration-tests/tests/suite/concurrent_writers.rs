//! Several tasks writing at once on each of two peers, shared rows included, while the
//! other peer's changes keep arriving: every write returns within a deadline (no
//! deadlock), on a pool of one connection and of several, and the peers converge.

use futures::FutureExt;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use std::time::Duration;
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, task};

const WRITERS: usize = 4;
const WRITES_PER_WRITER: usize = 120;
const SHARED_ROWS: usize = 8;
/// Every writer's whole run must fit in this; a deadlock fails here, never hangs.
const DEADLINE: Duration = Duration::from_secs(60);

async fn writer(peer: wavesyncdb::WaveSyncDb, name: String) -> Result<(), sea_orm::DbErr> {
    for i in 0..WRITES_PER_WRITER {
        if i % 3 == 0 {
            new_task(&format!("{name}-{i}"), "own")
                .insert(&peer)
                .await?;
        } else {
            let shared = format!("shared-{}", i % SHARED_ROWS);
            task::ActiveModel {
                id: Set(shared),
                title: Set(format!("{name}-{i}")),
                completed: Set(i % 2 == 0),
            }
            .update(&peer)
            .await?;
        }
    }
    Ok(())
}

async fn run(pool: u32) {
    let dir = tempfile::tempdir().unwrap();
    let configure = move |b: wavesyncdb::WaveSyncDbBuilder| b.max_connections(pool);
    let a = TestPeer::start_with(&dir.path().join("a.db"), &[], configure).await;
    let b = TestPeer::start_with(&dir.path().join("b.db"), &[a.address()], configure).await;
    for n in 0..SHARED_ROWS {
        new_task(&format!("shared-{n}"), "start")
            .insert(&a.db)
            .await
            .unwrap();
    }
    assert_converge(&[&a, &b], Duration::from_secs(20)).await;
    let mut writers = Vec::new();
    for (label, peer) in [("a", &a), ("b", &b)] {
        for w in 0..WRITERS {
            writers.push(smol::spawn(writer(peer.db.clone(), format!("{label}{w}"))));
        }
    }
    let all = futures::future::join_all(writers).fuse();
    let deadline = smol::Timer::after(DEADLINE).fuse();
    futures::pin_mut!(all, deadline);
    futures::select! {
        results = all => {
            for result in results {
                result.expect("every write succeeds");
            }
        }
        _ = deadline => panic!("pool of {pool}: writers still blocked after {DEADLINE:?} (deadlock)"),
    }
    assert_converge(&[&a, &b], Duration::from_secs(30)).await;
    let rows = task::Entity::find().all(&a.db).await.unwrap().len();
    assert_eq!(
        rows,
        SHARED_ROWS + 2 * WRITERS * WRITES_PER_WRITER.div_ceil(3)
    );
    a.stop().await;
    b.stop().await;
}

#[test]
fn concurrent_writers_on_a_pool_of_one_connection_never_deadlock() {
    smol::block_on(run(1));
}

#[test]
fn concurrent_writers_on_a_pool_of_several_connections_never_deadlock() {
    smol::block_on(run(4));
}
