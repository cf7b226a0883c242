//! The core on sqlx's tokio driver (feature `runtime-tokio`, as a Dioxus desktop app uses
//! it): open, register, write in autocommit and in a transaction, hear the change, and
//! apply it on a second replica, all inside a tokio runtime and without smol's.
//!
//! Run: `cargo test -p wavesyncdb --no-default-features --features runtime-tokio --test
//! runtime_tokio`. (The other suites drive the core with smol and async-std, which sqlx's
//! tokio driver does not run under.)
#![cfg(feature = "runtime-tokio")]

use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set, TransactionTrait};
use wavesyncdb::{WaveSyncDb, WaveSyncDbBuilder};

mod task {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, wavesyncdb::SyncEntity)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn open(dir: &tempfile::TempDir, name: &str) -> WaveSyncDb {
    let url = format!("sqlite:{}?mode=rwc", dir.path().join(name).display());
    let db = WaveSyncDbBuilder::new(url, "tokio")
        .without_network()
        .build()
        .await
        .expect("open database");
    db.get_schema_registry(concat!(module_path!(), "::task"))
        .sync()
        .await
        .expect("register");
    db
}

async fn add(db: &impl sea_orm::ConnectionTrait, id: &str, title: &str) {
    task::ActiveModel {
        id: Set(id.into()),
        title: Set(title.into()),
    }
    .insert(db)
    .await
    .expect("insert");
}

#[test]
fn the_core_runs_on_a_tokio_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = open(&dir, "a.db").await;
        let b = open(&dir, "b.db").await;
        let from_a = a.change_set_receiver();
        let mut b_hears = b.subscribe();

        add(&a, "1", "autocommit").await;
        let txn = a.begin().await.expect("begin");
        add(&txn, "2", "in a transaction").await;
        txn.commit().await.expect("commit");

        let mut applied = 0;
        while let Ok(change_set) = from_a.try_recv() {
            applied += b.apply_remote(change_set).await.expect("apply");
        }
        assert_eq!(applied, 2, "two change sets, one row each");
        let rows = |db: WaveSyncDb| async move {
            task::Entity::find()
                .order_by_asc(task::Column::Id)
                .all(&db)
                .await
                .expect("read")
        };
        let on_b = rows(b.clone()).await;
        assert_eq!(on_b, rows(a.clone()).await);
        assert_eq!(on_b.len(), 2);
        let heard = b_hears.try_recv().expect("a notification").expect("no lag");
        assert!(heard.is_remote() && heard.table == "tasks", "{heard:?}");
        assert!(b.verify_log().await.expect("verify").is_consistent());
    });
}
