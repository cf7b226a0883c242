//! The README's quick start: an entity that derives `SyncEntity`, discovered by
//! `get_schema_registry`, its table created, a row inserted through plain SeaORM.
//!
//! Run it with `cargo run -p wavesyncdb --example quickstart` (it writes `./app.db`).
//! No tokio: any executor works; this one uses smol. Logs go to standard error, filtered
//! by `RUST_LOG` (default: warnings, such as the notice that the group is open).

use sea_orm::*;
use wavesyncdb::WaveSyncDbBuilder;

mod task {
    use sea_orm::entity::prelude::*;
    use wavesyncdb::SyncEntity;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
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

fn main() -> Result<(), wavesyncdb::Error> {
    // Logs on standard error, filtered by RUST_LOG (default: warnings and errors).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();
    // No tokio needed: any executor works.
    smol::block_on(quick_start(WaveSyncDbBuilder::new(
        "sqlite:./app.db?mode=rwc",
        "my-app-topic",
    )))
    .map(drop)
}

/// The quick start; returns the table the change notification named.
async fn quick_start(builder: WaveSyncDbBuilder) -> Result<Option<String>, wavesyncdb::Error> {
    // Build the connection: starts the P2P engine.
    let db = builder.build().await?;

    // Auto-discover entities annotated with #[derive(SyncEntity)]: creates missing
    // tables, adds missing columns, and starts syncing them.
    db.get_schema_registry(module_path!().split("::").next().unwrap())
        .sync()
        .await?;

    // UIs subscribe to local and remote changes: subscribe before the writes you want
    // to hear about.
    let mut changes = db.subscribe();

    // Standard SeaORM usage: the write is captured and replicated.
    let task = task::ActiveModel {
        id: Set("1".into()),
        title: Set("Buy milk".into()),
        completed: Set(false),
    };
    task.insert(&db).await?;

    let mut changed = None;
    if let Some(Ok(change)) = changes.try_recv() {
        println!("{} changed: {} row(s)", change.table, change.rows.len());
        changed = Some(change.table.clone());
    }
    let tasks = task::Entity::find().all(&db).await?;
    println!("{} task(s), first: {:?}", tasks.len(), tasks.first());
    db.shutdown().await;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    /// Runs the quick start as written, in a temp dir (it writes `./app.db`).
    #[test]
    fn the_quick_start_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.db");
        // The quick start with its network kept on loopback (no mDNS on the test host).
        let builder = wavesyncdb::WaveSyncDbBuilder::new(
            format!("sqlite:{}?mode=rwc", path.display()),
            "my-app-topic",
        )
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .mdns(false);
        let changed = smol::block_on(super::quick_start(builder)).expect("the quick start runs");
        assert!(path.exists());
        assert_eq!(
            changed.as_deref(),
            Some("tasks"),
            "the subscription saw the insert"
        );
    }
}
