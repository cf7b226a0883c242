//! Peers on different schema versions: additive migration of a database with rows,
//! remote values for a column this peer lacks kept and applied after migration, tables
//! this peer does not sync skipped and counted.

use crate::common::*;
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set};
use wavesyncdb::{CellValue, ChangeSet, Error, WaveSyncDb, WaveSyncDbBuilder};

/// Version 1 of the notes table.
mod note_v1 {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Version 2: two new nullable columns.
mod note_v2 {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub body: String,
        pub priority: Option<i64>,
        pub tag: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A version 2 that gets the migration wrong: a new NOT NULL column.
mod note_v2_not_null {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub body: String,
        pub priority: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A local table, version 1 and two version 2s.
mod pref_v1 {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prefs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod pref_v2_default {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prefs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        #[sea_orm(default_value = 3)]
        pub size: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod pref_v2_no_default {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prefs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub size: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A database on a temp file with the notes table at version 1 (and `common`'s tasks).
async fn open_v1(dir: &tempfile::TempDir) -> WaveSyncDb {
    let db = WaveSyncDbBuilder::new(url(dir), "test-topic")
        .without_network()
        .build()
        .await
        .unwrap();
    db.schema()
        .register::<task::Entity>()
        .register::<note_v1::Entity>()
        .sync()
        .await
        .unwrap();
    db
}

async fn notes_v2(db: &WaveSyncDb) -> Vec<note_v2::Model> {
    note_v2::Entity::find()
        .order_by_asc(note_v2::Column::Id)
        .all(db)
        .await
        .unwrap()
}

fn note(id: &str, body: &str) -> note_v1::ActiveModel {
    note_v1::ActiveModel {
        id: Set(id.into()),
        body: Set(body.into()),
    }
}

fn drain(receiver: &async_channel::Receiver<ChangeSet>) -> Vec<ChangeSet> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

on_both_executors! {
    async fn additive_migration_keeps_the_rows_of_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_v1(&dir).await;
        note("a", "first").insert(&db).await.unwrap();
        note("b", "second").insert(&db).await.unwrap();
        drop(db);
        // The application is upgraded: the same file, the entity at version 2.
        let db = WaveSyncDbBuilder::new(url(&dir), "test-topic")
        .without_network()
        .build().await.unwrap();
        let sent = db.change_set_receiver();
        db.schema().register::<note_v2::Entity>().sync().await.unwrap();
        let rows = notes_v2(&db).await;
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].body.as_str(), rows[0].priority, rows[0].tag.as_deref()), ("first", None, None));
        assert!(db.verify_log().await.unwrap().is_consistent());
        // The new column syncs like any other.
        note_v2::ActiveModel { id: Set("a".into()), priority: Set(Some(5)), ..Default::default() }
            .update(&db).await.unwrap();
        let set = drain(&sent).remove(0);
        assert_eq!(set.operations[0].value("priority"), Some(&CellValue::Integer(5)));
        // Registering again changes nothing.
        db.schema().register::<note_v2::Entity>().sync().await.unwrap();
        assert_eq!(notes_v2(&db).await.len(), 2);
    }

    async fn a_new_not_null_column_of_a_synced_table_is_refused_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_v1(&dir).await;
        note("a", "first").insert(&db).await.unwrap();
        let err = db.schema().register::<note_v2_not_null::Entity>().sync().await.unwrap_err();
        assert!(matches!(err, Error::Refused { ref table, .. } if table == "notes"), "{err}");
        assert!(err.to_string().contains("Option<T>"), "{err}");
        assert_eq!(
            count(&db, "SELECT count(*) FROM pragma_table_info('notes') WHERE name = 'priority'").await,
            0,
            "nothing changed"
        );
    }

    async fn a_local_table_gains_a_not_null_column_only_with_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_v1(&dir).await;
        db.schema().register_local::<pref_v1::Entity>().sync().await.unwrap();
        pref_v1::ActiveModel { name: Set("x".into()), ..Default::default() }.insert(&db).await.unwrap();
        let err = db.schema().register_local::<pref_v2_no_default::Entity>().sync().await.unwrap_err();
        assert!(err.to_string().contains("default_value"), "{err}");
        db.schema().register_local::<pref_v2_default::Entity>().sync().await.unwrap();
        let rows = pref_v2_default::Entity::find().all(&db).await.unwrap();
        assert_eq!((rows[0].name.as_str(), rows[0].size), ("x", 3));
    }

