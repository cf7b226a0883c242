//! `apply_remote`: last-writer-wins, idempotence, validation, notifications, and the clock.

use crate::common::*;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, ModelTrait, Set};
use wavesyncdb::{CellValue, ChangeSet, ChangeSource, Error, Hlc, RejectReason, WriteKind};

fn far_future(mut set: ChangeSet) -> ChangeSet {
    for op in &mut set.operations {
        op.hlc.time_ms += 3_600_000;
    }
    set
}

on_both_executors! {
    async fn applying_twice_changes_nothing_the_second_time() {
        let a = TestDb::new().await;
        task("x", "hello").insert(&a.db).await.unwrap();
        let sets = a.take_change_sets();
        let b = TestDb::new().await;
        assert_eq!(b.db.apply_remote(sets[0].clone()).await.unwrap(), 1);
        assert_eq!(b.db.apply_remote(sets[0].clone()).await.unwrap(), 0);
        assert_eq!(all_tasks(&b.db).await, all_tasks(&a.db).await);
        assert!(b.take_change_sets().is_empty(), "remote changes are not re-sent as local ones");
    }

    async fn concurrent_edits_of_different_columns_both_survive() {
        let a = TestDb::new().await;
        let b = TestDb::new().await;
        let model = task("x", "v0").insert(&a.db).await.unwrap();
        b.db.apply_remote(a.take_change_sets().remove(0)).await.unwrap();
        let mut on_a = model.clone().into_active_model();
        on_a.title = Set("title from a".into());
        on_a.update(&a.db).await.unwrap();
        let mut on_b = model.into_active_model();
        on_b.completed = Set(true);
        on_b.update(&b.db).await.unwrap();
        for set in a.take_change_sets() {
            b.db.apply_remote(set).await.unwrap();
        }
        for set in b.take_change_sets() {
            a.db.apply_remote(set).await.unwrap();
        }
        let rows = all_tasks(&a.db).await;
        assert_eq!(rows, all_tasks(&b.db).await);
        assert_eq!((rows[0].title.as_str(), rows[0].completed), ("title from a", true));
    }

    async fn the_later_write_wins_on_both_sides() {
        let a = TestDb::new().await;
        let b = TestDb::new().await;
        task("x", "from a").insert(&a.db).await.unwrap();
        task("x", "from b").insert(&b.db).await.unwrap();
        let from_a = a.take_change_sets();
        let from_b = b.take_change_sets();
        let later_is_b = from_b[0].operations[0].hlc > from_a[0].operations[0].hlc;
        a.db.apply_remote(from_b[0].clone()).await.unwrap();
        b.db.apply_remote(from_a[0].clone()).await.unwrap();
        let rows = all_tasks(&a.db).await;
        assert_eq!(rows, all_tasks(&b.db).await);
        assert_eq!(rows[0].title, if later_is_b { "from b" } else { "from a" });
    }

    async fn a_delete_reaches_the_other_side_and_an_older_update_does_not_resurrect() {
        let a = TestDb::new().await;
        let b = TestDb::new().await;
        let model = task("x", "v0").insert(&a.db).await.unwrap();
        b.db.apply_remote(a.take_change_sets().remove(0)).await.unwrap();
        // b updates first, a deletes later: the delete is the later write.
        let mut on_b = model.clone().into_active_model();
        on_b.title = Set("edited".into());
        on_b.update(&b.db).await.unwrap();
        model.delete(&a.db).await.unwrap();
        for set in b.take_change_sets() {
            a.db.apply_remote(set).await.unwrap();
        }
        for set in a.take_change_sets() {
            b.db.apply_remote(set).await.unwrap();
        }
        assert!(all_tasks(&a.db).await.is_empty());
        assert!(all_tasks(&b.db).await.is_empty());
    }

    async fn remote_changes_are_notified_as_remote_per_table() {
        let a = TestDb::new().await;
        let b = TestDb::new().await;
        task("x", "v").insert(&a.db).await.unwrap();
        let mut notes = b.db.subscribe();
        b.db.apply_remote(a.take_change_sets().remove(0)).await.unwrap();
        let note = notes.try_recv().unwrap().unwrap();
        assert_eq!((note.table.as_str(), note.source), ("tasks", ChangeSource::Remote));
        assert_eq!(note.rows[0].kind, WriteKind::Insert);
        assert!(note.touches(&[CellValue::Text("x".into())]));
        assert!(notes.try_recv().is_none());
    }

    async fn bad_input_is_rejected_counted_and_changes_nothing() {
        let a = TestDb::new().await;
        task("x", "v").insert(&a.db).await.unwrap();
        let good = a.take_change_sets().remove(0);
        let b = TestDb::new().await;
        // Unknown tables and columns are not bad input but a peer on another schema
        // version: `schema_versions.rs` tests that they are skipped or kept.
        let mut cases: Vec<(&str, ChangeSet)> = Vec::new();
        let mut forged_existence = good.clone();
        forged_existence.operations[0].values.push((String::new(), CellValue::Integer(1)));
        cases.push(("unknown_column", forged_existence));
        let mut wrong_type = good.clone();
        for (name, value) in &mut wrong_type.operations[0].values {
            if name == "completed" {
                *value = CellValue::Text("yes".into());
            }
        }
        cases.push(("wrong_type", wrong_type));
        let mut null_in_not_null = good.clone();
        for (name, value) in &mut null_in_not_null.operations[0].values {
            if name == "title" {
                *value = CellValue::Null;
            }
        }
        cases.push(("wrong_type", null_in_not_null));
        let mut missing_key = good.clone();
        missing_key.operations[0].primary_key.clear();
        cases.push(("missing_key", missing_key));
        cases.push(("clock_drift", far_future(good.clone())));
        let mut forged = good.clone();
        forged.operations[0].hlc.node = b.db.node_id();
        cases.push(("foreign_stamp", forged));
        for (reason, set) in cases {
            let err = b.db.apply_remote(set).await.unwrap_err();
            match &err {
                Error::Rejected(r) => assert_eq!(r.code(), reason, "{err}"),
                other => panic!("{reason}: unexpected {other}"),
            }
            assert!(all_tasks(&b.db).await.is_empty(), "{reason} changed a row");
            assert_eq!(count(&b.db, "SELECT count(*) FROM _wavesync_log").await, 0, "{reason} logged");
        }
        let metrics = b.db.metrics();
        assert_eq!(metrics.rejected["wrong_type"], 2);
        assert_eq!(metrics.rejected_total(), 6);
        // The good one still applies.
        b.db.apply_remote(good).await.unwrap();
        assert_eq!(all_tasks(&b.db).await.len(), 1);
    }

    async fn remote_names_are_matched_case_insensitively_and_stored_as_registered() {
        let a = TestDb::new().await;
        task("x", "v").insert(&a.db).await.unwrap();
        let mut set = a.take_change_sets().remove(0);
        set.operations[0].table = "TASKS".into();
        for (name, _) in &mut set.operations[0].values {
            *name = name.to_uppercase();
        }
        let b = TestDb::new().await;
        b.db.apply_remote(set).await.unwrap();
        assert_eq!(all_tasks(&b.db).await, all_tasks(&a.db).await);
    }

    async fn the_head_follows_transactions_applied_in_order_one_by_one_or_in_a_batch() {
        let a = TestDb::new().await;
        for key in ["k1", "k2", "k3", "k4", "k5", "k6"] {
            task(key, "v").insert(&a.db).await.unwrap();
        }
        let sets = a.take_change_sets();
        let origin = a.db.node_id();
        let b = TestDb::new().await;
        for set in &sets[..3] {
            b.db.apply_remote(set.clone()).await.unwrap();
        }
        assert_eq!(b.db.head(origin).await.unwrap(), 3);
        // Out of order within a batch: 5 waits for 4, which comes later in the batch.
        let batch = vec![sets[4].clone(), sets[3].clone()];
        wavesyncdb::testing::apply_remote_batch(&b.db, batch).await.unwrap();
        assert_eq!(b.db.head(origin).await.unwrap(), 4, "5 came before 4");
        wavesyncdb::testing::apply_remote_batch(&b.db, vec![sets[4].clone(), sets[5].clone()])
            .await
            .unwrap();
        assert_eq!(b.db.head(origin).await.unwrap(), 6);
        assert_eq!(all_tasks(&b.db).await, all_tasks(&a.db).await);
    }

    async fn an_update_that_arrives_before_its_insert_is_kept_until_the_row_arrives() {
        let a = TestDb::new().await;
        let model = task("x", "v0").insert(&a.db).await.unwrap();
        let mut edit = model.into_active_model();
        edit.title = Set("v1".into());
        edit.update(&a.db).await.unwrap();
        let sets = a.take_change_sets();
        let b = TestDb::new().await;
        b.db.apply_remote(sets[1].clone()).await.unwrap();
        assert!(all_tasks(&b.db).await.is_empty(), "no half row");
        assert_eq!(b.db.head(a.db.node_id()).await.unwrap(), 0, "seq 2 without seq 1 is not contiguous");
        b.db.apply_remote(sets[0].clone()).await.unwrap();
        assert_eq!(all_tasks(&b.db).await, all_tasks(&a.db).await);
        // Conservative: the head only moves by one; catch-up re-fetches seq 2 and
        // re-applying it changes nothing.
        assert_eq!(b.db.head(a.db.node_id()).await.unwrap(), 1);
    }

    async fn one_clock_local_writes_follow_remote_timestamps() {
        let a = TestDb::new().await;
        task("x", "v").insert(&a.db).await.unwrap();
        let mut set = a.take_change_sets().remove(0);
        // 30 s ahead: within the default one-minute drift.
        set.operations[0].hlc.time_ms += 30_000;
        let remote: Hlc = set.operations[0].hlc;
        let b = TestDb::new().await;
        b.db.apply_remote(set).await.unwrap();
        task("y", "local").insert(&b.db).await.unwrap();
        let local = b.take_change_sets().remove(0).operations[0].hlc;
        assert!(local > remote, "{local:?} must follow {remote:?}");
    }

    async fn the_clock_and_identity_survive_a_restart() {
        let t = TestDb::new().await;
        let node = t.db.node_id();
        task("x", "v").insert(&t.db).await.unwrap();
        let before = t.take_change_sets().remove(0).operations[0].hlc;
        let t = t.reopen().await;
        assert_eq!(t.db.node_id(), node);
        task("y", "v").insert(&t.db).await.unwrap();
        let after = t.take_change_sets().remove(0);
        assert!(after.operations[0].hlc > before);
        assert_eq!(after.seq, 2, "sequence numbers continue");
    }

    async fn a_clock_that_followed_a_peer_resumes_above_it_after_a_restart() {
        let a = TestDb::new().await;
        task("x", "v").insert(&a.db).await.unwrap();
        let mut set = a.take_change_sets().remove(0);
        // 30 s ahead: within the drift bound, and far ahead of the wall clock.
        set.operations[0].hlc.time_ms += 30_000;
        let remote: Hlc = set.operations[0].hlc;
        let b = TestDb::new().await;
        // Local writes first, so the clock bound is persisted before the remote stamp.
        task("before", "v").insert(&b.db).await.unwrap();
        b.db.apply_remote(set).await.unwrap();
        let _ = b.take_change_sets();
        let b = b.reopen().await;
        task("y", "after restart").insert(&b.db).await.unwrap();
        let local = b.take_change_sets().remove(0).operations[0].hlc;
        assert!(local > remote, "{local:?} must follow {remote:?} across a restart");
    }

    async fn deleted_rows_come_back_with_a_later_insert() {
        let a = TestDb::new().await;
        task("x", "first").insert(&a.db).await.unwrap();
        task::Entity::delete_by_id("x").exec(&a.db).await.unwrap();
        task("x", "second").insert(&a.db).await.unwrap();
        let sets = a.take_change_sets();
        let b = TestDb::new().await;
        for set in sets.iter().rev() {
            b.db.apply_remote(set.clone()).await.unwrap();
        }
        assert_eq!(all_tasks(&b.db).await, all_tasks(&a.db).await);
    }

    async fn rejects_say_what_to_do() {
        let reason = RejectReason::UnknownTable { table: "x".into() };
        assert!(reason.to_string().contains("not synced"));
    }
}
