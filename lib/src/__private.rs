//! What `#[derive(SyncEntity)]` expands to refers to: not a public API, may change in any
//! release.
//!
//! Owns [`EntityRegistration`], the link-time record one derive submits per entity, and
//! re-exports `inventory` so applications need no dependency of their own on it. It never
//! inspects an entity: the registration only holds a function that hands the entity to a
//! [`SchemaBuilder`], so `TableMeta::from_entity` stays the one place that reads SeaORM's
//! metadata and checks it.

pub use inventory;

use crate::schema::builder::SchemaBuilder;

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

/// Every registration linked into this program whose crate is `crate_name` (a `-` in the
/// name is read as `_`, as Cargo does), ordered by module so the result does not
/// depend on link order.
pub(crate) fn registrations_of(crate_name: &str) -> Vec<&'static EntityRegistration> {
    let wanted = crate_name.replace('-', "_");
    let mut found: Vec<&'static EntityRegistration> = inventory::iter::<EntityRegistration>
        .into_iter()
        .filter(|registration| registration.crate_name() == wanted)
        .collect();
    found.sort_by_key(|registration| registration.module_path);
    found
}
