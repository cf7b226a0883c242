//! [`WaveSyncDbBuilder`]: how a [`WaveSyncDb`] is configured and opened.
//!
//! Owns the SQLite settings the library opens its database with (the application's pool,
//! from a URL or from the application's SeaORM `ConnectOptions`, and the engine's own
//! connection, always the library's), the network settings handed to the engine, and the
//! order of start-up: the engine's connection (which puts the file in WAL mode), the
//! application's pool, bookkeeping tables, identity, clock, shared state, engine. It never
//! touches a user table and never spawns anything but the engine.

use crate::clock::{HlcClock, NodeId};
use crate::connection::WaveSyncDb;
use crate::engine::{self, NetworkConfig};
use crate::error::Error;
use crate::log;
use crate::metrics::Metrics;
use crate::notify::Bus;
use crate::outbox::Outbox;
use crate::replica::Shared;
use crate::schema::Registry;
use crate::secret::GroupSecret;
use libp2p::Multiaddr;
use sea_orm::{ConnectOptions, Database};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Default bound on how far ahead of our clock a remote timestamp may be.
pub const DEFAULT_MAX_CLOCK_DRIFT: Duration = Duration::from_secs(60);

/// Connections of the application's pool for a database file: WAL lets readers work
/// while one connection writes, so reads need not queue behind a write (SQLite still
/// takes one writer at a time; the others wait in its busy handler). SeaORM alone would
/// open one.
const APP_POOL_CONNECTIONS: u32 = 4;

/// The SQLite settings WaveSyncDB opens its database with, as SeaORM `ConnectOptions`:
/// WAL journal, `synchronous = NORMAL`, a 10 s busy timeout, no ping before each use of a
/// pooled connection, no per-statement logging, and for a database file a pool of four
/// connections (readers need not wait for a writer). An in-memory database (tests) has one
/// connection, shared with the network engine, and does not enforce foreign keys.
///
/// Open a plain SeaORM connection with these to compare like with like (the benchmark
/// does), or to read a WaveSyncDB file from another tool without changing its journal.
pub fn sqlite_connect_options(url: &str) -> ConnectOptions {
    connect_options(url, true)
}

/// Whether `url` names an in-memory database (each connection would open its own).
fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

fn connect_options(url: &str, foreign_keys: bool) -> ConnectOptions {
    // An in-memory database has one pool, which the engine shares: it cannot check
    // foreign keys there either (see `apply`).
    let foreign_keys = foreign_keys && !in_memory(url);
    let mut options = ConnectOptions::new(url.to_owned());
    if !in_memory(url) {
        options.max_connections(if foreign_keys {
            APP_POOL_CONNECTIONS
        } else {
            1
        });
    }
    options
        .sqlx_logging(false)
        // A connection to a local file does not go stale: pinging it before every use
        // would cost a round trip to SQLite's thread per statement.
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(move |opts| {
            // WAL keeps readers and the writer apart; NORMAL is durable against process
            // crashes (a power cut may lose the last commits, never corrupt).
            opts.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(foreign_keys)
        });
    options
}

/// The engine's connection: [`connect_options`] without foreign keys, and with the main
/// schema's triggers as `triggers_off` says whenever the pool opens a connection (see
/// `trigger_mode`).
fn engine_connect_options(url: &str, triggers_off: &Arc<AtomicBool>) -> ConnectOptions {
    let mut options = connect_options(url, false);
    let triggers_off = Arc::clone(triggers_off);
    options.map_sqlx_sqlite_pool_opts(move |pool| {
        let triggers_off = Arc::clone(&triggers_off);
        pool.after_connect(move |conn, _| {
            let enabled = !triggers_off.load(Ordering::Acquire);
            Box::pin(async move {
                if enabled {
                    Ok(())
                } else {
                    crate::native::set_triggers(conn, false).await
                }
            })
        })
    });
    options
}

