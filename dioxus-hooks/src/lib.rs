//! Dioxus hooks for [WaveSyncDB](wavesyncdb): components that show synced SeaORM tables
//! and re-render when a row changes, here or on a peer.
//!
//! - [`use_synced_table`]: a signal of every row of a table, ordered by primary key;
//! - [`use_synced_row`]: a signal of one row, `None` once it is deleted;
//! - [`use_synced_query`]: a signal of a filtered, ordered SeaORM query, re-run when a
//!   table it reads changes;
//! - [`use_sync_status`]: connected peers (direct or relayed), catch-ups in progress and
//!   how far behind this node is, pushed by the engine's sync events;
//! - [`use_db`] / [`provide_db`]: the database through Dioxus context (a cheap clone of
//!   the handle, nothing leaked).
//!
//! The data hooks' value is a [`Synced`]: the rows (it dereferences to them), whether the
//! first load is still [`loading`](Synced::loading), and the [`error`](Synced::error) of
//! the last load. Each hook subscribes to the database's change bus before its first
//! load, so no change falls between the two, and coalesces bursts of changes into a few
//! reloads.
//!
//! # Runtime features
//!
//! `runtime-smol` (the default) builds WaveSyncDB's SQLite driver on smol and needs no
//! runtime from the app; `runtime-tokio` builds it on tokio, which a Dioxus desktop app
//! runs on already, so the app carries one runtime instead of two (take it with
//! `default-features = false, features = ["runtime-tokio", "desktop"]`). With
//! `runtime-tokio` every database call must run inside a tokio runtime: the desktop
//! renderer's, or the one `launch` opens the database on.
//!
//! # Launching a desktop app
//!
//! With the cargo feature `desktop` (which needs webkit2gtk on Linux), `launch` opens the
//! database, runs your setup, provides the database as context and opens the window;
//! `launch_with`, `try_launch` and `try_launch_with` take a configured database builder
//! and Dioxus launcher, or return the error. Without the feature, build the database
//! yourself and call [`provide_db`] in your root component, with any renderer.
//!
//! The documentation of `launch` (built with the feature) holds a complete app; the
//! example `examples/dioxus-tasks` is a real one.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]

mod context;
mod error;
#[cfg(feature = "desktop")]
mod launch;
mod synced;
mod use_sync_status;
mod use_synced_query;
mod use_synced_row;
mod use_synced_table;
mod watch;

#[cfg(not(any(feature = "runtime-smol", feature = "runtime-tokio")))]
compile_error!(
    "wavesyncdb_dioxus needs a runtime feature: `runtime-smol` (the default) or `runtime-tokio`"
);

pub use context::{provide_db, try_use_db, use_db};
pub use error::{LaunchError, SetupError};
#[cfg(feature = "desktop")]
pub use launch::{launch, launch_with, try_launch, try_launch_with};
pub use synced::Synced;
pub use use_sync_status::use_sync_status;
pub use use_synced_query::use_synced_query;
pub use use_synced_row::{PrimaryKeyOf, use_synced_row};
pub use use_synced_table::use_synced_table;
