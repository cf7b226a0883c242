#![cfg_attr(not(doctest), doc = include_str!("../../README.md"))]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

// Pure modules: no I/O, no async, unit- and property-tested.
mod capture;
mod clock;
mod error;
mod merge;
mod protocol;
mod schema;
mod value;

// Glue: the database, the bus, and the connection SeaORM sees.
mod apply;
mod autocommit;
mod builder;
mod commit;
mod confirm;
mod connection;
mod effects;
mod engine;
mod events;
#[cfg(feature = "prometheus")]
mod exporter;
mod log;
mod metrics;
mod migrate;
mod native;
mod notify;
mod outbox;
mod registration;
mod replica;
mod secret;
mod sql;
mod status;
#[doc(hidden)]
pub mod testing;
mod transaction;
mod trigger_mode;

#[doc(hidden)]
pub mod __private;
/// README.md's examples, compiled and run as doc tests (`cargo test --doc`).
#[cfg(doctest)]
mod readme_doctests;

pub use builder::{DEFAULT_MAX_CLOCK_DRIFT, WaveSyncDbBuilder, sqlite_connect_options};
pub use clock::{ClockDrift, Hlc, NodeId};
pub use connection::WaveSyncDb;
pub use engine::transport::member_transport;
pub use error::{Error, RejectReason, Result};
pub use events::{ConnectionKind, EventsLagged, Reachability, SyncEvent, SyncEvents};
pub use libp2p::{Multiaddr, PeerId};
pub use log::LogReport;
pub use metrics::MetricsSnapshot;
pub use notify::{ChangeNotification, ChangeSource, ChangeSubscription, Lagged, RowChange};
pub use protocol::{ChangeSet, SyncOperation, WriteKind};
pub use registration::SchemaBuilder;
pub use schema::{ColumnMeta, TableMeta, ValueKind};
pub use secret::{GroupSecret, SecretError};
pub use status::{CatchUpProgress, ConnectionFailure, PeerInfo, SyncStatus};
pub use transaction::{ResultStream, WaveSyncTransaction};
pub use value::{CellValue, MAX_CELL_BYTES};
pub use wavesyncdb_derive::SyncEntity;
