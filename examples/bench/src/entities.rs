//! The tables the benchmark writes: `item` (the measured rows) and `ping` (warm-up writes
//! that make sure the gossip mesh is up before a clock starts; never counted).

pub mod item {
    //! A row of four columns, about the size of a task or a note.
    use sea_orm::entity::prelude::*;

    /// One benchmark row; ids are chosen by the writer, as synced tables require.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item")]
    pub struct Model {
        /// Writer-chosen key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// A short text.
        pub name: String,
        /// A number the updates change.
        pub value: i64,
        /// A flag.
        pub done: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// The row with id `id`, as an insertable active model.
    pub fn new(id: i64) -> ActiveModel {
        use sea_orm::Set;
        ActiveModel {
            id: Set(id),
            name: Set(format!("item number {id}")),
            value: Set(id),
            done: Set(false),
        }
    }
}

pub mod ping {
    //! Warm-up writes.
    use sea_orm::entity::prelude::*;

    /// One warm-up write.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ping")]
    pub struct Model {
        /// Writer-chosen key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
