//! Gaps in transparency: DDL on synced tables, tables of other schemas that share a synced
//! table's name, and the error kinds SeaORM callers match on.

use crate::common::*;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait};

on_both_executors! {
    async fn ddl_that_would_break_a_synced_table_is_refused_and_not_executed() {
        let t = TestDb::new().await;
        task("a", "kept").insert(&t.db).await.unwrap();
        for sql in [
            "DROP TABLE tasks",
            "ALTER TABLE tasks RENAME TO chores",
            "ALTER TABLE tasks DROP COLUMN note",
            "ALTER TABLE tasks RENAME COLUMN title TO name",
        ] {
            let err = t.db.execute_unprepared(sql).await.unwrap_err().to_string();
            assert!(err.contains("refused") && err.contains("tasks"), "{sql}: {err}");
        }
        // Adding a column is harmless (it is not synced until the entity has it).
        t.db.execute_unprepared("ALTER TABLE tasks ADD COLUMN extra TEXT").await.unwrap();
        assert_eq!(all_tasks(&t.db).await[0].title, "kept");
    }

    async fn a_temp_table_named_like_a_synced_one_is_not_captured() {
        let t = TestDb::new().await;
        t.take_change_sets();
        // A temp table lives on one connection: keep to one, in a transaction.
        let txn = t.db.begin().await.unwrap();
        txn.execute_unprepared(
            "CREATE TEMP TABLE tasks (id TEXT PRIMARY KEY, title TEXT, completed INTEGER, weight REAL)",
        )
        .await
        .unwrap();
        txn.execute_unprepared("INSERT INTO temp.tasks (id, title, completed, weight) VALUES ('x', 'scratch', 0, 1)")
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert!(t.take_change_sets().is_empty(), "a write to temp.tasks is not a synced write");
        assert_eq!(count(&t.db, "SELECT count(*) FROM _wavesync_log").await, 0);
    }

    async fn execute_in_a_transaction_fails_as_an_exec_error() {
        let t = TestDb::new().await;
        task("a", "first").insert(&t.db).await.unwrap();
        let txn = t.db.begin().await.unwrap();
        let err = txn
            .execute_raw(Statement::from_string(
                DbBackend::Sqlite,
                "INSERT INTO tasks (id, title, completed, weight) VALUES ('a', 'again', 0, 1)",
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, DbErr::Exec(_)), "{err:?}");
        txn.rollback().await.unwrap();
    }
}

on_both_executors! {
    async fn rows_a_migration_inserts_on_a_plain_connection_are_adopted_by_the_next_sync() {
        let t = TestDb::new().await;
        task("a", "synced").insert(&t.db).await.unwrap();
        t.take_change_sets();
        // A migration seeds data through a plain SeaORM connection to the same file.
        let plain = sea_orm::Database::connect(url(&t.dir)).await.unwrap();
        plain
            .execute_unprepared("INSERT INTO tasks (id, title, completed, weight) VALUES ('seed', 'seeded', 0, 1)")
            .await
            .unwrap();
        plain.close().await.unwrap();
        t.db.schema().register::<task::Entity>().sync().await.unwrap();
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1, "the seeded row is committed as one synced transaction");
        assert_eq!(sets[0].operations.len(), 1);
        let report = t.db.verify_log().await.unwrap();
        assert!(report.is_consistent(), "{:?}", report.problems);
        // Nothing left to adopt: the next sync sends nothing.
        t.db.schema().register::<task::Entity>().sync().await.unwrap();
        assert!(t.take_change_sets().is_empty());
    }
}

on_both_executors! {
    async fn a_value_over_the_cell_limit_is_refused_and_does_not_commit() {
        use sea_orm::EntityTrait;
        let t = TestDb::new().await;
        t.take_change_sets();
        let big = vec![7u8; wavesyncdb::MAX_CELL_BYTES + 1];
        let mut row = task("big", "too large");
        row.data = sea_orm::ActiveValue::Set(Some(big.clone()));
        let err = row.clone().insert(&t.db).await.unwrap_err().to_string();
        assert!(err.contains("MAX_CELL_BYTES"), "{err}");
        // Inside a transaction the write cannot be committed either, whatever the caller
        // does with the error.
        let txn = t.db.begin().await.unwrap();
        assert!(row.insert(&txn).await.is_err());
        let err = txn.commit().await.unwrap_err().to_string();
        assert!(err.contains("MAX_CELL_BYTES"), "{err}");
        assert!(task::Entity::find_by_id("big").one(&t.db).await.unwrap().is_none());
        assert!(t.take_change_sets().is_empty());
        assert!(t.db.verify_log().await.unwrap().is_consistent());
    }
}

on_both_executors! {
    async fn insert_or_replace_gives_a_synced_row_what_sqlite_gives_a_plain_one() {
        let t = TestDb::new().await;
        t.take_change_sets();
        t.db.execute_unprepared(
            "CREATE TABLE twin (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL, \
             completed INTEGER NOT NULL, note TEXT, weight REAL NOT NULL, data BLOB)",
        )
        .await
        .unwrap();
        for statement in [
            "INSERT OR REPLACE INTO {} (id, title, completed, weight, note) VALUES ('a', 'one', 0, 1, 'kept?')",
            // A replace gives every column the statement does not name its default.
            "REPLACE INTO {} (id, title, completed, weight) VALUES ('a', 'two', 1, 2)",
            "INSERT OR REPLACE INTO {} (id, title, completed, weight) VALUES ('b', 'three', 0, 3)",
        ] {
            for table in ["tasks", "twin"] {
                t.db.execute_unprepared(&statement.replace("{}", table))
                    .await
                    .unwrap_or_else(|e| panic!("{table}: {e}"));
            }
        }
        let rows = |table: &str| {
            format!("SELECT id || '|' || title || '|' || completed || '|' || ifnull(note, 'NULL') || '|' || weight FROM {table} ORDER BY id")
        };
        let read = |sql: String| {
            let db = t.db.clone();
            async move {
                db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.try_get_by_index::<String>(0).unwrap())
                    .collect::<Vec<_>>()
            }
        };
        let synced = read(rows("tasks")).await;
        assert_eq!(synced, read(rows("twin")).await);
        assert_eq!(synced[0], "a|two|1|NULL|2.0");
        assert_eq!(t.take_change_sets().len(), 3, "every replace is captured");
        let report = t.db.verify_log().await.unwrap();
        assert!(report.is_consistent(), "{:?}", report.problems);
    }
}