/// Configures and opens a [`WaveSyncDb`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct WaveSyncDbBuilder {
    /// The application's pool: [`sqlite_connect_options`] of a URL, or the application's
    /// own ([`WaveSyncDbBuilder::from_connect_options`]).
    options: ConnectOptions,
    max_clock_drift: Duration,
    notification_buffer: usize,
    network: Option<NetworkConfig>,
    listen_set: bool,
    max_connections: Option<u32>,
}

impl WaveSyncDbBuilder {
    /// A builder for the SQLite database at `url` (e.g. `sqlite:./app.db?mode=rwc`),
    /// syncing with the peers of `topic`.
    ///
    /// The database opens with WaveSyncDB's SQLite settings ([`sqlite_connect_options`]);
    /// to choose pool size, timeouts, logging or SQLite options yourself, start from
    /// SeaORM's `ConnectOptions` with [`from_connect_options`](Self::from_connect_options).
    pub fn new(url: impl Into<String>, topic: impl Into<String>) -> Self {
        Self::from_connect_options(sqlite_connect_options(&url.into()), topic)
    }

    /// A builder for the SQLite database that SeaORM's `options` name, opened as
    /// `Database::connect(options)` would open it, syncing with the peers of `topic`.
    ///
    /// Taken from `options`, for the application's pool (its reads, writes and
    /// transactions): everything `ConnectOptions` carries, SeaORM's defaults included —
    /// pool size and timeouts, `sqlx_logging` (on unless you turn it off), ping before
    /// acquire, `after_connect`, and the SQLite settings of `map_sqlx_sqlite_opts` (or
    /// sqlx's defaults without it: foreign keys on, a 5 s busy timeout, `synchronous =
    /// FULL`). To keep WaveSyncDB's settings and change a few, start from
    /// [`sqlite_connect_options`]`(url)`; note that `map_sqlx_sqlite_opts` replaces the
    /// closure it set, so set the journal mode and busy timeout in yours too.
    ///
    /// What the library decides, and why:
    /// - Pool size: `max_connections` when you set it (or [`max_connections`](Self::max_connections),
    ///   which wins), otherwise four for a database file (SeaORM would open one, and
    ///   reads would queue behind writes). An in-memory database always has one
    ///   connection, shared with the engine: every other connection would open a database
    ///   of its own.
    /// - Journal mode: the library opens the file first with its own connection in WAL
    ///   mode, which is a property of the file, so your connections run in WAL too, and
    ///   readers never wait for a writer. If your SQLite settings force another journal
    ///   mode, it holds (a warning is logged): sync stays correct, but readers and writers
    ///   then wait on each other within the busy timeout.
    /// - The network engine's own connection takes only the URL from `options`: WAL, a
    ///   10 s busy timeout, foreign keys off (remote change sets are applied as a whole,
    ///   see the README), one connection, no statement logging. So your pool size and
    ///   settings never starve it, nor it your application.
    ///
    /// A URL that is not SQLite makes [`build`](Self::build) fail with
    /// [`Error::UnsupportedDatabase`].
    ///
    /// ```
    /// # fn main() -> Result<(), wavesyncdb::Error> { smol::block_on(async {
    /// # let dir = tempfile::tempdir().expect("temp dir");
    /// # let url = format!("sqlite:{}?mode=rwc", dir.path().join("app.db").display());
    /// let mut options = sea_orm::ConnectOptions::new(url);
    /// options
    ///     .max_connections(8)
    ///     .acquire_timeout(std::time::Duration::from_secs(3))
    ///     .sqlx_logging(false);
    /// let db = wavesyncdb::WaveSyncDbBuilder::from_connect_options(options, "my-app-topic")
    ///     .without_network()
    ///     .build()
    ///     .await?;
    /// # Ok(()) }) }
    /// ```
    pub fn from_connect_options(options: ConnectOptions, topic: impl Into<String>) -> Self {
        WaveSyncDbBuilder {
            options,
            max_clock_drift: DEFAULT_MAX_CLOCK_DRIFT,
            notification_buffer: 1024,
            network: Some(NetworkConfig::new(topic.into())),
            listen_set: false,
            max_connections: None,
        }
    }

