//! A local write is stamped once it holds SQLite's write lock: a write that waited for the
//! lock behind a transaction is stamped after that transaction's writes, so the value this
//! node keeps is the one every peer keeps.

use crate::common::*;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, TransactionTrait};
use std::time::Duration;

on_both_executors! {
    async fn a_write_that_waited_for_the_lock_is_stamped_after_the_writer_it_waited_for() {
        let t = TestDb::new().await;
        task("r", "first").insert(&t.db).await.unwrap();
        let retitle = |title: &str| task::ActiveModel { id: Set("r".into()), title: Set(title.into()), ..Default::default() };
        // A transaction takes SQLite's write lock...
        let txn = t.db.begin().await.unwrap();
        retitle("from the transaction").update(&txn).await.unwrap();
        // ...a plain write starts meanwhile and waits for that lock...
        let db = t.db.clone();
        let waiting = futures::FutureExt::shared(Box::pin(async move {
            retitle("from the waiting write").update(&db).await.map(drop).map_err(|e| e.to_string())
        }));
        let runner = {
            let waiting = waiting.clone();
            std::thread::spawn(move || futures::executor::block_on(waiting))
        };
        std::thread::sleep(Duration::from_millis(300));
        // ...while the transaction writes again and commits.
        retitle("from the transaction, later").update(&txn).await.unwrap();
        txn.commit().await.unwrap();
        runner.join().unwrap().unwrap();
        // The waiting write came last here, so it must win everywhere.
        assert_eq!(all_tasks(&t.db).await[0].title, "from the waiting write");
        let sets = t.take_change_sets();
        assert_replica_matches(&t, &sets).await;
    }
}
