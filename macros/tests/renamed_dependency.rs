//! `#[derive(SyncEntity)]` when `wavesyncdb` is a renamed dependency: this package's
//! Cargo.toml calls it `sync_db`, and no crate named `wavesyncdb` is in scope here.
//! The derive finds the name in Cargo.toml; `#[sync_entity(crate = "..")]` names it by hand.

mod found {
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    /// The derive looks the renamed dependency up in Cargo.toml.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "found")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod named {
    use sea_orm::entity::prelude::*;

    /// Through the re-export, with the path given by hand.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, sync_db::SyncEntity)]
    #[sea_orm(table_name = "named")]
    #[sync_entity(crate = "::sync_db", local)]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[test]
fn the_derive_registers_entities_through_a_renamed_dependency() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("app.db").display());
        let db = sync_db::WaveSyncDbBuilder::new(url, "renamed")
            .without_network()
            .build()
            .await
            .expect("open database");
        let this_crate = module_path!().split("::").next().expect("a module path");
        let registry = db.get_schema_registry(this_crate);
        assert_eq!(registry.table_names(), ["found", "named"]);
        registry.sync().await.expect("sync");
        let only_named = db.get_schema_registry(&format!("{this_crate}::named::*"));
        assert_eq!(only_named.table_names(), ["named"]);
    });
}
