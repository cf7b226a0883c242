//! Every SeaORM statement form against a WaveSyncDb: the captured changes match the rows
//! actually in the database (replayed on a fresh replica, they give the same tables).

use crate::common::*;
use sea_orm::prelude::Expr;
use sea_orm::sea_query::ExprTrait;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel,
    ModelTrait, PaginatorTrait, QueryFilter, Set, Statement, StreamTrait, TransactionTrait,
};
use wavesyncdb::{CellValue, WriteKind};

on_both_executors! {
    async fn active_model_insert() {
        let t = TestDb::new().await;
        let inserted = task("a", "Buy milk").insert(&t.db).await.unwrap();
        assert_eq!(inserted.title, "Buy milk");
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1);
        let op = &sets[0].operations[0];
        assert_eq!((op.kind, op.table.as_str()), (WriteKind::Insert, "tasks"));
        assert_eq!(op.value("title"), Some(&CellValue::Text("Buy milk".into())));
        assert_eq!(op.value("completed"), Some(&CellValue::Integer(0)));
        assert_eq!(op.value("weight"), Some(&CellValue::Real(1.5)));
        assert_eq!(op.value("note"), Some(&CellValue::Null));
        assert_replica_matches(&t, &sets).await;
    }

    async fn active_model_update_captures_only_changed_columns() {
        let t = TestDb::new().await;
        let model = task("a", "Buy milk").insert(&t.db).await.unwrap();
        let mut active = model.into_active_model();
        active.completed = Set(true);
        let updated = active.update(&t.db).await.unwrap();
        assert!(updated.completed);
        let sets = t.take_change_sets();
        let op = &sets[1].operations[0];
        assert_eq!(op.kind, WriteKind::Update);
        assert_eq!(op.values, vec![("completed".to_owned(), CellValue::Integer(1))]);
        assert_replica_matches(&t, &sets).await;
    }

    async fn active_model_save_updates_existing_rows() {
        let t = TestDb::new().await;
        // With an application-chosen key (as synced tables have), `save` updates.
        task("a", "draft").insert(&t.db).await.unwrap();
        let mut again = task("a", "draft");
        again.title = Set("final, with WHERE and 'quotes'".into());
        again.save(&t.db).await.unwrap();
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 2);
        assert_eq!(all_tasks(&t.db).await[0].title, "final, with WHERE and 'quotes'");
        assert_replica_matches(&t, &sets).await;
    }

    async fn active_model_delete() {
        let t = TestDb::new().await;
        let model = task("a", "x").insert(&t.db).await.unwrap();
        task("b", "y").insert(&t.db).await.unwrap();
        let result = model.delete(&t.db).await.unwrap();
        assert_eq!(result.rows_affected, 1);
        let sets = t.take_change_sets();
        let op = &sets[2].operations[0];
        assert_eq!(op.kind, WriteKind::Delete);
        assert_eq!(op.primary_key, vec![("id".to_owned(), CellValue::Text("a".into()))]);
        assert_replica_matches(&t, &sets).await;
    }

    async fn insert_many_is_one_change_set_with_every_row() {
        let t = TestDb::new().await;
        let rows = (0..50).map(|i| task(&format!("k{i:02}"), &format!("t{i}, ünïcødé ✓")));
        task::Entity::insert_many(rows).exec(&t.db).await.unwrap();
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].operations.len(), 50);
        assert_eq!(all_tasks(&t.db).await.len(), 50);
        assert_replica_matches(&t, &sets).await;
    }

    async fn upsert_on_conflict_update_and_do_nothing() {
        let t = TestDb::new().await;
        task("a", "old").insert(&t.db).await.unwrap();
        task::Entity::insert(task("a", "new"))
            .on_conflict(OnConflict::column(task::Column::Id).update_column(task::Column::Title).to_owned())
            .exec(&t.db)
            .await
            .unwrap();
        task::Entity::insert(task("b", "fresh"))
            .on_conflict(OnConflict::column(task::Column::Id).update_column(task::Column::Title).to_owned())
            .exec(&t.db)
            .await
            .unwrap();
        let ignored = task::Entity::insert(task("a", "ignored"))
            .on_conflict_do_nothing()
            .exec(&t.db)
            .await
            .unwrap();
        assert!(matches!(ignored, sea_orm::TryInsertResult::Conflicted));
        let titles: Vec<String> = all_tasks(&t.db).await.into_iter().map(|m| m.title).collect();
        assert_eq!(titles, ["new", "fresh"]);
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 3, "the ignored insert wrote nothing and sends nothing");
        assert_replica_matches(&t, &sets).await;
    }

    async fn update_many_with_any_where() {
        let t = TestDb::new().await;
        for (id, title) in [("a", "x, where y"), ("b", "keep"), ("c", "x, where z")] {
            task(id, title).insert(&t.db).await.unwrap();
        }
        let result = task::Entity::update_many()
            .col_expr(task::Column::Completed, Expr::value(true))
            .col_expr(task::Column::Weight, Expr::col(task::Column::Weight).add(1.0))
            .filter(task::Column::Title.like("%, where %"))
            .exec(&t.db)
            .await
            .unwrap();
        assert_eq!(result.rows_affected, 2);
        let sets = t.take_change_sets();
        let ops = &sets[3].operations;
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|op| op.kind == WriteKind::Update && op.value("weight") == Some(&CellValue::Real(2.5))));
        assert_replica_matches(&t, &sets).await;
    }

    async fn delete_many_with_filter() {
        let t = TestDb::new().await;
        for id in ["a", "b", "c", "d"] {
            task(id, id).insert(&t.db).await.unwrap();
        }
        let result = task::Entity::delete_many()
            .filter(task::Column::Id.is_in(["b", "d"]))
            .exec(&t.db)
            .await
            .unwrap();
        assert_eq!(result.rows_affected, 2);
        let sets = t.take_change_sets();
        assert_eq!(sets[4].operations.len(), 2);
        assert_replica_matches(&t, &sets).await;
    }

    async fn reads_and_streams_work_unchanged() {
        use futures::TryStreamExt;
        let t = TestDb::new().await;
        for id in ["a", "b", "c"] {
            task(id, id).insert(&t.db).await.unwrap();
        }
        assert_eq!(task::Entity::find().count(&t.db).await.unwrap(), 3);
        let b = task::Entity::find_by_id("b").one(&t.db).await.unwrap().unwrap();
        assert_eq!(b.title, "b");
        let streamed: Vec<task::Model> = task::Entity::find().stream(&t.db).await.unwrap().try_collect().await.unwrap();
        assert_eq!(streamed.len(), 3);
        let raw = t.db.stream_raw(Statement::from_string(DbBackend::Sqlite, "SELECT id FROM tasks")).await.unwrap();
        assert_eq!(raw.try_collect::<Vec<_>>().await.unwrap().len(), 3);
        assert_eq!(t.take_change_sets().len(), 3, "reads send nothing");
    }

    async fn begin_commit_is_one_change_set_in_order() {
        let t = TestDb::new().await;
        let mut notes = t.db.subscribe();
        let txn = t.db.begin().await.unwrap();
        task("a", "one").insert(&txn).await.unwrap();
        task("b", "two").insert(&txn).await.unwrap();
        task::Entity::delete_by_id("a").exec(&txn).await.unwrap();
        membership::ActiveModel { group_id: Set("g".into()), user_id: Set(7), role: Set("admin".into()) }
            .insert(&txn)
            .await
            .unwrap();
        assert!(t.take_change_sets().is_empty(), "nothing is sent before commit");
        txn.commit().await.unwrap();
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1);
        let kinds: Vec<_> = sets[0].operations.iter().map(|o| (o.kind, o.table.as_str())).collect();
        assert_eq!(kinds, [(WriteKind::Insert, "tasks"), (WriteKind::Insert, "tasks"), (WriteKind::Delete, "tasks"), (WriteKind::Insert, "memberships")]);
        let tables: Vec<String> = std::iter::from_fn(|| notes.try_recv()).map(|n| n.unwrap().table.clone()).collect();
        assert_eq!(tables, ["tasks", "memberships"], "one notification per table");
        assert_replica_matches(&t, &sets).await;
    }

    async fn rollback_leaves_no_trace() {
        let t = TestDb::new().await;
        let log_before = count(&t.db, "SELECT count(*) FROM _wavesync_log").await;
        let txn = t.db.begin().await.unwrap();
        task("a", "gone").insert(&txn).await.unwrap();
        txn.rollback().await.unwrap();
        {
            let dropped = t.db.begin().await.unwrap();
            task("b", "dropped").insert(&dropped).await.unwrap();
        }
        let failed = t
            .db
            .transaction::<_, (), sea_orm::DbErr>(|txn| {
                Box::pin(async move {
                    task("c", "failed").insert(txn).await?;
                    Err(sea_orm::DbErr::Custom("changed my mind".into()))
                })
            })
            .await;
        assert!(failed.is_err());
        assert!(all_tasks(&t.db).await.is_empty());
        assert_eq!(count(&t.db, "SELECT count(*) FROM _wavesync_log").await, log_before);
        assert!(t.take_change_sets().is_empty());
        assert_eq!(t.db.head(t.db.node_id()).await.unwrap(), 0, "no sequence number was used");
    }

    async fn transaction_closure_commits() {
        let t = TestDb::new().await;
        t.db.transaction::<_, (), sea_orm::DbErr>(|txn| {
            Box::pin(async move {
                task("a", "x").insert(txn).await?;
                task::Entity::update_many()
                    .col_expr(task::Column::Title, Expr::value("y"))
                    .exec(txn)
                    .await?;
                Ok(())
            })
        })
        .await
        .unwrap();
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].operations.len(), 2);
        assert_replica_matches(&t, &sets).await;
    }

    async fn nested_transactions_keep_committed_savepoints_only() {
        let t = TestDb::new().await;
        let outer = t.db.begin().await.unwrap();
        task("a", "outer").insert(&outer).await.unwrap();
        let kept = outer.begin().await.unwrap();
        task("b", "kept").insert(&kept).await.unwrap();
        kept.commit().await.unwrap();
        let undone = outer.begin().await.unwrap();
        task("c", "undone").insert(&undone).await.unwrap();
        undone.rollback().await.unwrap();
        outer.commit().await.unwrap();
        let ids: Vec<String> = all_tasks(&t.db).await.into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["a", "b"]);
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].operations.len(), 2);
        assert_replica_matches(&t, &sets).await;
    }

    async fn execute_unprepared_scripts_with_hostile_values() {
        let t = TestDb::new().await;
        let result = t.db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS scratch (x TEXT); \
             INSERT INTO tasks (id, title, completed, weight, note, data) VALUES \
               ('a', 'a, b WHERE c = ''d''; --', 0, 1, NULL, X'00FF10'), \
               ('b', '日本語 ✓ \"quoted\"', 1, 2.25, 'n', NULL); \
             UPDATE tasks SET note = 'x,y' WHERE title LIKE '%WHERE%'; \
             INSERT INTO scratch VALUES ('not synced');"
        ).await.unwrap();
        assert_eq!(result.rows_affected(), 4);
        let rows = all_tasks(&t.db).await;
        assert_eq!(rows[0].title, "a, b WHERE c = 'd'; --");
        assert_eq!(rows[0].data, Some(vec![0, 255, 16]));
        assert_eq!(rows[0].note.as_deref(), Some("x,y"));
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 1, "one script, one transaction");
        assert_eq!(sets[0].operations.len(), 3);
        assert_replica_matches(&t, &sets).await;
    }

    async fn raw_execute_reports_rows_and_last_insert_id() {
        let t = TestDb::new().await;
        let inserted = t.db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO tasks (id, title, completed, weight) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
            ["a".into(), "x".into(), false.into(), 1.0.into(), "b".into(), "y".into(), true.into(), 2.0.into()],
        )).await.unwrap();
        assert_eq!(inserted.rows_affected(), 2);
        let rowid = count(&t.db, "SELECT rowid FROM tasks WHERE id = 'b'").await;
        assert_eq!(inserted.last_insert_id(), rowid as u64);
        let updated = t.db.execute_raw(Statement::from_string(DbBackend::Sqlite, "UPDATE tasks SET title = 'z'")).await.unwrap();
        assert_eq!(updated.rows_affected(), 2);
        let none = t.db.execute_raw(Statement::from_string(DbBackend::Sqlite, "DELETE FROM tasks WHERE id = 'nope'")).await.unwrap();
        assert_eq!(none.rows_affected(), 0);
        let sets = t.take_change_sets();
        assert_eq!(sets.len(), 2, "a write that changed nothing sends nothing");
        assert_replica_matches(&t, &sets).await;
    }

    async fn execute_counts_rows_past_the_prefilled_counter() {
        let t = TestDb::new().await;
        let values: Vec<String> = (0..150).map(|i| format!("('k{i:03}', 't', 0, 1.0)")).collect();
        let inserted = t.db.execute_unprepared(&format!(
            "INSERT INTO tasks (id, title, completed, weight) VALUES {}",
            values.join(", ")
        )).await.unwrap();
        assert_eq!(inserted.rows_affected(), 150);
        for (filter, expected) in [("id < 'k003'", 3), ("id < 'k100'", 100), ("1", 150), ("id < 'k070'", 70)] {
            let updated = t.db.execute_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("UPDATE tasks SET title = 'u' WHERE {filter}"),
            )).await.unwrap();
            assert_eq!(updated.rows_affected(), expected, "{filter}");
        }
        let deleted = t.db.execute_raw(Statement::from_string(DbBackend::Sqlite, "DELETE FROM tasks WHERE id >= 'k080'")).await.unwrap();
        assert_eq!(deleted.rows_affected(), 70);
        let sets = t.take_change_sets();
        assert_replica_matches(&t, &sets).await;
    }

    async fn a_cancelled_write_leaves_no_trace_and_the_database_usable() {
        let t = TestDb::new().await;
        for _ in 0..10 {
            let mut write = Box::pin(task("gone", "v").insert(&t.db));
            // One poll sends the write on its way to SQLite; dropping it then cancels it
            // between `BEGIN` and `COMMIT`.
            let _ = futures::poll!(write.as_mut());
            drop(write);
        }
        task("kept", "v").insert(&t.db).await.unwrap();
        let ids: Vec<String> = all_tasks(&t.db).await.into_iter().map(|row| row.id).collect();
        // A write cancelled between `BEGIN` and `COMMIT` leaves nothing. One whose single
        // poll got as far as sending its `COMMIT` (SQLite's thread can be that quick) is
        // committed with its bookkeeping, as a SeaORM write would be; either way the table
        // and the log agree, and each committed write is one numbered transaction.
        assert!(ids == ["kept"] || ids == ["gone", "kept"], "{ids:?}");
        assert_eq!(t.db.head(t.db.node_id()).await.unwrap(), ids.len() as u64);
        let report = t.db.verify_log().await.unwrap();
        assert!(report.is_consistent(), "{:?}", report.problems);
        let sets = t.take_change_sets();
        if ids == ["kept"] {
            assert_eq!(sets.len(), 1, "only the committed write is sent");
            assert_replica_matches(&t, &sets).await;
        }
    }

    async fn composite_keys() {
        let t = TestDb::new().await;
        for (group, user, role) in [("g 1", 1, "admin"), ("g 1", 2, "member"), ("g,2", 1, "member")] {
            membership::ActiveModel { group_id: Set(group.into()), user_id: Set(user), role: Set(role.into()) }
                .insert(&t.db)
                .await
                .unwrap();
        }
        membership::Entity::update_many()
            .col_expr(membership::Column::Role, Expr::value("owner"))
            .filter(membership::Column::UserId.eq(1))
            .exec(&t.db)
            .await
            .unwrap();
        membership::Entity::delete_by_id(("g 1".to_owned(), 2)).exec(&t.db).await.unwrap();
        let sets = t.take_change_sets();
        let delete = &sets.last().unwrap().operations[0];
        assert_eq!(delete.primary_key, vec![("group_id".to_owned(), CellValue::Text("g 1".into())), ("user_id".to_owned(), CellValue::Integer(2))]);
        assert_eq!(all_memberships(&t.db).await.len(), 2);
        assert_replica_matches(&t, &sets).await;
    }

    async fn uncapturable_statements_are_refused_and_not_executed() {
        let t = TestDb::new().await;
        task("a", "original").insert(&t.db).await.unwrap();
        for sql in [
            "UPDATE OR REPLACE tasks SET title = 'replaced' WHERE id = 'a'",
            "UPDATE tasks SET id = 'b' WHERE id = 'a'",
            "WITH x AS (SELECT 1) UPDATE tasks SET title = 'cte'",
        ] {
            let err = t.db.execute_unprepared(sql).await.unwrap_err().to_string();
            assert!(err.contains("refused") && err.contains("tasks"), "{sql}: {err}");
        }
        assert_eq!(all_tasks(&t.db).await[0].title, "original");
        assert_eq!(t.take_change_sets().len(), 1);
    }

    async fn local_and_unregistered_tables_pass_through() {
        let t = TestDb::new().await;
        draft::ActiveModel { body: Set("private".into()), ..Default::default() }.insert(&t.db).await.unwrap();
        t.db.execute_unprepared("CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO other (v) VALUES ('x')").await.unwrap();
        assert!(t.take_change_sets().is_empty());
        assert_eq!(count(&t.db, "SELECT count(*) FROM _wavesync_log").await, 0);
    }
}

