//! Shared test support: entities, a temp-dir database, and both executors.
#![allow(dead_code)]

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryOrder, Statement};
use tempfile::TempDir;
use wavesyncdb::{ChangeSet, WaveSyncDb, WaveSyncDbBuilder};

/// Runs an async test body on smol and on async-std: the core needs neither tokio nor any
/// particular executor.
#[macro_export]
macro_rules! on_both_executors {
    ($(async fn $name:ident() $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body() $body
            #[test]
            fn smol() {
                smol::block_on(body());
            }
            #[test]
            fn async_std() {
                async_std::task::block_on(body());
            }
        }
    )*};
}

pub mod task {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
        pub completed: bool,
        pub note: Option<String>,
        pub weight: f64,
        pub data: Option<Vec<u8>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod membership {
    use sea_orm::entity::prelude::*;

    /// A composite key of text and integer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub role: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod draft {
    use sea_orm::entity::prelude::*;

    /// Registered local: never replicated.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "drafts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A WaveSyncDb on a real SQLite file in its own temp dir, with its change sets captured.
pub struct TestDb {
    pub db: WaveSyncDb,
    pub change_sets: async_channel::Receiver<ChangeSet>,
    pub dir: TempDir,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(&dir).await;
        let change_sets = db.change_set_receiver();
        TestDb {
            db,
            change_sets,
            dir,
        }
    }

    /// Every change set committed since the last call.
    pub fn take_change_sets(&self) -> Vec<ChangeSet> {
        std::iter::from_fn(|| self.change_sets.try_recv().ok()).collect()
    }

    /// Closes and reopens the same database file.
    pub async fn reopen(self) -> TestDb {
        let TestDb { db, dir, .. } = self;
        drop(db);
        let db = open(&dir).await;
        let change_sets = db.change_set_receiver();
        TestDb {
            db,
            change_sets,
            dir,
        }
    }
}

pub fn url(dir: &TempDir) -> String {
    format!("sqlite:{}?mode=rwc", dir.path().join("app.db").display())
}

pub async fn open(dir: &TempDir) -> WaveSyncDb {
    let db = WaveSyncDbBuilder::new(url(dir), "test-topic")
        .without_network()
        .build()
        .await
        .expect("open database");
    db.schema()
        .register::<task::Entity>()
        .register::<membership::Entity>()
        .register_local::<draft::Entity>()
        .sync()
        .await
        .expect("register entities");
    db
}

pub async fn all_tasks(db: &impl ConnectionTrait) -> Vec<task::Model> {
    task::Entity::find()
        .order_by_asc(task::Column::Id)
        .all(db)
        .await
        .expect("read tasks")
}

pub async fn all_memberships(db: &impl ConnectionTrait) -> Vec<membership::Model> {
    membership::Entity::find()
        .order_by_asc(membership::Column::GroupId)
        .order_by_asc(membership::Column::UserId)
        .all(db)
        .await
        .expect("read memberships")
}

pub async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await
        .expect("count query")
        .expect("a row");
    row.try_get_by_index(0).expect("an integer")
}

/// Applies `change_sets` to a fresh replica and returns it: what the peers would hold.
pub async fn replica_of(change_sets: &[ChangeSet]) -> TestDb {
    let replica = TestDb::new().await;
    for change_set in change_sets {
        replica
            .db
            .apply_remote(change_set.clone())
            .await
            .expect("replica applies change set");
    }
    replica
}

/// The captured changes, replayed on a fresh replica, give exactly the rows the database
/// holds.
pub async fn assert_replica_matches(source: &TestDb, change_sets: &[ChangeSet]) {
    let replica = replica_of(change_sets).await;
    for db in [&source.db, &replica.db] {
        let report = db.verify_log().await.expect("verify log");
        assert!(report.is_consistent(), "{:?}", report.problems);
    }
    assert_eq!(
        all_tasks(&replica.db).await,
        all_tasks(&source.db).await,
        "tasks differ"
    );
    assert_eq!(
        all_memberships(&replica.db).await,
        all_memberships(&source.db).await,
        "memberships differ"
    );
}

pub fn task(id: &str, title: &str) -> task::ActiveModel {
    use sea_orm::Set;
    task::ActiveModel {
        id: Set(id.into()),
        title: Set(title.into()),
        completed: Set(false),
        note: Set(None),
        weight: Set(1.5),
        data: Set(None),
    }
}
