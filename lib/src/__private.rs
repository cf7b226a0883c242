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
