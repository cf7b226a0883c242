//! [`WaveSyncDb`]: a SeaORM connection that captures every write to a synced table.
//!
//! Owns the handle the application holds: the state every transaction shares ([`Shared`],
//! from `replica`) and the engine; [`crate::WaveSyncDbBuilder`] (in `builder`) opens it. It implements SeaORM's
//! `ConnectionTrait`, `TransactionTrait` and `StreamTrait`, so all of SeaORM works against
//! it unchanged. Reads and writes to unregistered or local tables go straight to SQLite;
//! a write to a synced table runs in a [`WaveSyncTransaction`] so it commits with its
//! bookkeeping. It must never send a change that did not commit, and never execute a
//! write to a synced table that it could not capture.

use crate::autocommit::autocommit_write;
use crate::clock::NodeId;
use crate::engine::EngineHandle;
use crate::error::Error;
use crate::metrics::MetricsSnapshot;
use crate::notify::ChangeSubscription;
use crate::protocol::ChangeSet;
use crate::registration::SchemaBuilder;
use crate::replica::Shared;
use crate::secret::GroupSecret;
use crate::status::{PeerInfo, SyncStatus};
use crate::transaction::{ResultStream, WaveSyncTransaction, run_transaction};
use crate::{apply, log};
use libp2p::{Multiaddr, PeerId};
use sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult,
    Statement, StreamTrait, TransactionError, TransactionOptions, TransactionTrait,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A SeaORM connection whose writes to synced tables reach every peer of the group.
///
/// Use it wherever SeaORM takes a connection (`&db`): `insert`, `update`, `delete`,
/// `find`, `insert_many`, `update_many`, `delete_many`, transactions, streams and raw SQL
/// all work unchanged. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct WaveSyncDb {
    pub(crate) shared: Arc<Shared>,
    /// The network engine; it stops when the last handle is dropped.
    pub(crate) engine: Option<Arc<EngineHandle>>,
}

impl std::fmt::Debug for WaveSyncDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaveSyncDb")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

impl WaveSyncDb {
    /// A fresh random group secret, for [`WaveSyncDbBuilder::group_secret`].
    pub fn generate_secret() -> GroupSecret {
        GroupSecret::generate()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// A builder to register entities and create their tables; see [`SchemaBuilder`].
    pub fn schema(&self) -> SchemaBuilder<'_> {
        SchemaBuilder::new(&self.shared)
    }

