//! Property: three replicas make random interleaved inserts, updates and deletes on the
//! same and different rows and columns, receive each other's change sets in random order
//! with duplicates (some along the way, all at the end), and end with identical tables.

use crate::common::*;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use wavesyncdb::ChangeSet;

const REPLICAS: usize = 3;
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

#[derive(Clone, Debug)]
enum Action {
    Insert {
        replica: usize,
        key: usize,
        title: u8,
    },
    SetTitle {
        replica: usize,
        key: usize,
        title: u8,
    },
    SetCompleted {
        replica: usize,
        key: usize,
        completed: bool,
    },
    SetWeight {
        replica: usize,
        key: usize,
        weight: u8,
    },
    Delete {
        replica: usize,
        key: usize,
    },
    /// Deliver to `replica` the change sets it has not seen yet, shuffled by `seed`.
    Deliver {
        replica: usize,
        seed: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let replica = 0..REPLICAS;
    let key = 0..KEYS.len();
    prop_oneof![
        3 => (replica.clone(), key.clone(), any::<u8>()).prop_map(|(replica, key, title)| Action::Insert { replica, key, title }),
        2 => (replica.clone(), key.clone(), any::<u8>()).prop_map(|(replica, key, title)| Action::SetTitle { replica, key, title }),
        2 => (replica.clone(), key.clone(), any::<bool>()).prop_map(|(replica, key, completed)| Action::SetCompleted { replica, key, completed }),
        1 => (replica.clone(), key.clone(), any::<u8>()).prop_map(|(replica, key, weight)| Action::SetWeight { replica, key, weight }),
        2 => (replica.clone(), key.clone()).prop_map(|(replica, key)| Action::Delete { replica, key }),
        2 => (replica, any::<u64>()).prop_map(|(replica, seed)| Action::Deliver { replica, seed }),
    ]
}

async fn run(actions: Vec<Action>, final_seed: u64) {
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(TestDb::new().await);
    }
    // Every change set made so far, with the replica that made it.
    let mut made: Vec<(usize, ChangeSet)> = Vec::new();
    let mut delivered = [0usize; REPLICAS];
    for action in actions {
        match action {
            Action::Insert {
                replica,
                key,
                title,
            } => {
                // Fails when the row exists here; a failed write must leave no trace.
                let _ = task(KEYS[key], &format!("t{title}, 'x'"))
                    .insert(&replicas[replica].db)
                    .await;
            }
            Action::SetTitle {
                replica,
                key,
                title,
            } => {
                update(
                    &replicas[replica],
                    key,
                    task::Column::Title,
                    Expr::value(format!("u{title}")),
                )
                .await;
            }
            Action::SetCompleted {
                replica,
                key,
                completed,
            } => {
                update(
                    &replicas[replica],
                    key,
                    task::Column::Completed,
                    Expr::value(completed),
                )
                .await;
            }
            Action::SetWeight {
                replica,
                key,
                weight,
            } => {
                update(
                    &replicas[replica],
                    key,
                    task::Column::Weight,
                    Expr::value(f64::from(weight) / 4.0),
                )
                .await;
            }
            Action::Delete { replica, key } => {
                task::Entity::delete_by_id(KEYS[key])
                    .exec(&replicas[replica].db)
                    .await
                    .unwrap();
            }
            Action::Deliver { replica, seed } => {
                let mut batch: Vec<ChangeSet> = made[delivered[replica]..]
                    .iter()
                    .filter(|(from, _)| *from != replica)
                    .map(|(_, set)| set.clone())
                    .collect();
                delivered[replica] = made.len();
                batch.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
                if seed % 2 == 0 {
                    // As catch-up applies a page: every set in one transaction.
                    wavesyncdb::testing::apply_remote_batch(&replicas[replica].db, batch)
                        .await
                        .unwrap();
                } else {
                    for set in batch {
                        replicas[replica].db.apply_remote(set).await.unwrap();
                    }
                }
            }
        }
        for (index, replica) in replicas.iter().enumerate() {
            made.extend(
                replica
                    .take_change_sets()
                    .into_iter()
                    .map(|set| (index, set)),
            );
        }
    }
    // Everyone receives everything of the others, in random order, with duplicates.
    let mut rng = rand::rngs::StdRng::seed_from_u64(final_seed);
    for (index, replica) in replicas.iter().enumerate() {
        let mut all: Vec<ChangeSet> = made
            .iter()
            .filter(|(from, _)| *from != index)
            .flat_map(|(_, set)| [set.clone(), set.clone()])
            .collect();
        all.shuffle(&mut rng);
        all.truncate(all.len() * 3 / 4 + 1);
        all.extend(
            made.iter()
                .filter(|(from, _)| *from != index)
                .map(|(_, set)| set.clone()),
        );
        all.shuffle(&mut rng);
        // Some one by one, some in batches (duplicates included), as live and catch-up do.
        let mut rest = all.as_slice();
        while !rest.is_empty() {
            let take = rng.random_range(1..=rest.len().min(6));
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            if take == 1 {
                replica.db.apply_remote(batch[0].clone()).await.unwrap();
            } else {
                wavesyncdb::testing::apply_remote_batch(&replica.db, batch.to_vec())
                    .await
                    .unwrap();
            }
        }
        assert!(
            replica.take_change_sets().is_empty(),
            "applying remote changes sends nothing"
        );
    }
    let first = all_tasks(&replicas[0].db).await;
    for replica in &replicas[1..] {
        assert_eq!(all_tasks(&replica.db).await, first);
    }
}

async fn update(
    replica: &TestDb,
    key: usize,
    column: task::Column,
    value: sea_orm::sea_query::SimpleExpr,
) {
    task::Entity::update_many()
        .col_expr(column, value)
        .filter(task::Column::Id.eq(KEYS[key]))
        .exec(&replica.db)
        .await
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_on_smol(actions in proptest::collection::vec(action(), 1..40), seed in any::<u64>()) {
        smol::block_on(run(actions, seed));
    }

    #[test]
    fn replicas_converge_on_async_std(actions in proptest::collection::vec(action(), 1..40), seed in any::<u64>()) {
        async_std::task::block_on(run(actions, seed));
    }
}
