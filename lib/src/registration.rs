//! [`SchemaBuilder`]: register entities, create and migrate their tables, and tell the core
//! what syncs.
//!
//! Owns the step from SeaORM entities to a live registry, and [`EntityRegistration`], the
//! link-time record one `#[derive(SyncEntity)]` submits per entity (reached by the
//! derive's expansion through `__private`). A registration only holds a function that
//! hands the entity to a [`SchemaBuilder`], so `TableMeta::from_entity` stays the one
//! place that reads SeaORM's metadata and checks it. It is glue: `sync` creates
//! missing tables through SeaORM's schema builder, adds missing columns (additive
//! migration, see [`crate::migrate`]), rewrites rows whose remote values waited for a new
//! column, and records each entity's [`TableMeta`] in the registry that capture and merge
//! consult, all in one database transaction. Registration errors (a table that cannot be
//! synced) surface from [`SchemaBuilder::sync`], which then changes nothing.
//!
//! It works over the replica's shared state (`replica::Shared`), below the SeaORM facade:
//! the facade only hands it that state (`db.schema()`, `db.get_schema_registry(..)`), and
//! this module never imports the facade. It never drops, renames or retypes a column:
//! migration is additive only.

use crate::error::Error;
use crate::log;
use crate::migrate::{self, ColumnPlan, Mode, TablePlan};
use crate::replica::Shared;
use crate::schema::TableMeta;
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, IdenStatic, Iterable, PrimaryKeyToColumn, Schema,
};

/// Registers entities with a database: `.register::<E>()` for tables that sync,
/// `.register_local::<E>()` for tables that stay on this peer, then `.sync().await`.
///
/// `db.get_schema_registry(prefix)` starts one with every entity under `prefix` that
/// derives `SyncEntity`; `db.schema()` starts an empty one. Registering a table twice keeps
/// the later registration.
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
    shared: &'a Shared,
    tables: Vec<TablePlan>,
    error: Option<Error>,
}

impl std::fmt::Debug for SchemaBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaBuilder")
            .field("tables", &self.table_names())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The error of a `get_schema_registry` prefix that finds nothing: the prefix, and where
/// the program's entities that derive `SyncEntity` live (at most five modules).
fn no_entity_under(prefix: &str) -> Error {
    let linked: Vec<&str> = inventory::iter::<EntityRegistration>
        .into_iter()
        .map(|registration| registration.module_path)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(5)
        .collect();
    let seen = if linked.is_empty() {
        "no entity of this program derives `SyncEntity`".to_owned()
    } else {
        format!("entities deriving it live in {}", linked.join(", "))
    };
    Error::NoEntityFound {
        prefix: prefix.to_owned(),
        found: seen,
    }
}

impl<'a> SchemaBuilder<'a> {
    /// An empty builder over `shared`.
    pub(crate) fn new(shared: &'a Shared) -> Self {
        SchemaBuilder {
            shared,
            tables: Vec::new(),
            error: None,
        }
    }

    /// A builder with every entity under `prefix` that derives `SyncEntity` registered
    /// (see `get_schema_registry` on the database handle); if there is none, `sync` fails
    /// with an error naming the prefix.
    pub(crate) fn under(shared: &'a Shared, prefix: &str) -> Self {
        let registrations = registrations_under(prefix);
        let mut builder = SchemaBuilder::new(shared);
        if registrations.is_empty() {
            builder.error = Some(no_entity_under(prefix));
            return builder;
        }
        registrations
            .into_iter()
            .fold(builder, |builder, registration| {
                (registration.register)(builder)
            })
    }