    fn network_mut(&mut self) -> Option<&mut NetworkConfig> {
        self.network.as_mut()
    }

    /// Listens on `address` (e.g. `/ip4/0.0.0.0/tcp/4001`); may be called several times.
    /// Without it, the node listens on every interface on a port the system picks.
    pub fn listen_on(mut self, address: Multiaddr) -> Self {
        let first = !self.listen_set;
        self.listen_set = true;
        if let Some(network) = self.network_mut() {
            if first {
                network.listen.clear();
            }
            network.listen.push(address);
        }
        self
    }

    /// Connects to the peer at `address` at start (e.g. `/ip4/10.0.0.2/tcp/4001`): for
    /// peers that mDNS cannot find (other networks, or mDNS off). May be called several
    /// times.
    pub fn bootstrap(mut self, address: Multiaddr) -> Self {
        if let Some(network) = self.network_mut() {
            network.bootstrap.push(address);
        }
        self
    }

    /// Reaches the group beyond the LAN through the relay and rendezvous server at
    /// `address`, which must end with the server's id, as `wavesync-server` prints it:
    /// `/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...` (or `/dns4/relay.example.org/...`).
    /// May be called several times.
    ///
    /// The node keeps a connection to each relay (dialling again with backoff when it is
    /// lost), reserves a circuit slot there, registers the group under a namespace
    /// derived from the topic and secret (the server learns neither), and dials the
    /// members it finds through the relay; libp2p's hole punching (DCUtR) then upgrades
    /// the connection to a direct one where both NATs allow it, and sync goes on over the
    /// relay where they do not. [`crate::PeerInfo::connection`] says which. In a private
    /// group the server must run with the same secret.
    pub fn relay(mut self, address: Multiaddr) -> Self {
        if let Some(network) = self.network_mut() {
            network.relays.push(address);
        }
        self
    }

    /// Discovers peers on the local network by mDNS (default: on).
    pub fn mdns(mut self, enabled: bool) -> Self {
        if let Some(network) = self.network_mut() {
            network.mdns = enabled;
        }
        self
    }

    /// How often peers compare what they have applied and pull what is missing
    /// (default 5 s). Connecting to a peer always compares at once.
    pub fn catch_up_interval(mut self, interval: Duration) -> Self {
        if let Some(network) = self.network_mut() {
            network.heads_interval = interval.max(Duration::from_millis(50));
        }
        self
    }

