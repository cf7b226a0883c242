//! Rows the sync log never saw (issue 12, defect 3): rows written before WaveSyncDB, or
//! before their table was registered, replicate once it is; a value in a column without
//! a log entry (a column added with a default) survives a remote update of another column.

use sea_orm::prelude::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Schema,
};
use std::time::Duration;
use wavesyncdb_integration_tests::{
    TestPeer, assert_converge, assert_logs_consistent, new_task, rows, task, wait_until,
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Version 2 of `tasks`: a nullable column with a default, added to rows that exist.
mod task_labeled {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
        pub completed: bool,
        #[sea_orm(default_value = "none")]
        pub label: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Creates `tasks` and inserts 20 rows through `conn`, whatever it is.
async fn create_and_fill(conn: &impl ConnectionTrait) {
    let create = Schema::new(DbBackend::Sqlite).create_table_from_entity(task::Entity);
    conn.execute(&create).await.unwrap();
    task::Entity::insert_many((0..20).map(|i| new_task(&format!("old{i:02}"), "existing")))
        .exec(conn)
        .await
        .unwrap();
}

/// Waits until a new peer bootstrapping to `a` holds `a`'s 20 tasks; panics with its count.
async fn assert_new_peer_gets_them(dir: &std::path::Path, a: &TestPeer) {
    assert_eq!(a.tasks().await.len(), 20);
    let b = TestPeer::start(&dir.join("b.db"), &[a.address()]).await;
    let expected = a.tasks().await;
    let arrived = wait_until(TIMEOUT, || async { b.tasks().await == expected }).await;
    assert!(
        arrived,
        "the new peer holds {}/20 existing rows after {TIMEOUT:?}",
        b.tasks().await.len()
    );
    assert_logs_consistent(&[a, &b]).await;
    b.stop().await;
}

#[test]
fn rows_written_by_plain_sea_orm_before_wavesyncdb_replicate_to_a_new_peer() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let plain = sea_orm::Database::connect(format!("sqlite:{}?mode=rwc", path.display()))
            .await
            .unwrap();
        create_and_fill(&plain).await;
        plain.close().await.unwrap();

        let a = TestPeer::start(&path, &[]).await;
        assert_new_peer_gets_them(dir.path(), &a).await;
        a.stop().await;
    });
}

#[test]
fn rows_written_before_their_table_was_registered_replicate_to_a_new_peer() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start_unregistered(&dir.path().join("a.db"), &[]).await;
        // Not registered yet: these writes pass straight through.
        create_and_fill(&a.db).await;
        a.db.schema()
            .register::<task::Entity>()
            .sync()
            .await
            .unwrap();
        assert_new_peer_gets_them(dir.path(), &a).await;
        a.stop().await;
    });
}

async fn register_labeled(peer: &TestPeer) {
    peer.db
        .schema()
        .register::<task_labeled::Entity>()
        .sync()
        .await
        .expect("register tasks with a label");
}

async fn labeled(peer: &TestPeer, id: &str) -> Option<task_labeled::Model> {
    task_labeled::Entity::find_by_id(id)
        .one(&peer.db)
        .await
        .unwrap()
}

#[test]
fn a_remote_update_of_one_column_keeps_a_value_that_has_no_log_entry() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        let b = TestPeer::start(&dir.path().join("b.db"), &[a.address()]).await;
        assert!(b.wait_connected(1, TIMEOUT).await, "b never connected");
        for i in 0..5 {
            new_task(&format!("t{i}"), "v1")
                .insert(&a.db)
                .await
                .unwrap();
        }
        assert_converge(&[&a, &b], TIMEOUT).await;

        // Both upgrade: every existing row gets label 'none' from the column's default.
        register_labeled(&a).await;
        register_labeled(&b).await;
        assert_eq!(
            labeled(&b, "t1").await.unwrap().label.as_deref(),
            Some("none")
        );

        task_labeled::Entity::update_many()
            .col_expr(task_labeled::Column::Title, Expr::value("edited on A"))
            .filter(task_labeled::Column::Id.eq("t1"))
            .exec(&a.db)
            .await
            .unwrap();
        let arrived = wait_until(TIMEOUT, || async {
            labeled(&b, "t1")
                .await
                .is_some_and(|t| t.title == "edited on A")
        })
        .await;
        assert!(arrived, "A's title edit never reached B");
        let on_b = labeled(&b, "t1").await.unwrap();
        assert_eq!(
            on_b.label.as_deref(),
            Some("none"),
            "B's label was overwritten by A's update of the title: {on_b:?}"
        );
        let same = wait_until(TIMEOUT, || async {
            rows::<task_labeled::Entity>(&a.db).await == rows::<task_labeled::Entity>(&b.db).await
        })
        .await;
        assert!(same, "A and B differ after {TIMEOUT:?}");
        assert_logs_consistent(&[&a, &b]).await;
        a.stop().await;
        b.stop().await;
    });
}
