//! What `#[derive(SyncEntity)]` expands to refers to: not a public API, may change in any
//! release.
//!
//! Re-exports `inventory` and [`EntityRegistration`] (which `registration` owns) so the
//! derive's expansion names one path and applications need no dependency of their own on
//! `inventory`. It holds no logic.

pub use crate::registration::EntityRegistration;
pub use inventory;