    /// A [`SchemaBuilder`] with every entity under `prefix` that derives
    /// [`SyncEntity`](crate::SyncEntity) already registered (synced, or local with
    /// `#[sync_entity(local)]`). More entities can be registered before `sync`.
    ///
    /// `prefix` is what SeaORM 2.0's own `get_schema_registry` takes: a module path such
    /// as `"my_app::entity::*"` (the `::*` is optional), or a crate name such as
    /// `module_path!().split("::").next().unwrap()` for every entity of your crate.
    /// It matches whole path segments, so `"my_app::entity"` does not take
    /// `my_app::entity_old`. Entities of other crates linked into the program are
    /// included only if the prefix names them.
    ///
    /// A prefix under which no entity derives `SyncEntity` makes [`sync`](SchemaBuilder::sync)
    /// fail (with an error naming the prefix) instead of syncing nothing: a misspelt
    /// prefix would otherwise leave every write uncaptured.
    ///
    /// ```
    /// # mod entity { pub mod task {
    /// #     use sea_orm::entity::prelude::*;
    /// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, wavesyncdb::SyncEntity)]
    /// #     #[sea_orm(table_name = "tasks")]
    /// #     pub struct Model {
    /// #         #[sea_orm(primary_key, auto_increment = false)]
    /// #         pub id: String,
    /// #     }
    /// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    /// #     pub enum Relation {}
    /// #     impl ActiveModelBehavior for ActiveModel {}
    /// # } }
    /// # fn main() -> Result<(), wavesyncdb::Error> { smol::block_on(async {
    /// let db = wavesyncdb::WaveSyncDbBuilder::new("sqlite::memory:", "my-topic")
    ///     .without_network()
    ///     .build()
    ///     .await?;
    /// // SeaORM's style: every entity under a module (here `entity`, beside this code).
    /// let registry = db.get_schema_registry(concat!(module_path!(), "::entity::*"));
    /// assert_eq!(registry.table_names(), ["tasks"]);
    /// registry.sync().await?;
    ///
    /// // Nothing derives `SyncEntity` there: an error, not a silent no-op.
    /// assert!(db.get_schema_registry("no_such_crate::entity::*").sync().await.is_err());
    /// # Ok(()) }) }
    /// ```
    pub fn get_schema_registry(&self, prefix: &str) -> SchemaBuilder<'_> {
        SchemaBuilder::under(&self.shared, prefix)
    }

    /// Subscribes to change notifications (local and remote) published from now on.
    pub fn subscribe(&self) -> ChangeSubscription {
        self.shared.bus.subscribe()
    }

    /// The receiving end of this node's committed change sets, one per transaction with
    /// synced writes, in commit order. There is one receiver at a time, and calling this
    /// again replaces it — the network engine's included: its live publishing stops, and
    /// peers get the changes through catch-up. While it is full, writers wait after their
    /// commit (back-pressure), holding the order of commits: so the task that drains it must
    /// not itself write to synced tables while it may be full, or it waits on itself.
    /// Nothing is dropped. Before the first call, change sets are only kept in the log.
    pub fn change_set_receiver(&self) -> async_channel::Receiver<ChangeSet> {
        self.shared.outbox.open_application()
    }

    /// Applies a change set received from a peer: per-cell last-writer-wins, in one
    /// database transaction, then notifications marked remote. Idempotent and
    /// order-independent. Returns the number of rows it changed. Invalid input is rejected
    /// as a whole, counted in [`metrics`](Self::metrics), and changes nothing.
    pub async fn apply_remote(&self, change_set: ChangeSet) -> Result<usize, Error> {
        apply::apply_remote(&self.shared, change_set).await
    }

    /// This node's libp2p peer id (`None` without network).
    pub fn peer_id(&self) -> Option<PeerId> {
        self.engine.as_ref().map(|engine| engine.peer_id)
    }

    /// The addresses the engine listens on, to give to peers as bootstrap addresses.
    pub fn listening_addresses(&self) -> Vec<Multiaddr> {
        self.engine
            .as_ref()
            .map(|engine| engine.status().listening.clone())
            .unwrap_or_default()
    }

    /// The peers of this node's group it knows, connected or not: a peer counts once it
    /// has proven it belongs to the group (see `sync_status`).
    pub fn peers(&self) -> Vec<PeerInfo> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        engine.status().peer_infos(self.shared.node_id)
    }

    /// Where this node stands: its heads, and per peer what that peer has applied and how
    /// many of those transactions this node still lacks.
    pub async fn sync_status(&self) -> Result<SyncStatus, Error> {
        let heads = log::heads(&self.shared.conn).await?;
        let ours: std::collections::HashMap<NodeId, u64> = heads.iter().copied().collect();
        let mut peers = self.peers();
        for peer in &mut peers {
            peer.behind = crate::protocol::catchup::behind(&ours, &peer.heads, self.shared.node_id);
        }
        Ok(SyncStatus {
            node_id: self.shared.node_id,
            peer_id: self.peer_id(),
            listening: self.listening_addresses(),
            connected_peers: peers.iter().filter(|p| p.connected).count(),
            behind: peers.iter().map(|p| p.behind).max().unwrap_or(0),
            catch_up: crate::status::CatchUpProgress::sum(peers.iter().filter_map(|p| p.catch_up)),
            connection_failures: self
                .engine
                .as_ref()
                .map(|engine| engine.status().failures.iter().cloned().collect())
                .unwrap_or_default(),
            heads,
            peers,
        })
    }

    /// Connects to the peer at `address` now (see also [`WaveSyncDbBuilder::bootstrap`]).
    pub async fn dial(&self, address: Multiaddr) -> Result<(), Error> {
        match &self.engine {
            Some(engine) => engine.dial(address).await,
            None => Err(Error::NoNetwork {
                action: "dial peers",
            }),
        }
    }

    /// Publishes raw bytes on the group topic, signed by this node: for WaveSyncDB's own
    /// tests of hostile input. Not a stable API.
    #[doc(hidden)]
    pub async fn publish_raw(&self, bytes: Vec<u8>) -> Result<(), Error> {
        match &self.engine {
            Some(engine) => engine.publish_raw(bytes).await,
            None => Err(Error::NoNetwork { action: "publish" }),
        }
    }

    /// Stops the network engine and waits for it. The database stays usable; changes
    /// made afterwards stay in the log and reach peers after the next start. Dropping
    /// the last handle stops the engine too, without waiting.
    pub async fn shutdown(&self) {
        if let Some(engine) = &self.engine {
            engine.shutdown().await;
        }
    }

    /// Stops the network engine and closes the database's connections (the application's
    /// pool and the engine's own), for every clone of this handle: afterwards every
    /// statement on it fails. Use it before moving, copying or restoring the database
    /// file; dropping the handles closes the connections too, but without waiting.
    pub async fn close(self) -> Result<(), Error> {
        self.shutdown().await;
        self.shared.conn.close_by_ref().await?;
        self.shared.engine_conn.close_by_ref().await?;
        Ok(())
    }

    /// The sync counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The highest contiguous sequence number of `origin` applied here (for this node:
    /// its number of committed synced transactions).
    pub async fn head(&self, origin: NodeId) -> Result<u64, Error> {
        Ok(log::head(&self.shared.conn, origin).await?)
    }

    /// Checks that the synced tables and the sync log agree: every row has its versions,
    /// every live row of the log is in its table, and no log entry is numbered past this
    /// node's head. For operators and tests; it reads every synced row.
    pub async fn verify_log(&self) -> Result<crate::LogReport, Error> {
        let tables: Vec<_> = self.shared.registry().synced_tables().cloned().collect();
        Ok(log::verify(&self.shared.conn, &tables, self.shared.node_id).await?)
    }

    /// After `sql` passed through uncaptured and succeeded. If the registry changed since
    /// it was planned (a `sync()` registered tables meanwhile), it may have written a
    /// table that syncs now, uncaptured: the tables it now names are reconciled with the
    /// log (`migrate::reconcile`). If it may have created or dropped a trigger, they are
    /// read again. The statement itself succeeded, so failures here are logged: a retry
    /// of it would write twice.
    async fn after_pass_through(&self, generation: u64, sql: &str) {
        if self.shared.registry().generation() != generation {
            let tables = crate::migrate::tables_written(sql, &self.shared.registry());
            if !tables.is_empty()
                && let Err(err) = self
                    .autocommit(async |txn| txn.reconcile(&tables).await)
                    .await
            {
                tracing::error!(%err, "a write that raced with sync() could not be reconciled with the log; call sync() again");
            }
        }
        if crate::trigger_mode::may_change_triggers(sql) {
            crate::trigger_mode::refresh_after_commit(&self.shared).await;
        }
    }

    /// Whether `sql`, which writes no synced table itself, writes one through a trigger
    /// (see `trigger_mode`): it then runs in a transaction that notes what SQLite wrote.
    fn writes_trigger_source(&self, sql: &str) -> bool {
        crate::capture::writes_trigger_source(sql, DbBackend::Sqlite, &self.shared.registry())
    }

    async fn autocommit<T, F>(&self, run: F) -> Result<T, DbErr>
    where
        F: AsyncFnOnce(&WaveSyncTransaction) -> Result<T, DbErr>,
    {
        let txn = WaveSyncTransaction::begin_internal(&self.shared).await?;
        let out = run(&txn).await?;
        txn.commit().await?;
        Ok(out)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WaveSyncDb {
    fn get_database_backend(&self) -> DbBackend {
        self.shared.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let generation = self.shared.registry().generation();
        match self.shared.plan_statement(&stmt.sql)? {
            Some(capture) => Ok(autocommit_write(&self.shared, &capture, stmt.values, true)
                .await?
                .exec),
            None if self.writes_trigger_source(&stmt.sql) => {
                self.autocommit(async |txn| txn.execute_raw(stmt).await)
                    .await
            }
            None => {
                let sql = stmt.sql.clone();
                let result = self.shared.conn.execute_raw(stmt).await?;
                self.after_pass_through(generation, &sql).await;
                Ok(result)
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let generation = self.shared.registry().generation();
        match self.shared.plan_script(sql)? {
            Some(steps) => {
                self.autocommit(async |txn| txn.run_script(&steps).await)
                    .await
            }
            None if self.writes_trigger_source(sql) => {
                self.autocommit(async |txn| txn.execute_unprepared(sql).await)
                    .await
            }
            None => {
                let result = self.shared.conn.execute_unprepared(sql).await?;
                self.after_pass_through(generation, sql).await;
                Ok(result)
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let generation = self.shared.registry().generation();
        match self.shared.plan_statement(&stmt.sql)? {
            Some(capture) => Ok(autocommit_write(&self.shared, &capture, stmt.values, false)
                .await?
                .rows
                .into_iter()
                .next()),
            None if self.writes_trigger_source(&stmt.sql) => {
                self.autocommit(async |txn| txn.query_one_raw(stmt).await)
                    .await
            }
            None => {
                let sql = stmt.sql.clone();
                let row = self.shared.conn.query_one_raw(stmt).await?;
                self.after_pass_through(generation, &sql).await;
                Ok(row)
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let generation = self.shared.registry().generation();
        match self.shared.plan_statement(&stmt.sql)? {
            Some(capture) => Ok(autocommit_write(&self.shared, &capture, stmt.values, false)
                .await?
                .rows),
            None if self.writes_trigger_source(&stmt.sql) => {
                self.autocommit(async |txn| txn.query_all_raw(stmt).await)
                    .await
            }
            None => {
                let sql = stmt.sql.clone();
                let rows = self.shared.conn.query_all_raw(stmt).await?;
                self.after_pass_through(generation, &sql).await;
                Ok(rows)
            }
        }
    }
}

impl StreamTrait for WaveSyncDb {
    type Stream<'a> = ResultStream<'a>;

    fn get_database_backend(&self) -> DbBackend {
        ConnectionTrait::get_database_backend(&self.shared.conn)
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            match self.shared.plan_statement(&stmt.sql)? {
                Some(capture) => {
                    let rows = autocommit_write(&self.shared, &capture, stmt.values, false)
                        .await?
                        .rows;
                    Ok(Box::pin(futures::stream::iter(rows.into_iter().map(Ok)))
                        as ResultStream<'a>)
                }
                None if self.writes_trigger_source(&stmt.sql) => {
                    let rows = self
                        .autocommit(async |txn| txn.query_all_raw(stmt).await)
                        .await?;
                    Ok(Box::pin(futures::stream::iter(rows.into_iter().map(Ok)))
                        as ResultStream<'a>)
                }
                None => Ok(Box::pin(self.shared.conn.stream_raw(stmt).await?) as ResultStream<'a>),
            }
        })
    }
}

#[async_trait::async_trait]
impl TransactionTrait for WaveSyncDb {
    type Transaction = WaveSyncTransaction;

    async fn begin(&self) -> Result<WaveSyncTransaction, DbErr> {
        let txn = self.shared.conn.begin().await?;
        WaveSyncTransaction::outermost(txn, &self.shared).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<WaveSyncTransaction, DbErr> {
        let txn = self
            .shared
            .conn
            .begin_with_config(isolation_level, access_mode)
            .await?;
        WaveSyncTransaction::outermost(txn, &self.shared).await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<WaveSyncTransaction, DbErr> {
        let txn = self.shared.conn.begin_with_options(options).await?;
        WaveSyncTransaction::outermost(txn, &self.shared).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c WaveSyncTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin().await.map_err(TransactionError::Connection)?;
        run_transaction(txn, callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c WaveSyncTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        run_transaction(txn, callback).await
    }
}
