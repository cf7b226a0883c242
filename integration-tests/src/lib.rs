//! Shared pieces of the end-to-end tests: the entities the test programs write.

pub mod task {
    //! A synced task list.
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    /// One task.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        /// Application-chosen key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// What to do.
        pub title: String,
        /// Done or not.
        pub completed: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Opens the database at `path` with the test entities registered.
pub async fn open(path: &std::path::Path) -> Result<wavesyncdb::WaveSyncDb, wavesyncdb::Error> {
    let db =
        wavesyncdb::WaveSyncDbBuilder::new(format!("sqlite:{}?mode=rwc", path.display()), "tests")
            .build()
            .await?;
    db.schema().register::<task::Entity>().sync().await?;
    Ok(db)
}