    /// The tables registered so far, in registration order.
    pub fn table_names(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.table.as_str()).collect()
    }

    fn plan<E: EntityTrait>(mode: Mode) -> TablePlan {
        let schema = Schema::new(DbBackend::Sqlite);
        let entity = E::default();
        let mut create = schema.create_table_from_entity(entity);
        create.if_not_exists();
        let keys: Vec<String> = E::PrimaryKey::iter()
            .map(|key| key.into_column().as_str().to_owned())
            .collect();
        let columns = E::Column::iter()
            .map(|column| {
                let def = column.def();
                ColumnPlan {
                    name: column.as_str().to_owned(),
                    nullable: def.is_null(),
                    has_default: def.get_column_default().is_some(),
                    unique: def.is_unique(),
                    key: keys.iter().any(|k| k == column.as_str()),
                    def: schema.get_column_def::<E>(column),
                }
            })
            .collect();
        TablePlan {
            table: entity.table_name().to_owned(),
            create,
            columns,
            mode,
        }
    }

    fn push(&mut self, plan: TablePlan) {
        // A later registration of the same table replaces the earlier one, so an
        // application can turn a discovered entity local, or register it again.
        self.tables
            .retain(|t| !t.table.eq_ignore_ascii_case(&plan.table));
        self.tables.push(plan);
    }

    /// Registers entity `E` for sync: its writes are replicated and peers' changes to it
    /// are applied here. An entity that cannot be synced (no primary key, an
    /// auto-increment key, a column type that cannot be replicated) makes
    /// [`sync`](Self::sync) fail with an error that names the fix.
    pub fn register<E: EntityTrait>(mut self) -> Self {
        match TableMeta::from_entity::<E>() {
            Ok(meta) => self.push(Self::plan::<E>(Mode::Synced(meta))),
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
        self
    }

    /// Registers entity `E` as local: its table is created and migrated, but its rows
    /// are never sent to peers and never accepted from them.
    pub fn register_local<E: EntityTrait>(mut self) -> Self {
        self.push(Self::plan::<E>(Mode::Local));
        self
    }

    /// Creates the missing tables, adds the missing columns, writes the rows and values
    /// that peers sent before this registration (kept in the sync log meanwhile), and
    /// starts syncing the registered tables, in one database transaction: on error nothing
    /// changed. Rows a table holds that the sync log has never seen (written before the
    /// table was first registered, or since by plain SeaORM or a migration on another
    /// connection) are committed as one synced transaction, so they reach peers.
    ///
    /// Migration is additive: a column the entity has and the table lacks is added with
    /// `ALTER TABLE .. ADD COLUMN`; nothing is dropped or retyped. A new column of a synced
    /// table must be nullable (`Option<T>`), because rows that peers still on the old
    /// schema insert carry no value for it; a new column of a local table must be nullable
    /// or have a `default_value` (SQLite cannot add a `NOT NULL` column without one). New
    /// key or unique columns cannot be added by SQLite. Each of these is refused with an
    /// error that says what to declare instead.
    pub async fn sync(self) -> Result<(), Error> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let shared = self.shared;
        // The triggers' plan with these tables synced, in force on the engine's
        // connection before anything is applied against it.
        let newly_synced: Vec<String> = self
            .tables
            .iter()
            .filter(|plan| matches!(plan.mode, Mode::Synced(_)))
            .map(|plan| plan.table.to_ascii_lowercase())
            .collect();
        let triggers = crate::trigger_mode::prepare(shared, &newly_synced).await?;
        // On the engine's connection, which does not enforce foreign keys: rows kept for a
        // later registration are written here in table order, children before parents
        // maybe, and a child may have lost its parent on another peer (see `apply`).
        let txn = crate::sql::begin_immediate(&shared.engine_conn).await?;
        let mut existed = Vec::with_capacity(self.tables.len());
        for plan in &self.tables {
            existed.push(migrate::create_or_extend(&txn, plan).await?);
        }
        // Stamped while this transaction holds SQLite's write lock.
        let now = shared.tick();
        let floor = crate::clock::Hlc {
            time_ms: 0,
            counter: 0,
            node: shared.node_id,
        };
        let mut backfilled = Vec::new();
        for (plan, existed) in self.tables.iter().zip(existed) {
            if let Mode::Synced(meta) = &plan.mode {
                let meta = std::sync::Arc::new(meta.clone());
                let registered_before =
                    log::record_table_keys(&txn, &meta.name, &meta.primary_key).await?;
                let skipped = migrate::apply_waiting_values(&txn, &meta).await?;
                for _ in 0..skipped {
                    shared.metrics.rejected("wrong_type");
                }
                if existed
                    && (!registered_before
                        || crate::log::pending::has_unlogged_rows(&txn, &meta.name).await?)
                {
                    backfilled.extend(migrate::backfill(&txn, &meta, floor, now).await?);
                }
            }
        }
        // Every table synced once this registration commits, for their foreign keys.
        let synced: Vec<std::sync::Arc<TableMeta>> = {
            let registry = shared.registry();
            let mut synced: Vec<_> = registry
                .synced_tables()
                .filter(|t| {
                    !self
                        .tables
                        .iter()
                        .any(|p| p.table.eq_ignore_ascii_case(&t.name))
                })
                .cloned()
                .collect();
            synced.extend(self.tables.iter().filter_map(|plan| match &plan.mode {
                Mode::Synced(meta) => Some(std::sync::Arc::new(meta.clone())),
                Mode::Local => None,
            }));
            synced
        };
        let foreign_keys = migrate::foreign_keys(&txn, &synced).await?;
        // The registry changes while this transaction still holds SQLite's write lock, so
        // no remote change set is admitted against the old schema and written after it.
        {
            let mut registry = shared.registry_mut();
            for plan in &self.tables {
                match &plan.mode {
                    Mode::Synced(meta) => {
                        tracing::debug!(table = %meta.name, "syncing table");
                        registry.insert_synced(meta.clone());
                    }
                    Mode::Local => registry.insert_local(&plan.table),
                }
            }
            registry.set_foreign_keys(foreign_keys);
            registry.set_triggers(triggers);
        }
        // Rows that existed before their table synced commit as one local transaction.
        crate::commit::commit_outermost(txn, shared, backfilled, crate::commit::Notes::None)
            .await?;
        Ok(())
    }
}

