//! [`SchemaBuilder`]: register entities, create their tables, and tell the core what syncs.
//!
//! Owns the step from SeaORM entities to a live registry. It is glue: it creates missing
//! tables through SeaORM's schema builder and then records each entity's [`TableMeta`] in
//! the registry that capture and merge consult. Registration errors (a table that cannot be
//! synced) surface from [`SchemaBuilder::sync`], which then changes nothing.

use crate::connection::WaveSyncDb;
use crate::error::Error;
use crate::schema::TableMeta;
use sea_orm::sea_query::TableCreateStatement;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Schema};
use std::sync::PoisonError;

enum Mode {
    Synced(TableMeta),
    Local(String),
}

struct Registration {
    create: TableCreateStatement,
    mode: Mode,
}

/// Registers entities with a [`WaveSyncDb`]: `.register::<E>()` for tables that sync,
/// `.register_local::<E>()` for tables that stay on this peer, then `.sync().await`.
///
/// ```no_run
/// # use sea_orm::entity::prelude::*;
/// # mod task {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// #     #[sea_orm(table_name = "tasks")]
/// #     pub struct Model {
/// #         #[sea_orm(primary_key, auto_increment = false)]
/// #         pub id: String,
/// #         pub title: String,
/// #     }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// #     impl ActiveModelBehavior for ActiveModel {}
/// # }
/// # async fn run(db: &wavesyncdb::WaveSyncDb) -> Result<(), wavesyncdb::Error> {
/// db.schema().register::<task::Entity>().sync().await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "nothing is registered until `sync` is awaited"]
pub struct SchemaBuilder<'a> {
    db: &'a WaveSyncDb,
    registrations: Vec<Registration>,
    error: Option<Error>,
}

impl<'a> SchemaBuilder<'a> {
    pub(crate) fn new(db: &'a WaveSyncDb) -> Self {
        SchemaBuilder {
            db,
            registrations: Vec::new(),
            error: None,
        }
    }

    fn create_statement<E: EntityTrait>() -> TableCreateStatement {
        let mut create = Schema::new(DbBackend::Sqlite).create_table_from_entity(E::default());
        create.if_not_exists();
        create
    }

    /// Registers entity `E` for sync: its writes are replicated and peers' changes to it
    /// are applied here.
    pub fn register<E: EntityTrait>(mut self) -> Self {
        match TableMeta::from_entity::<E>() {
            Ok(meta) => self.registrations.push(Registration {
                create: Self::create_statement::<E>(),
                mode: Mode::Synced(meta),
            }),
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
        self
    }

    /// Registers entity `E` as local: its table is created, but its rows are never sent
    /// to peers and never accepted from them.
    pub fn register_local<E: EntityTrait>(mut self) -> Self {
        self.registrations.push(Registration {
            create: Self::create_statement::<E>(),
            mode: Mode::Local(E::default().table_name().to_owned()),
        });
        self
    }

    /// Creates the missing tables and starts syncing the registered ones.
    pub async fn sync(self) -> Result<(), Error> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let shared = &self.db.shared;
        for registration in &self.registrations {
            shared.conn.execute(&registration.create).await?;
        }
        let mut registry = shared
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for registration in self.registrations {
            match registration.mode {
                Mode::Synced(meta) => {
                    tracing::debug!(table = %meta.name, "syncing table");
                    registry.insert_synced(meta);
                }
                Mode::Local(table) => registry.insert_local(&table),
            }
        }
        Ok(())
    }
}
