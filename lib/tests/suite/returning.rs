//! What a write to a synced table returns is what the same write returns on a plain table:
//! the columns its `RETURNING` asks for, in order, and nothing of the library's own (issue:
//! `__wavesync_N` columns showed up in the rows, in `column_names()` and in `into_json`).
//!
//! Each statement runs on the synced `tasks` and on `twin`, a table SQLite declares the same
//! way that nothing registers; their results must be equal, in autocommit, inside a
//! transaction and as a stream, and every write must still be captured.

use crate::common::*;
use futures::TryStreamExt;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, JsonValue,
    QueryResult, Set, Statement, StreamTrait, TransactionTrait,
};

/// Statements to run on both tables (`{}` is the table), each with what it returns.
const STATEMENTS: &[&str] = &[
    "INSERT INTO {} (id, title, completed, weight) VALUES ('a', 'one', 1, 2.5) RETURNING *",
    "INSERT INTO {} (id, title, completed, weight) VALUES ('b', 'two', 0, 1) RETURNING title, id",
    "INSERT INTO {} (id, title, completed, weight) VALUES ('c', 'three', 0, 1)",
    "INSERT INTO {} (id, title, completed, weight) VALUES ('d', 'four', 0, 1), ('e', 'five', 1, 2) \
     RETURNING id, completed AS done, weight * 2",
    "INSERT INTO {} (id, title, completed, weight) VALUES ('a', 'uno', 0, 3) \
     ON CONFLICT (id) DO UPDATE SET title = excluded.title RETURNING id, completed",
    "UPDATE {} SET title = 'deux', note = 'n' WHERE id = 'b' RETURNING id, upper(title) AS shout",
    "UPDATE {} SET completed = 1 WHERE id IN ('d', 'e') RETURNING *",
    "UPDATE {} SET weight = 9 WHERE id = 'c'",
    "DELETE FROM {} WHERE id = 'e' RETURNING *",
    "DELETE FROM {} WHERE id = 'd' RETURNING id",
];

/// Creates `twin`, declared like `tasks`.
async fn create_twin(t: &TestDb) {
    let row =
        t.db.query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'",
        ))
        .await
        .unwrap()
        .unwrap();
    let sql: String = row.try_get_by_index(0).unwrap();
    t.db.execute_unprepared(&sql.replacen("tasks", "twin", 1))
        .await
        .unwrap();
}

/// Column names and JSON of `rows`.
fn shape(rows: &[QueryResult]) -> Vec<(Vec<String>, JsonValue)> {
    rows.iter()
        .map(|row| {
            (
                row.column_names(),
                JsonValue::from_query_result(row, "").unwrap(),
            )
        })
        .collect()
}

fn statement(sql: &str, table: &str) -> Statement {
    Statement::from_string(DbBackend::Sqlite, sql.replace("{}", table))
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Autocommit,
    Transaction,
    Stream,
}

async fn run_all(t: &TestDb, via: Via) {
    create_twin(t).await;
    t.take_change_sets();
    let txn = match via {
        Via::Transaction => Some(t.db.begin().await.unwrap()),
        _ => None,
    };
    for sql in STATEMENTS {
        let mut results = Vec::new();
        for table in ["tasks", "twin"] {
            let stmt = statement(sql, table);
            let rows = match (via, &txn) {
                (Via::Transaction, Some(txn)) => txn.query_all_raw(stmt).await,
                (Via::Stream, _) => match t.db.stream_raw(stmt).await {
                    Ok(stream) => stream.try_collect().await,
                    Err(err) => Err(err),
                },
                _ => t.db.query_all_raw(stmt).await,
            };
            results.push(shape(
                &rows.unwrap_or_else(|e| panic!("{table}: {sql}: {e}")),
            ));
        }
        assert_eq!(results[0], results[1], "{via:?}: {sql}");
    }
    if let Some(txn) = txn {
        txn.commit().await.unwrap();
    }
    let sets = t.take_change_sets();
    let expected = match via {
        Via::Transaction => 1,
        _ => STATEMENTS.len(),
    };
    assert_eq!(sets.len(), expected, "{via:?}: every write is captured");
    assert_replica_matches(t, &sets).await;
}

on_both_executors! {
    async fn returning_rows_hold_the_asked_columns_only_in_autocommit() {
        run_all(&TestDb::new().await, Via::Autocommit).await;
    }

    async fn returning_rows_hold_the_asked_columns_only_in_a_transaction() {
        run_all(&TestDb::new().await, Via::Transaction).await;
    }

    async fn returning_rows_hold_the_asked_columns_only_as_a_stream() {
        run_all(&TestDb::new().await, Via::Stream).await;
    }

    async fn seaorm_writes_with_returning_return_what_they_return_on_a_plain_connection() {
        let t = TestDb::new().await;
        t.take_change_sets();
        let inserted = task::Entity::insert(task("a", "one"))
            .exec_with_returning(&t.db)
            .await
            .unwrap();
        assert_eq!(inserted.title, "one");
        let id = task::Entity::insert(task("b", "two")).exec(&t.db).await.unwrap();
        assert_eq!(id.last_insert_id, "b");
        let mut model: task::ActiveModel = inserted.into();
        model.title = Set("uno".into());
        assert_eq!(model.update(&t.db).await.unwrap().title, "uno");
        // The SQL SeaORM generates, run raw: the row holds the entity's columns, in order.
        let insert = sea_orm::sea_query::Query::insert()
            .into_table(task::Entity)
            .columns([task::Column::Id, task::Column::Title, task::Column::Completed, task::Column::Weight])
            .values_panic(["c".into(), "three".into(), true.into(), 1.0.into()])
            .returning_all()
            .to_owned();
        let row = t
            .db
            .query_one_raw(DbBackend::Sqlite.build(&insert))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.column_names(), ["id", "title", "completed", "note", "weight", "data"]);
        let json = JsonValue::from_query_result(&row, "").unwrap();
        assert_eq!(json["completed"], JsonValue::Bool(true), "{json}");
        assert_eq!(json.as_object().unwrap().len(), 6, "{json}");
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 4);
        assert_replica_matches(&t, &sets).await;
    }

    async fn returning_that_cannot_tell_the_rows_apart_is_refused_and_not_executed() {
        let t = TestDb::new().await;
        t.take_change_sets();
        let err = t
            .db
            .query_all_raw(statement(
                "INSERT INTO {} (id, title, completed, weight) VALUES ('a', 'one', 0, 1) RETURNING title",
                "tasks",
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("refused") && err.contains("RETURNING"), "{err}");
        assert!(all_tasks(&t.db).await.is_empty());
        assert!(t.take_change_sets().is_empty());
    }
}
