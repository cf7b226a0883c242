//! The crate's one error type. Every variant says what went wrong and what to do about it.
//!
//! Owns [`Error`] and [`RejectReason`]. It must never hide a database error behind a
//! string: SeaORM's [`DbErr`] is carried as it is, and our errors convert into
//! `DbErr::Custom` where SeaORM's traits demand a `DbErr`.

use crate::clock::ClockDrift;
use sea_orm::DbErr;

/// Errors of WaveSyncDB. Converts into [`DbErr`], so `?` works in code that returns
/// SeaORM's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database reported an error.
    #[error(transparent)]
    Db(#[from] DbErr),

    /// WaveSyncDB's own tables (`_wavesync_*`) hold something this version cannot read,
    /// or answered a bookkeeping statement with nothing: they were changed by hand, or by
    /// a newer version.
    #[error(
        "WaveSyncDB bookkeeping is corrupt: {what}; the `_wavesync_*` tables were changed by          hand or by a newer version of WaveSyncDB. Restore the database from a backup, or          delete it and let the peer catch up from its group"
    )]
    Bookkeeping {
        /// What was wrong.
        what: String,
    },

    /// A write to a synced table executed but what it wrote could not be read back for
    /// syncing; the transaction it ran in cannot commit.
    #[error(
        "a write to a synced table ran but cannot be synced ({reason}); its transaction          cannot commit: roll it back"
    )]
    NotCaptured {
        /// Why the written rows could not be read.
        reason: String,
    },

    /// A savepoint (a nested transaction) holds a write that cannot be synced: it cannot
    /// commit into its enclosing transaction.
    #[error(
        "a write of this savepoint cannot be synced; roll the savepoint back (the enclosing          transaction cannot commit with it)"
    )]
    SavepointNotSyncable,

    /// A peer asked for rows of a table whose key columns this node has not recorded yet
    /// (a database logged by an older version, before its first `sync()`).
    #[error(
        "cannot serve rows of `{table}` yet: its key columns are recorded when it is          registered (`sync()`)"
    )]
    KeysNotRecorded {
        /// The table.
        table: String,
    },

    /// A batch of remote rows collides with local rows on a unique column even when
    /// applied row by row (the collision rule could not settle it).
    #[error(
        "a remote row collides with a local one on a unique column and could not be settled;          the batch is asked for again later"
    )]
    UniqueCollision,

    /// The node's identity (its libp2p keypair) could not be encoded for storing.
    #[error("the node's keypair cannot be stored: {reason}")]
    Identity {
        /// What libp2p reported.
        reason: String,
    },

    /// A group secret could not be made (too short a passphrase, bad hex).
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),

    /// `get_schema_registry(prefix)` found no entity deriving `SyncEntity` under `prefix`;
    /// `found` says where derived entities of this program live, if any.
    #[error(
        "get_schema_registry(\"{prefix}\") found no entity deriving `SyncEntity` under that \
         module path ({found}); pass your crate name \
         (`module_path!().split(\"::\").next().unwrap()`) or a module path such as \
         `\"my_app::entity::*\"`, add `#[derive(SyncEntity)]` next to `DeriveEntityModel`, \
         or register entities by hand with `db.schema().register::<E>()`"
    )]
    NoEntityFound {
        /// The prefix given.
        prefix: String,
        /// Where entities deriving `SyncEntity` do live (or that none does).
        found: String,
    },

    /// A relay address given to `WaveSyncDbBuilder::relay` cannot be used.
    #[error(
        "relay address `{address}` cannot be used: {reason}; give the server's full address \
         as `wavesync-server` prints it, e.g. /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."
    )]
    InvalidRelayAddress {
        /// The address as given.
        address: libp2p::Multiaddr,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The database URL is not SQLite.
    #[error(
        "WaveSyncDB supports SQLite only, got a `{scheme}` URL; \
         use a URL such as `sqlite:./app.db?mode=rwc`"
    )]
    UnsupportedDatabase {
        /// The URL's scheme.
        scheme: String,
    },

    /// A connection handed to WaveSyncDB is not SQLite (a row of another backend).
    #[error("WaveSyncDB supports SQLite only: this connection is not SQLite")]
    NotSqlite,

    /// A synced table has no primary key, so its rows cannot be addressed on other peers.
    #[error(
        "table `{table}` has no primary key; a synced table needs one \
         (mark a field `#[sea_orm(primary_key, auto_increment = false)]`), \
         or register it with `register_local` to keep it on this peer"
    )]
    NoPrimaryKey {
        /// The table.
        table: String,
    },

    /// A synced table has an auto-increment key: two peers would mint the same id.
    #[error(
        "table `{table}` has an auto-increment primary key `{column}`: two peers would mint \
         the same id for different rows. Use `#[sea_orm(primary_key, auto_increment = false)]` \
         with a UUID or text key generated by the application, or register the table with \
         `register_local`"
    )]
    AutoIncrementKey {
        /// The table.
        table: String,
        /// The key column.
        column: String,
    },

    /// A column type that cannot be stored in SQLite and replicated.
    #[error(
        "column `{table}.{column}` has type {column_type}, which cannot be replicated on \
         SQLite; store it as text, JSON or bytes, or register the table with `register_local`"
    )]
    UnsupportedColumnType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The SeaORM column type, as debug text.
        column_type: String,
    },

    /// A column name that WaveSyncDB reserves.
    #[error("column `{table}.{column}` has a name WaveSyncDB reserves; rename the column")]
    ReservedColumnName {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },

    /// A statement on a synced table that cannot be captured exactly; it was not executed.
    #[error(
        "WaveSyncDB refused a statement on synced table `{table}`: {reason}. It was not executed"
    )]
    Refused {
        /// The synced table the statement writes.
        table: String,
        /// Why it cannot be captured, and what to write instead.
        reason: String,
    },

    /// A value too large to sync was written to a synced table; the write did not commit.
    #[error(
        "`{table}.{column}` would hold {bytes} bytes, over the {max}-byte limit of a synced \
         cell (wavesyncdb::MAX_CELL_BYTES); the write was not committed. Store large files \
         outside the database and sync their names or hashes"
    )]
    CellTooLarge {
        /// The synced table.
        table: String,
        /// The column.
        column: String,
        /// The value's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },

    /// A change from a remote peer was rejected; nothing was applied.
    #[error("remote change rejected: {0}")]
    Rejected(#[from] RejectReason),

    /// The network engine could not listen on an address given to
    /// `WaveSyncDbBuilder::listen_on`.
    #[error(
        "could not listen on {address}: {source}; give an address this host has (`ip addr` \
         lists them; /ip4/0.0.0.0/tcp/PORT listens on all of them) and a free port (port 0 \
         picks one)"
    )]
    Listen {
        /// The address as given.
        address: libp2p::Multiaddr,
        /// What the operating system or libp2p said.
        #[source]
        source: std::io::Error,
    },

    /// The network engine could not start (its thread, runtime or swarm).
    #[error("the WaveSyncDB network engine could not start: {reason}")]
    EngineStart {
        /// What failed.
        reason: String,
    },

    /// The network engine has stopped (`shutdown()`, `close()`, or the engine thread
    /// ended): nothing reaches peers until the database is opened again.
    #[error(
        "the WaveSyncDB network engine has stopped (shutdown() or close() was called, or \
         the engine failed: see the logs); changes stay in the log, open the database \
         again to sync them"
    )]
    EngineStopped,

    /// A network operation on a database built `without_network()`.
    #[error(
        "this WaveSyncDb was built without_network(), so it cannot {action}; build it \
         without `without_network()` to sync with peers"
    )]
    NoNetwork {
        /// What was asked.
        action: &'static str,
    },
}

