//! Two replicas of one task list converge: writes on A reach B, a concurrent edit of
//! different columns keeps both, and B's UI-style subscription sees every remote change.
//!
//! The network engine is not in this demo: A's change sets are handed to B in process,
//! exactly as the engine will hand them over the wire.
//!
//! Run: `cargo run -p wavesyncdb --example two_replicas` (`RUST_LOG=wavesyncdb=debug` for
//! the library's logs).

use sea_orm::prelude::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use wavesyncdb::{WaveSyncDb, WaveSyncDbBuilder};

mod task {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
        pub completed: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn open(dir: &std::path::Path, name: &str) -> Result<WaveSyncDb, wavesyncdb::Error> {
    let url = format!(
        "sqlite:{}?mode=rwc",
        dir.join(format!("{name}.db")).display()
    );
    let db = WaveSyncDbBuilder::new(url, "demo-topic")
        .without_network()
        .build()
        .await?;
    db.schema().register::<task::Entity>().sync().await?;
    Ok(db)
}

async fn show(name: &str, db: &WaveSyncDb) -> Result<(), sea_orm::DbErr> {
    let tasks = task::Entity::find()
        .order_by_asc(task::Column::Id)
        .all(db)
        .await?;
    println!(
        "  {name}: {}",
        tasks
            .iter()
            .map(|t| format!(
                "[{}] {}{}",
                t.id,
                t.title,
                if t.completed { " ✓" } else { "" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on standard error, filtered by RUST_LOG (default: warnings and errors).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();
    smol::block_on(async {
        let dir = tempfile::tempdir()?;
        let a = open(dir.path(), "a").await?;
        let b = open(dir.path(), "b").await?;
        let from_a = a.change_set_receiver();
        let from_b = b.change_set_receiver();
        let mut b_sees = b.subscribe();

        println!(
            "A writes: two inserts, then a transaction that completes one and deletes the other"
        );
        task::ActiveModel {
            id: Set("1".into()),
            title: Set("Buy milk".into()),
            completed: Set(false),
        }
        .insert(&a)
        .await?;
        task::ActiveModel {
            id: Set("2".into()),
            title: Set("Walk, then 'rest'".into()),
            completed: Set(false),
        }
        .insert(&a)
        .await?;
        let txn = a.begin().await?;
        task::Entity::update_many()
            .col_expr(task::Column::Completed, Expr::value(true))
            .filter(task::Column::Id.eq("1"))
            .exec(&txn)
            .await?;
        task::Entity::delete_by_id("2").exec(&txn).await?;
        txn.commit().await?;

        while let Ok(change_set) = from_a.try_recv() {
            println!(
                "  wire: A's transaction #{} with {} row(s)",
                change_set.seq,
                change_set.operations.len()
            );
            b.apply_remote(change_set).await?;
        }
        while let Some(Ok(note)) = b_sees.try_recv() {
            println!(
                "  B notified: {} row(s) of `{}` changed ({:?})",
                note.rows.len(),
                note.table,
                note.source
            );
        }
        show("A", &a).await?;
        show("B", &b).await?;

        println!("Concurrent edits of different columns of task 1: A renames it, B reopens it");
        task::Entity::update_many()
            .col_expr(task::Column::Title, Expr::value("Buy oat milk"))
            .filter(task::Column::Id.eq("1"))
            .exec(&a)
            .await?;
        task::Entity::update_many()
            .col_expr(task::Column::Completed, Expr::value(false))
            .filter(task::Column::Id.eq("1"))
            .exec(&b)
            .await?;
        while let Ok(change_set) = from_a.try_recv() {
            b.apply_remote(change_set).await?;
        }
        while let Ok(change_set) = from_b.try_recv() {
            a.apply_remote(change_set).await?;
        }
        show("A", &a).await?;
        show("B", &b).await?;

        let same = task::Entity::find()
            .order_by_asc(task::Column::Id)
            .all(&a)
            .await?
            == task::Entity::find()
                .order_by_asc(task::Column::Id)
                .all(&b)
                .await?;
        println!(
            "{}",
            if same {
                "A and B converged."
            } else {
                "A and B DIFFER"
            }
        );
        if !same {
            return Err("replicas differ".into());
        }
        Ok(())
    })
}