    /// The largest gossip message in bytes (default 1 MiB); a larger transaction is sent
    /// in parts that the receiver applies together.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        if let Some(network) = self.network_mut() {
            network.max_message_bytes = bytes.max(1024);
        }
        self
    }

    /// Makes the group private: only peers with the same secret can connect (libp2p's
    /// pre-shared-key private network; QUIC stays off). Get one from
    /// [`WaveSyncDb::generate_secret`] or [`GroupSecret::from_passphrase`], and hand it to
    /// every member over a channel you trust. Without a secret the group is open: anyone
    /// who knows the topic can join.
    pub fn group_secret(mut self, secret: GroupSecret) -> Self {
        if let Some(network) = self.network_mut() {
            network.secret = Some(secret);
        }
        self
    }

    /// Opens the database without the network engine: nothing listens, nothing is sent.
    /// Change sets stay in the log (and on [`WaveSyncDb::change_set_receiver`]).
    pub fn without_network(mut self) -> Self {
        self.network = None;
        self
    }

    /// How many connections the application's pool opens (default: the `ConnectOptions`'
    /// `max_connections`, else four for a database file; always one for an in-memory
    /// database). The network engine has a connection of its own, so the application's
    /// writes and the engine never wait for each other's connections; with one
    /// connection, reads queue behind writes.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = Some(connections.max(1));
        self
    }

    /// How far ahead of this node's clock a remote timestamp may be before the change is
    /// rejected (default one minute). Bounds how far a peer with a wrong clock can win.
    pub fn max_clock_drift(mut self, drift: Duration) -> Self {
        self.max_clock_drift = drift;
        self
    }

    /// How many change notifications a slow subscriber may fall behind before it is told
    /// it lagged (default 1024).
    pub fn notification_buffer(mut self, notifications: usize) -> Self {
        self.notification_buffer = notifications;
        self
    }

    /// Opens the database, creates the sync bookkeeping tables and loads this node's
    /// identity and clock.
    pub async fn build(self) -> Result<WaveSyncDb, Error> {
        let url = self.options.get_url().to_owned();
        let scheme = url.split(':').next().unwrap_or_default();
        if scheme != "sqlite" {
            return Err(Error::UnsupportedDatabase {
                scheme: scheme.to_owned(),
            });
        }
        if let Some(network) = &self.network {
            engine::check_relay_addresses(&network.relays)?;
        }
        let mut options = self.options;
        if let Some(connections) = self.max_connections {
            options.max_connections(connections);
        }
        let memory = in_memory(&url);
        if memory {
            if options.get_max_connections().is_some_and(|n| n > 1) {
                tracing::warn!(
                    "an in-memory database has one connection: each other would open a database of its own"
                );
            }
            options.max_connections(1);
        } else if options.get_max_connections().is_none() {
            options.max_connections(APP_POOL_CONNECTIONS);
        }
        // The engine's connection opens the file first: it puts the file in WAL mode
        // (a property of the file), whatever the application's settings say.
        let engine_triggers_off = Arc::new(AtomicBool::new(false));
        let engine_conn = if memory {
            None
        } else {
            Some(Database::connect(engine_connect_options(&url, &engine_triggers_off)).await?)
        };
        let conn = Database::connect(options).await?;
        if !memory {
            warn_unless_wal(&conn).await?;
        }
        log::create_tables(&conn).await?;
        let engine_conn = engine_conn.unwrap_or_else(|| conn.clone());
        let keypair = log::keypair(&conn).await?;
        let node_id = NodeId::from_peer_id_bytes(&keypair.public().to_peer_id().to_bytes());
        let last = log::load_clock(&conn).await?;
        let committed = log::head(&conn, node_id).await?;
        let max_drift_ms = u64::try_from(self.max_clock_drift.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(%node_id, "WaveSyncDB opened");
        let shared = Arc::new(Shared {
            conn,
            engine_conn,
            engine_apart: !memory,
            engine_triggers_off,
            touch_triggers_ever: AtomicBool::new(false),
            node_id,
            registry: RwLock::new(Registry::default()),
            clock: Mutex::new(HlcClock::new(node_id, last, max_drift_ms)),
            bus: Bus::new(self.notification_buffer),
            outbox: Outbox::new(committed),
            write_gate: async_lock::Mutex::new(()),
            commit_order: async_lock::Mutex::new(()),
            clock_bound_ms: std::sync::atomic::AtomicU64::new(0),
            metrics: Metrics::default(),
            plans: Mutex::default(),
        });
        let engine = match self.network {
            Some(network) => Some(Arc::new(
                engine::start(Arc::clone(&shared), keypair, network).await?,
            )),
            None => None,
        };
        Ok(WaveSyncDb { shared, engine })
    }
}

/// Logs a warning when the application's connections do not run in WAL mode (their own
/// SQLite settings chose another journal mode; see
/// [`WaveSyncDbBuilder::from_connect_options`]).
async fn warn_unless_wal(conn: &sea_orm::DatabaseConnection) -> Result<(), Error> {
    use sea_orm::ConnectionTrait;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await?;
    let mode: Option<String> = row.and_then(|row| row.try_get_by_index(0).ok());
    if !mode
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("wal"))
    {
        tracing::warn!(
            journal_mode = mode.as_deref().unwrap_or("unknown"),
            "the database does not run in WAL mode: readers and writers wait on each other"
        );
    }
    Ok(())
}