/// Why a remote change was rejected. Each reason is counted in the metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The table is not registered for sync on this peer.
    #[error("table `{table}` is not synced on this peer")]
    UnknownTable {
        /// The table named by the change.
        table: String,
    },
    /// The column is not part of the synced table on this peer.
    #[error("column `{table}.{column}` is not synced on this peer")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column named by the change.
        column: String,
    },
    /// A value of a storage class the column cannot hold.
    #[error("column `{table}.{column}` expects {expected}, the change holds {found}")]
    WrongType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What the column accepts.
        expected: &'static str,
        /// The storage class that arrived.
        found: &'static str,
    },
    /// The change does not carry exactly the table's primary key.
    #[error("change for `{table}` does not carry its primary key exactly (expected {expected:?})")]
    MissingKey {
        /// The table.
        table: String,
        /// The key columns, in order.
        expected: Vec<String>,
    },
    /// The change's timestamp is too far in the future.
    #[error(transparent)]
    ClockDrift(#[from] ClockDrift),
    /// A change stamped by a node other than the change set's origin.
    #[error("an operation stamped by another node than the change set's origin")]
    ForeignStamp,
    /// A value larger than [`crate::MAX_CELL_BYTES`].
    #[error(
        "column `{table}.{column}` holds {bytes} bytes, over the {max}-byte limit of a synced cell"
    )]
    Oversized {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The value's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Names that cannot be a table's (empty, too long, a key with repeated columns).
    #[error("change for `{table}` has a malformed {what}")]
    Malformed {
        /// The table named by the change (cut to 256 characters).
        table: String,
        /// What is wrong.
        what: &'static str,
    },
}

impl RejectReason {
    /// A short stable name for counting and logging.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::UnknownTable { .. } => "unknown_table",
            RejectReason::UnknownColumn { .. } => "unknown_column",
            RejectReason::WrongType { .. } => "wrong_type",
            RejectReason::MissingKey { .. } => "missing_key",
            RejectReason::ClockDrift(_) => "clock_drift",
            RejectReason::ForeignStamp => "foreign_stamp",
            RejectReason::Oversized { .. } => "oversized",
            RejectReason::Malformed { .. } => "malformed",
        }
    }
}

impl From<Error> for DbErr {
    fn from(err: Error) -> DbErr {
        match err {
            Error::Db(db) => db,
            other => DbErr::Custom(other.to_string()),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
