//! A database opened from SeaORM `ConnectOptions`: the application's pool settings hold
//! (pool size, acquire timeout, logging), the library's own hold where it needs them (WAL,
//! the engine's connection), writes are captured, and a non-SQLite URL is refused.

use crate::common::*;
use sea_orm::{ConnectOptions, ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait};
use std::time::Duration;
use wavesyncdb::{Error, WaveSyncDb, WaveSyncDbBuilder};

fn options(dir: &tempfile::TempDir, name: &str) -> ConnectOptions {
    let url = format!("sqlite:{}?mode=rwc", dir.path().join(name).display());
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .sqlx_logging(false);
    options
}

async fn open_with(options: ConnectOptions) -> WaveSyncDb {
    let db = WaveSyncDbBuilder::from_connect_options(options, "test-topic")
        .without_network()
        .build()
        .await
        .expect("open from ConnectOptions");
    db.schema()
        .register::<task::Entity>()
        .sync()
        .await
        .expect("register");
    db
}

on_both_executors! {
    async fn the_pool_has_the_size_the_options_give() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_with(options(&dir, "app.db")).await;
        // Three transactions hold three connections at once, each reading.
        let mut open = Vec::new();
        for _ in 0..3 {
            let txn = db.begin().await.expect("a connection of the three");
            assert_eq!(count(&txn, "SELECT count(*) FROM tasks").await, 0);
            open.push(txn);
        }
        // A fourth waits for the acquire timeout the options set (500 ms), then fails: the
        // pool is three, not the library's default of four.
        let err = db.begin().await.unwrap_err();
        assert!(matches!(err, DbErr::ConnectionAcquire(_)), "{err:?}");
        drop(open);
        assert!(db.begin().await.is_ok(), "connections return to the pool");
        // The file runs in WAL mode, as the library needs.
        let row = db
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA journal_mode"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "wal");
    }

    async fn writes_are_captured_and_reach_another_replica() {
        use sea_orm::ActiveModelTrait;
        let dir = tempfile::tempdir().unwrap();
        let a = open_with(options(&dir, "a.db")).await;
        let b = open_with(options(&dir, "b.db")).await;
        let sets = a.change_set_receiver();
        task("1", "from options").insert(&a).await.unwrap();
        let txn = a.begin().await.unwrap();
        task("2", "in a transaction").insert(&txn).await.unwrap();
        txn.commit().await.unwrap();
        for _ in 0..2 {
            let set = sets.try_recv().expect("one change set per commit");
            b.apply_remote(set).await.unwrap();
        }
        assert_eq!(all_tasks(&b).await, all_tasks(&a).await);
        assert_eq!(all_tasks(&b).await.len(), 2);
        assert!(a.verify_log().await.unwrap().is_consistent());
    }

    async fn a_url_that_is_not_sqlite_is_refused() {
        let options = ConnectOptions::new("postgres://localhost/app");
        let err = WaveSyncDbBuilder::from_connect_options(options, "test-topic")
            .without_network()
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedDatabase { ref scheme } if scheme == "postgres"), "{err:?}");
    }
}