    async fn a_remote_value_for_a_column_this_peer_lacks_is_applied_after_migration() {
        // A is on version 2 and writes the new columns; B is still on version 1.
        let dir_a = tempfile::tempdir().unwrap();
        let a = open_v1(&dir_a).await;
        let from_a = a.change_set_receiver();
        a.schema().register::<note_v2::Entity>().sync().await.unwrap();
        for (id, priority, tag) in [("a", 1, "x"), ("b", 2, "y"), ("c", 3, "z")] {
            note_v2::ActiveModel {
                id: Set(id.into()),
                body: Set(format!("body {id}")),
                priority: Set(Some(priority)),
                tag: Set(Some(tag.into())),
            }
            .insert(&a).await.unwrap();
        }
        // A later edit of a new column: last writer wins among logged versions too.
        note_v2::ActiveModel { id: Set("a".into()), priority: Set(Some(10)), ..Default::default() }
            .update(&a).await.unwrap();
        let mut sets = drain(&from_a);
        // A peer with another idea of the column's type: this value cannot fit.
        for (name, value) in &mut sets[2].operations[0].values {
            if name == "priority" {
                *value = CellValue::Text("high".into());
            }
        }
        let dir_b = tempfile::tempdir().unwrap();
        let b = open_v1(&dir_b).await;
        // The edit arrives before the inserts.
        sets.rotate_right(1);
        for set in sets {
            b.apply_remote(set).await.unwrap();
        }
        // A newer schema is not an error: every change set applied; the values for the
        // missing columns are only set aside, and counted as such.
        let rejected = b.metrics().rejected;
        assert!(rejected.keys().all(|reason| reason == "unknown_column"), "{rejected:?}");
        let v1_rows = note_v1::Entity::find().order_by_asc(note_v1::Column::Id).all(&b).await.unwrap();
        assert_eq!(v1_rows.len(), 3, "the columns B has are written at once");
        assert!(b.verify_log().await.unwrap().is_consistent());
        b.schema().register::<note_v2::Entity>().sync().await.unwrap();
        let rows = notes_v2(&b).await;
        let got: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.priority, r.tag.as_deref())).collect();
        assert_eq!(got, [("a", Some(10), Some("x")), ("b", Some(2), Some("y")), ("c", None, Some("z"))]);
        assert_eq!(b.metrics().rejected["wrong_type"], 1, "the value that did not fit is counted");
        assert!(b.verify_log().await.unwrap().is_consistent());
        // And nothing is left waiting: a second sync rewrites nothing.
        assert_eq!(count(&b, "SELECT count(*) FROM _wavesync_pending_columns").await, 0);
    }

    async fn operations_on_tables_this_peer_does_not_sync_are_kept_not_applied() {
        let a = TestDb::new().await;
        task("x", "kept").insert(&a.db).await.unwrap();
        let mut set = a.take_change_sets().remove(0);
        let mut other = set.operations[0].clone();
        other.table = "secrets".into();
        set.operations.push(other.clone());
        // `drafts` is registered local in `common`: never written from the network.
        other.table = "drafts".into();
        other.primary_key = vec![("id".into(), 1.into())];
        other.values = vec![("body".into(), "injected".into())];
        set.operations.insert(0, other);
        let b = TestDb::new().await;
        assert_eq!(b.db.apply_remote(set).await.unwrap(), 1);
        assert_eq!(all_tasks(&b.db).await, all_tasks(&a.db).await);
        assert_eq!(count(&b.db, "SELECT count(*) FROM drafts").await, 0);
        // Kept in the log as data, to be written when registered and served meanwhile.
        assert_eq!(count(&b.db, "SELECT count(DISTINCT tbl) FROM _wavesync_log WHERE tbl <> 'tasks'").await, 2);
        let metrics = b.db.metrics();
        assert_eq!(metrics.rejected["unknown_table"], 2);
        assert_eq!(metrics.remote_change_sets_applied, 1);
        assert_eq!(b.db.head(a.db.node_id()).await.unwrap(), 1, "the set counts as applied");
        assert!(b.db.verify_log().await.unwrap().is_consistent());
    }

    async fn rows_that_arrive_before_registration_are_written_when_it_comes() {
        let a = TestDb::new().await;
        for n in 0..20 {
            task(&format!("t{n:02}"), "early").insert(&a.db).await.unwrap();
        }
        task::Entity::delete_by_id("t03").exec(&a.db).await.unwrap();
        let sets = a.take_change_sets();
        // B's engine may receive changes before the application calls `sync()`.
        let dir = tempfile::tempdir().unwrap();
        let b = wavesyncdb::WaveSyncDbBuilder::new(url(&dir), "test-topic").without_network().build().await.unwrap();
        for set in sets {
            b.apply_remote(set).await.unwrap();
        }
        assert_eq!(b.head(a.db.node_id()).await.unwrap(), 21);
        b.schema().register::<task::Entity>().sync().await.unwrap();
        assert_eq!(all_tasks(&b).await, all_tasks(&a.db).await);
        assert_eq!(all_tasks(&b).await.len(), 19);
        let report = b.verify_log().await.unwrap();
        assert!(report.is_consistent(), "{:?}", report.problems);
        assert_eq!(count(&b, "SELECT count(*) FROM _wavesync_pending_columns").await, 0);
    }
}
