//! `#[derive(SyncEntity)]` for [WaveSyncDB](https://docs.rs/wavesyncdb): registers a SeaORM
//! entity with the crate it belongs to, at link time, so
//! `db.get_schema_registry(module_path!().split("::").next().unwrap())` finds every entity
//! of the crate without a hand-written list.
//!
//! This file holds only the entry points; each derive expands in its own module.

mod sync_entity;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Registers the SeaORM entity of this module with WaveSyncDB's schema registry.
///
/// Put it on the `Model` struct, next to `DeriveEntityModel`: it registers the `Entity` of
/// the same module. The entity is synced; with `#[sync_entity(local)]` it is registered
/// with `register_local` (its table is created and migrated, its rows stay on this peer).
///
/// ```no_run
/// use sea_orm::entity::prelude::*;
/// use wavesyncdb_derive::SyncEntity;
///
/// #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
/// #[sea_orm(table_name = "tasks")]
/// pub struct Model {
///     #[sea_orm(primary_key, auto_increment = false)]
///     pub id: String,
///     pub title: String,
/// }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// # pub enum Relation {}
/// # impl ActiveModelBehavior for ActiveModel {}
/// ```
#[proc_macro_derive(SyncEntity, attributes(sync_entity))]
pub fn derive_sync_entity(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    sync_entity::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
