//! `verify_log` notices a table and log that disagree (so the crash test can fail).

use crate::common::*;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database};

on_both_executors! {
    async fn writes_that_bypass_the_wrapper_are_reported() {
        let t = TestDb::new().await;
        task("a", "synced").insert(&t.db).await.unwrap();
        assert!(t.db.verify_log().await.unwrap().is_consistent());

        let raw = Database::connect(url(&t.dir)).await.unwrap();
        raw.execute_unprepared("INSERT INTO tasks (id, title, completed, weight) VALUES ('b', 'sneaky', 0, 1)").await.unwrap();
        let report = t.db.verify_log().await.unwrap();
        assert!(report.problems.iter().any(|p| p.contains("not alive in the log")), "{report:?}");

        raw.execute_unprepared("DELETE FROM tasks WHERE id = 'b'; UPDATE tasks SET title = 'changed' WHERE id = 'a'").await.unwrap();
        let report = t.db.verify_log().await.unwrap();
        assert!(report.problems.iter().any(|p| p.contains("column title")), "{report:?}");

        raw.execute_unprepared("DELETE FROM tasks").await.unwrap();
        let report = t.db.verify_log().await.unwrap();
        assert!(report.problems.iter().any(|p| p.contains("live rows")), "{report:?}");
    }
}