/// One entity registered by `#[derive(SyncEntity)]`.
#[derive(Debug)]
pub struct EntityRegistration {
    /// `module_path!()` where the derive was expanded: its first segment is the crate.
    pub module_path: &'static str,
    /// Adds the entity to a builder (`register` or `register_local`).
    pub register: for<'a> fn(SchemaBuilder<'a>) -> SchemaBuilder<'a>,
}

impl EntityRegistration {
    /// The crate the entity belongs to.
    pub fn crate_name(&self) -> &'static str {
        self.module_path
            .split("::")
            .next()
            .unwrap_or(self.module_path)
    }
}

inventory::collect!(EntityRegistration);

/// Every registration linked into this program whose module path lies under `prefix`,
/// ordered by module so the result does not depend on link order.
///
/// `prefix` is what SeaORM 2.0's own `get_schema_registry` takes: a crate name
/// (`my_app`, or `my-app` as Cargo spells it) or a module path (`my_app::entity`, with or
/// without a trailing `::*` or `::`). It matches whole path segments: `my_app::entity`
/// finds `my_app::entity::task` and `my_app::entity` itself, not `my_app::entity_old`.
pub(crate) fn registrations_under(prefix: &str) -> Vec<&'static EntityRegistration> {
    let wanted = PathPrefix::parse(prefix);
    let mut found: Vec<&'static EntityRegistration> = inventory::iter::<EntityRegistration>
        .into_iter()
        .filter(|registration| wanted.matches(registration.module_path))
        .collect();
    found.sort_by_key(|registration| registration.module_path);
    found
}

/// A module-path prefix, split into segments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PathPrefix(Vec<String>);

impl PathPrefix {
    /// Reads a crate name or module path: a trailing `*` and `::` are dropped, surrounding
    /// spaces ignored, and a `-` in the crate name read as `_`, as Cargo does.
    pub(crate) fn parse(prefix: &str) -> PathPrefix {
        let trimmed = prefix
            .trim()
            .trim_end_matches('*')
            .trim_end_matches("::")
            .trim_start_matches("::");
        let mut segments: Vec<String> = trimmed
            .split("::")
            .map(|segment| segment.trim().to_owned())
            .collect();
        if let Some(first) = segments.first_mut() {
            *first = first.replace('-', "_");
        }
        PathPrefix(segments)
    }

    /// Whether `module_path` is this prefix or lies under it.
    pub(crate) fn matches(&self, module_path: &str) -> bool {
        let mut path = module_path.split("::");
        self.0
            .iter()
            .all(|wanted| path.next() == Some(wanted.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::PathPrefix;

    #[test]
    fn crate_names_and_module_paths_match_whole_segments() {
        for prefix in ["my_app", "my-app", "my_app::*", "my_app::", " my_app "] {
            let p = PathPrefix::parse(prefix);
            assert!(p.matches("my_app"), "{prefix}");
            assert!(p.matches("my_app::entity::task"), "{prefix}");
            assert!(!p.matches("my_app_extra::task"), "{prefix}");
        }
        for prefix in ["my_app::entity", "my_app::entity::*", "my-app::entity::"] {
            let p = PathPrefix::parse(prefix);
            assert!(p.matches("my_app::entity"), "{prefix}");
            assert!(p.matches("my_app::entity::task"), "{prefix}");
            assert!(!p.matches("my_app::entity_old::task"), "{prefix}");
            assert!(!p.matches("my_app::other"), "{prefix}");
            assert!(!p.matches("my_app"), "{prefix}");
        }
        assert!(!PathPrefix::parse("").matches("my_app"));
    }
}