on_both_executors! {
    async fn a_table_registered_later_is_captured_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = wavesyncdb::WaveSyncDbBuilder::new(url(&dir), "test-topic").without_network().build().await.unwrap();
        let sent = db.change_set_receiver();
        db.schema().register::<membership::Entity>().sync().await.unwrap();
        db.execute_unprepared("CREATE TABLE tasks (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL, completed INTEGER NOT NULL, note TEXT, weight REAL NOT NULL, data BLOB)").await.unwrap();
        let insert = |id: &'static str| Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO tasks (id, title, completed, weight) VALUES (?, ?, ?, ?)",
            [id.into(), "t".into(), false.into(), 1.0.into()],
        );
        // Not registered yet: passes through (and that plan is remembered).
        db.execute_raw(insert("before")).await.unwrap();
        assert!(sent.try_recv().is_err());
        db.schema().register::<task::Entity>().sync().await.unwrap();
        // The row written before registration is committed as one synced transaction.
        let backfill = sent.try_recv().expect("the row written before registration replicates");
        assert_eq!(backfill.operations.len(), 1);
        assert_eq!(backfill.operations[0].value("id"), Some(&CellValue::Text("before".into())));
        // The same statement text is planned again against the new registry.
        db.execute_raw(insert("after")).await.unwrap();
        let set = sent.try_recv().expect("the write after registration is captured");
        assert_eq!(set.operations[0].value("id"), Some(&CellValue::Text("after".into())));
    }
}
