//! Unit tests of statement planning.
use super::*;
use crate::schema::{ColumnMeta, ValueKind};

fn registry() -> Registry {
    let mut registry = Registry::default();
    let col = |name: &str| ColumnMeta {
        name: name.into(),
        kind: ValueKind::Text,
        nullable: true,
    };
    registry.insert_synced(
        TableMeta::new(
            "tasks",
            vec!["id".into()],
            vec![col("id"), col("title"), col("done")],
        )
        .unwrap(),
    );
    registry.insert_local("drafts");
    registry
}

fn plan(sql: &str) -> Result<Option<Capture>, Error> {
    plan_statement(sql, DbBackend::Sqlite, &registry())
}

#[test]
fn reads_and_other_tables_pass_through() {
    for sql in [
        r#"SELECT * FROM "tasks" WHERE "title" = 'x'"#,
        r#"INSERT INTO "drafts" ("id") VALUES (?)"#,
        r#"UPDATE "other" SET "a" = 1"#,
        r#"DELETE FROM "drafts""#,
        r#"CREATE TABLE "x" ("id" TEXT PRIMARY KEY)"#,
    ] {
        assert!(plan(sql).unwrap().is_none(), "{sql}");
    }
}

#[test]
fn insert_without_returning_gets_ours_and_the_callers_returning_stays_as_written() {
    let capture = plan(r#"INSERT INTO "tasks" ("id", "title") VALUES (?, ?)"#)
        .unwrap()
        .unwrap();
    assert_eq!(capture.kind, CaptureKind::Insert);
    assert_eq!(capture.returned_columns, ["id", "title", "done"]);
    assert!(matches!(capture.returning, Returning::Appended));
    assert!(
        capture.sql.ends_with(
            r#"RETURNING "id" AS "__wavesync_0", "title" AS "__wavesync_1", "done" AS "__wavesync_2""#
        ),
        "{}",
        capture.sql
    );
    // The caller's own RETURNING is what it reads: nothing is added to it.
    let capture = plan(r#"INSERT INTO "tasks" ("id", "title") VALUES (?, ?) RETURNING "id""#)
        .unwrap()
        .unwrap();
    assert!(
        capture.sql.ends_with(r#"RETURNING "id""#),
        "{}",
        capture.sql
    );
    assert!(
        matches!(&capture.returning, Returning::Own(items) if *items == [returning::Item::Column("id".into())])
    );
    // Without the key, the written rows cannot be told apart.
    let err = plan(r#"INSERT INTO "tasks" ("id", "title") VALUES (?, ?) RETURNING "title""#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("RETURNING"), "{err}");
}

#[test]
fn update_returns_key_and_assigned_columns_only() {
    let capture =
        plan(r#"UPDATE "tasks" SET "done" = ?, "extra" = 1 WHERE "title" LIKE '%, where %'"#)
            .unwrap()
            .unwrap();
    assert_eq!(capture.kind, CaptureKind::Update);
    assert_eq!(capture.returned_columns, ["id", "done"]);
    assert!(capture.sql.contains("'%, where %'"));
}

#[test]
fn a_replace_runs_as_an_upsert_of_every_column() {
    for sql in [
        r#"INSERT OR REPLACE INTO "tasks" ("id", "title") VALUES (?, ?)"#,
        r#"REPLACE INTO "tasks" ("id", "title") VALUES (?, ?)"#,
    ] {
        let capture = plan(sql).unwrap().unwrap();
        assert_eq!(capture.kind, CaptureKind::Insert);
        assert!(!capture.sql.contains("REPLACE"), "{}", capture.sql);
        assert!(
            capture.sql.contains(
                r#"ON CONFLICT("id") DO UPDATE SET "title" = excluded."title", "done" = excluded."done""#
            ),
            "{}",
            capture.sql
        );
    }
}

#[test]
fn refusals_say_why() {
    for (sql, why) in [
        (
            r#"INSERT OR REPLACE INTO "tasks" ("id") VALUES (?) ON CONFLICT DO NOTHING"#,
            "ambiguous",
        ),
        (r#"UPDATE OR REPLACE "tasks" SET "title" = ?"#, "REPLACE"),
        (r#"UPDATE "tasks" SET "id" = ?"#, "primary key"),
        (
            r#"INSERT INTO "tasks" ("id") VALUES (?) ON CONFLICT ("id") DO UPDATE SET "id" = 'x'"#,
            "primary key",
        ),
        (
            r#"WITH c AS (SELECT 1) UPDATE "tasks" SET "title" = 'a'"#,
            "WITH",
        ),
        (
            r#"DELETE FROM "tasks"; DELETE FROM "other""#,
            "several statements",
        ),
        (r#"FROBNICATE "tasks" NOW"#, "could not be parsed"),
    ] {
        let err = plan(sql).unwrap_err().to_string();
        assert!(err.contains(why) && err.contains("tasks"), "{sql}: {err}");
    }
}

#[test]
fn unparsable_sql_about_other_tables_passes_through() {
    assert!(plan("FROBNICATE other NOW").unwrap().is_none());
}

#[test]
fn scripts_split_into_steps() {
    let steps = plan_script(
        r#"CREATE TABLE a (x); INSERT INTO tasks (id, title) VALUES ('1', 'it''s; a ''test'''); SELECT 1"#,
        DbBackend::Sqlite,
        &registry(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(steps.len(), 3);
    let Step::Capture(capture) = &steps[1] else {
        panic!("not captured")
    };
    assert!(
        capture.sql.contains("'it''s; a ''test'''"),
        "{}",
        capture.sql
    );
}
