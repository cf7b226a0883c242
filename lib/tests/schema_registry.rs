//! `#[derive(SyncEntity)]` discovery, `get_schema_registry`, composite keys, local tables,
//! and the refusals of entities that cannot be synced.

mod common;

use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set};
use wavesyncdb::{ColumnMeta, Error, TableMeta, ValueKind, WaveSyncDb, WaveSyncDbBuilder};

/// This test crate's name, as the quick start computes it.
fn this_crate() -> &'static str {
    module_path!().split("::").next().expect("a module path")
}

mod album {
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "albums")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod track {
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    /// A composite key: album and position.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "tracks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub album_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod setting {
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    /// Local: an auto-increment key is fine, nothing leaves this peer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "settings")]
    #[sync_entity(local)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub value: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod counter {
    use sea_orm::entity::prelude::*;

    /// Not derived: an auto-increment key cannot be synced.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "counters")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub n: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod path_node {
    use sea_orm::entity::prelude::*;

    /// Not derived: a PostgreSQL-only column type cannot be replicated on SQLite.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "path_nodes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_type = "LTree")]
        pub path: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn open(dir: &tempfile::TempDir) -> WaveSyncDb {
    WaveSyncDbBuilder::new(common::url(dir), "test-topic")
        .without_network()
        .build()
        .await
        .expect("open database")
}

async fn open_discovered() -> (
    tempfile::TempDir,
    WaveSyncDb,
    async_channel::Receiver<wavesyncdb::ChangeSet>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(&dir).await;
    let change_sets = db.change_set_receiver();
    db.get_schema_registry(this_crate())
        .sync()
        .await
        .expect("register discovered entities");
    (dir, db, change_sets)
}

async fn table_exists(db: &WaveSyncDb, table: &str) -> bool {
    common::count(
        db,
        &format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
    )
    .await
        == 1
}

on_both_executors! {
    async fn discovery_registers_exactly_this_crates_derived_entities() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let registry = db.get_schema_registry(this_crate());
        // Ordered by module path; `counter` and `path_node` do not derive `SyncEntity`,
        // and `common`'s entities belong to no registry.
        assert_eq!(registry.table_names(), ["albums", "settings", "tracks"]);
        assert!(db.get_schema_registry("another_crate").table_names().is_empty());
        // Cargo spells crate names with `-`, Rust with `_`: both find the same crate.
        let hyphenated = this_crate().replace('_', "-");
        assert_eq!(db.get_schema_registry(&hyphenated).table_names().len(), 3);
        registry.sync().await.unwrap();
        for table in ["albums", "settings", "tracks"] {
            assert!(table_exists(&db, table).await, "{table} created");
        }
        assert!(!table_exists(&db, "counters").await);
    }

    async fn a_seaorm_style_module_prefix_finds_the_entities_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let crate_name = this_crate();
        // What SeaORM 2.0's own `get_schema_registry` takes: a module path, `::*` optional.
        for prefix in [format!("{crate_name}::album::*"), format!("{crate_name}::album")] {
            assert_eq!(db.get_schema_registry(&prefix).table_names(), ["albums"], "{prefix}");
        }
        assert_eq!(
            db.get_schema_registry(&format!("{crate_name}::*")).table_names(),
            ["albums", "settings", "tracks"]
        );
        db.get_schema_registry(&format!("{crate_name}::track::*")).sync().await.unwrap();
        assert!(table_exists(&db, "tracks").await);
        assert!(!table_exists(&db, "albums").await, "only the prefix's entities");
        // Writes to the table the prefix registered are captured.
        let change_sets = db.change_set_receiver();
        track::ActiveModel { album_id: Set("a".into()), position: Set(1), name: Set("x".into()) }
            .insert(&db).await.unwrap();
        assert_eq!(change_sets.try_recv().unwrap().operations[0].table, "tracks");
    }

    async fn a_prefix_that_matches_no_entity_fails_at_sync_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let crate_name = this_crate();
        // A misspelt module, a partial segment, another crate: each an error, not a no-op.
        for prefix in [
            format!("{crate_name}::entity::*"),
            format!("{crate_name}::alb"),
            "my_crate::entity::*".to_owned(),
        ] {
            let registry = db.get_schema_registry(&prefix);
            assert!(registry.table_names().is_empty(), "{prefix}");
            let err = registry.sync().await.unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("get_schema_registry(\"{prefix}\")"))
                    && message.contains("SyncEntity")
                    && message.contains(&format!("{crate_name}::album")),
                "{message}"
            );
        }
        assert!(!table_exists(&db, "albums").await);
        // A later registration by hand does not hide the mistake.
        let err = db
            .get_schema_registry("my_crate::entity::*")
            .register::<album::Entity>()
            .sync()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("my_crate::entity::*"), "{err}");
    }

    async fn discovered_tables_sync_and_local_ones_do_not() {
        let (_dir, db, change_sets) = open_discovered().await;
        album::ActiveModel { id: Set("a".into()), title: Set("Blue".into()) }
            .insert(&db).await.unwrap();
        setting::ActiveModel { value: Set("dark".into()), ..Default::default() }
            .insert(&db).await.unwrap();
        let sets: Vec<_> = std::iter::from_fn(|| change_sets.try_recv().ok()).collect();
        assert_eq!(sets.len(), 1, "only the synced write is a change set");
        assert_eq!(sets[0].operations[0].table, "albums");
    }

    async fn composite_keys_replicate_row_by_row() {
        let (_dir, a, from_a) = open_discovered().await;
        for (position, name) in [(1, "one"), (2, "two, with a comma")] {
            track::ActiveModel {
                album_id: Set("a".into()),
                position: Set(position),
                name: Set(name.into()),
            }
            .insert(&a).await.unwrap();
        }
        track::Entity::delete_by_id(("a".to_owned(), 1)).exec(&a).await.unwrap();
        let (_dir_b, b, _) = open_discovered().await;
        for set in std::iter::from_fn(|| from_a.try_recv().ok()) {
            b.apply_remote(set).await.unwrap();
        }
        let rows = |db: WaveSyncDb| async move {
            track::Entity::find()
                .order_by_asc(track::Column::Position)
                .all(&db)
                .await
                .unwrap()
        };
        let on_b = rows(b.clone()).await;
        assert_eq!(on_b, rows(a.clone()).await);
        assert_eq!(on_b.len(), 1);
        assert_eq!((on_b[0].position, on_b[0].name.as_str()), (2, "two, with a comma"));
        assert!(b.verify_log().await.unwrap().is_consistent());
    }

    async fn a_local_table_registered_by_derive_refuses_remote_rows() {
        let (_dir, a, from_a) = open_discovered().await;
        album::ActiveModel { id: Set("a".into()), title: Set("Blue".into()) }
            .insert(&a).await.unwrap();
        let mut set = from_a.try_recv().unwrap();
        let mut forged = set.operations[0].clone();
        forged.table = "settings".into();
        forged.primary_key = vec![("id".into(), 1.into())];
        forged.values = vec![("value".into(), "from the network".into())];
        set.operations.insert(0, forged);
        let (_dir_b, b, _) = open_discovered().await;
        assert_eq!(b.apply_remote(set).await.unwrap(), 1, "the album applies");
        assert_eq!(b.metrics().rejected["unknown_table"], 1);
        assert_eq!(common::count(&b, "SELECT count(*) FROM settings").await, 0);
        assert_eq!(common::count(&b, "SELECT count(*) FROM albums").await, 1);
    }

    async fn an_auto_increment_key_is_refused_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let err = db.schema().register::<counter::Entity>().sync().await.unwrap_err();
        assert!(matches!(err, Error::AutoIncrementKey { ref table, .. } if table == "counters"), "{err}");
        let message = err.to_string();
        assert!(message.contains("auto_increment = false") && message.contains("register_local"), "{message}");
        assert!(!table_exists(&db, "counters").await, "a refused registration changes nothing");
        // Kept local, the same entity is fine.
        db.schema().register_local::<counter::Entity>().sync().await.unwrap();
        assert!(table_exists(&db, "counters").await);
    }

    async fn a_column_type_that_cannot_be_replicated_is_refused_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let err = db
            .get_schema_registry(this_crate())
            .register::<path_node::Entity>()
            .sync()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedColumnType { ref column, .. } if column == "path"), "{err}");
        assert!(err.to_string().contains("store it as text"), "{err}");
        assert!(!table_exists(&db, "albums").await, "nothing of the failed sync was created");
    }
}

#[test]
fn a_table_without_a_primary_key_is_refused_and_names_the_fix() {
    // SeaORM's `DeriveEntityModel` already refuses such an entity at compile time; a
    // hand-built `TableMeta` is checked the same way.
    let err = TableMeta::new(
        "events",
        vec![],
        vec![ColumnMeta {
            name: "body".into(),
            kind: ValueKind::Text,
            nullable: false,
        }],
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoPrimaryKey { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("primary_key") && message.contains("register_local"),
        "{message}"
    );
}
