//! `get_schema_registry` across crates: `inventory` gathers the registrations of every
//! crate linked into one program, and each registry takes only its own crate's.
//!
//! This test program links two crates with `SyncEntity` entities: itself (`discovery`,
//! with `photos`) and the `wavesyncdb_integration_tests` library (with `tasks`).

use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use wavesyncdb::WaveSyncDbBuilder;
use wavesyncdb_integration_tests::task;

mod photo {
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "photos")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub caption: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[test]
fn each_crate_gets_exactly_its_own_entities() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("app.db").display());
        let db = WaveSyncDbBuilder::new(url, "tests")
            .without_network()
            .build()
            .await
            .expect("open");
        let this_crate = module_path!().split("::").next().expect("a crate name");
        assert_eq!(this_crate, "discovery");
        assert_eq!(db.get_schema_registry(this_crate).table_names(), ["photos"]);
        assert_eq!(
            db.get_schema_registry("wavesyncdb_integration_tests")
                .table_names(),
            ["tasks"]
        );
        assert_eq!(
            db.get_schema_registry("wavesyncdb-integration-tests")
                .table_names(),
            ["tasks"]
        );

        // Registering both crates' entities: both tables sync.
        let sent = db.change_set_receiver();
        db.get_schema_registry(this_crate)
            .sync()
            .await
            .expect("sync photos");
        db.get_schema_registry("wavesyncdb_integration_tests")
            .sync()
            .await
            .expect("sync tasks");
        photo::ActiveModel {
            id: Set("p".into()),
            caption: Set("sea".into()),
        }
        .insert(&db)
        .await
        .expect("insert photo");
        task::ActiveModel {
            id: Set("t".into()),
            title: Set("frame it".into()),
            completed: Set(false),
        }
        .insert(&db)
        .await
        .expect("insert task");
        let tables: Vec<String> = std::iter::from_fn(|| sent.try_recv().ok())
            .map(|set| set.operations[0].table.clone())
            .collect();
        assert_eq!(tables, ["photos", "tasks"]);
        assert_eq!(task::Entity::find().all(&db).await.expect("read").len(), 1);
    });
}
