//! A synced transaction: the user's writes, their clock ticks and their log entries commit
//! together, or not at all.
//!
//! Owns [`WaveSyncTransaction`]. Every write to a synced table runs inside one (an
//! autocommit write gets an internal one), with the capture's `RETURNING` rows turned into
//! [`SyncOperation`]s and buffered. Commit writes the buffered operations to the log, takes
//! the transaction's sequence number and, when the clock has passed its persisted bound,
//! a new bound, all in the same database transaction (and in one round trip to SQLite);
//! commits, and only then hands the one [`ChangeSet`] to the engine channel and
//! the notifications to the bus. A rollback, or a drop without commit, discards the buffer
//! with the database changes, so nothing that did not commit is ever sent.
//!
//! Nested transactions are savepoints with their own buffer, merged into the parent's on
//! commit and discarded on rollback.

mod write;

use crate::commit::{Notes, commit_outermost};
use crate::protocol::SyncOperation;
use crate::replica::Shared;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, IsolationLevel,
    QueryResult, Statement, StreamTrait, TransactionError, TransactionOptions, TransactionSession,
    TransactionTrait,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

/// What a transaction captured so far.
#[derive(Default)]
pub(crate) struct Captured {
    operations: Vec<SyncOperation>,
    /// A write that executed but cannot be synced (a value over the cell limit): the
    /// transaction must not commit, whatever the caller does with the error.
    refused: Option<crate::Error>,
    /// A statement that may have created or dropped a trigger ran: read them again after
    /// the commit (see `trigger_mode`).
    triggers_changed: bool,
    /// Synced tables a statement that passed through may have written uncaptured, because
    /// a `sync()` registered them meanwhile: reconciled with the log at commit.
    raced: Vec<Arc<crate::schema::TableMeta>>,
    /// A write installed touch triggers for this transaction only (a delete whose
    /// cascades go deeper than the planner follows): read the notes and remove them at
    /// commit. Rolled back with a savepoint, like the triggers themselves.
    notes_for_once: bool,
}

pub(crate) type Buffer = Arc<Mutex<Captured>>;

/// A boxed stream of query results, the stream type of [`StreamTrait`] on our types.
pub type ResultStream<'a> =
    Pin<Box<dyn futures::Stream<Item = Result<QueryResult, DbErr>> + Send + 'a>>;

/// A database transaction whose writes to synced tables are captured and replicated when
/// it commits. Obtained from [`TransactionTrait::begin`] or
/// [`TransactionTrait::transaction`] on a [`crate::WaveSyncDb`]; use it like SeaORM's
/// `DatabaseTransaction`.
pub struct WaveSyncTransaction {
    txn: DatabaseTransaction,
    shared: Arc<Shared>,
    buffer: Buffer,
    /// The enclosing transaction's buffer, for a savepoint.
    parent: Option<Buffer>,
    /// Whether SQLite notes the rows this transaction changes (`trigger_mode`): then they
    /// are read at commit.
    notes: bool,
    /// The registry's generation when the transaction began: a statement that passed
    /// through after it changed may have written a table that syncs now.
    generation: u64,
}

impl std::fmt::Debug for WaveSyncTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaveSyncTransaction")
            .field("nested", &self.parent.is_some())
            .finish_non_exhaustive()
    }
}

impl WaveSyncTransaction {
    pub(crate) fn new(
        txn: DatabaseTransaction,
        shared: Arc<Shared>,
        parent: Option<Buffer>,
    ) -> Self {
        let generation = shared_generation(&shared);
        WaveSyncTransaction {
            txn,
            shared,
            buffer: Arc::default(),
            parent,
            notes: false,
            generation,
        }
    }

    /// An outermost transaction on `txn`, ready to note what SQLite changes while some
    /// trigger writes a synced table (see `trigger_mode`).
    pub(crate) async fn outermost(
        txn: DatabaseTransaction,
        shared: &Arc<Shared>,
    ) -> Result<Self, DbErr> {
        let notes = crate::trigger_mode::install(shared, &txn).await?;
        let mut txn = WaveSyncTransaction::new(txn, Arc::clone(shared), None);
        txn.notes = notes;
        Ok(txn)
    }

    /// Begins the internal transaction of an autocommit write: `IMMEDIATE`, so it takes
    /// the write lock at once instead of failing to upgrade later.
    pub(crate) async fn begin_internal(shared: &Arc<Shared>) -> Result<Self, DbErr> {
        let txn = crate::sql::begin_immediate(&shared.conn).await?;
        WaveSyncTransaction::outermost(txn, shared).await
    }

    fn wrap(&self, txn: DatabaseTransaction) -> WaveSyncTransaction {
        WaveSyncTransaction::new(
            txn,
            Arc::clone(&self.shared),
            Some(Arc::clone(&self.buffer)),
        )
    }

    /// Commits the transaction; for the outermost one, its captured writes are logged in
    /// the same database transaction and sent to peers after the commit.
    ///
    /// A transaction in which a write to a synced table failed after it executed (a value
    /// over [`crate::MAX_CELL_BYTES`]) does not commit: it rolls back and returns that
    /// error again.
    pub async fn commit(self) -> Result<(), DbErr> {
        let Captured {
            mut operations,
            refused,
            triggers_changed,
            notes_for_once,
            raced,
        } = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(err) = refused {
            if let Some(parent) = &self.parent {
                // The savepoint's writes are still in the enclosing transaction.
                parent
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .refused
                    .get_or_insert(err);
                return Err(crate::Error::SavepointNotSyncable.into());
            }
            self.txn.rollback().await?;
            return Err(err.into());
        }
        match self.parent {
            Some(parent) => {
                self.txn.commit().await?;
                let mut parent = parent.lock().unwrap_or_else(PoisonError::into_inner);
                parent.operations.extend(operations);
                parent.triggers_changed |= triggers_changed;
                parent.notes_for_once |= notes_for_once;
                parent.raced.extend(raced);
                Ok(())
            }
            None => {
                if !raced.is_empty() {
                    // Under the write lock: the raced statements wrote.
                    let now = self.shared.tick();
                    for table in &raced {
                        operations.extend(crate::migrate::reconcile(&self.txn, table, now).await?);
                    }
                }
                let notes = if self.notes {
                    Notes::Kept
                } else if notes_for_once {
                    Notes::ForOnce
                } else {
                    Notes::None
                };
                commit_outermost(self.txn, &self.shared, operations, notes).await?;
                if triggers_changed {
                    crate::trigger_mode::refresh_after_commit(&self.shared).await;
                }
                Ok(())
            }
        }
    }

    /// Rolls the transaction back; nothing it wrote is kept or sent.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }

    async fn run<F, T, E>(self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c WaveSyncTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let result = callback(&self).await.map_err(TransactionError::Transaction);
        if result.is_ok() {
            self.commit().await.map_err(TransactionError::Connection)?;
        } else {
            self.rollback()
                .await
                .map_err(TransactionError::Connection)?;
        }
        result
    }
}

fn shared_generation(shared: &Shared) -> u64 {
    shared.registry().generation()
}

#[async_trait::async_trait]
impl ConnectionTrait for WaveSyncTransaction {
    fn get_database_backend(&self) -> DbBackend {
        ConnectionTrait::get_database_backend(&self.txn)
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.plan(&stmt.sql)? {
            Some(capture) => self.captured_execute(&capture, stmt.values).await,
            None => {
                let sql = stmt.sql.clone();
                let result = self.txn.execute_raw(stmt).await?;
                self.after_pass_through(&sql).await?;
                Ok(result)
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self.shared.plan_script(sql)? {
            Some(steps) => self.run_script(&steps).await,
            None => {
                let result = self.txn.execute_unprepared(sql).await?;
                self.after_pass_through(sql).await?;
                Ok(result)
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.plan(&stmt.sql)? {
            // Every row of a write must be read to be captured, even if one is wanted.
            Some(capture) => Ok(self
                .captured_query(&capture, stmt.values)
                .await?
                .into_iter()
                .next()),
            None => {
                let sql = stmt.sql.clone();
                let row = self.txn.query_one_raw(stmt).await?;
                self.after_pass_through(&sql).await?;
                Ok(row)
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.plan(&stmt.sql)? {
            Some(capture) => self.captured_query(&capture, stmt.values).await,
            None => {
                let sql = stmt.sql.clone();
                let rows = self.txn.query_all_raw(stmt).await?;
                self.after_pass_through(&sql).await?;
                Ok(rows)
            }
        }
    }
}

impl StreamTrait for WaveSyncTransaction {
    type Stream<'a> = ResultStream<'a>;

    fn get_database_backend(&self) -> DbBackend {
        ConnectionTrait::get_database_backend(&self.txn)
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            match self.plan(&stmt.sql)? {
                Some(capture) => {
                    let rows = self.captured_query(&capture, stmt.values).await?;
                    Ok(Box::pin(futures::stream::iter(rows.into_iter().map(Ok)))
                        as ResultStream<'a>)
                }
                None => Ok(Box::pin(self.txn.stream_raw(stmt).await?) as ResultStream<'a>),
            }
        })
    }
}

#[async_trait::async_trait]
impl TransactionSession for WaveSyncTransaction {
    async fn commit(self) -> Result<(), DbErr> {
        WaveSyncTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), DbErr> {
        WaveSyncTransaction::rollback(self).await
    }
}

#[async_trait::async_trait]
impl TransactionTrait for WaveSyncTransaction {
    type Transaction = WaveSyncTransaction;

    async fn begin(&self) -> Result<WaveSyncTransaction, DbErr> {
        Ok(self.wrap(self.txn.begin().await?))
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<WaveSyncTransaction, DbErr> {
        Ok(self.wrap(
            self.txn
                .begin_with_config(isolation_level, access_mode)
                .await?,
        ))
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<WaveSyncTransaction, DbErr> {
        Ok(self.wrap(self.txn.begin_with_options(options).await?))
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
        txn.run(callback).await
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
        txn.run(callback).await
    }
}

/// Runs `callback` in `txn`, committing on `Ok` and rolling back on `Err`.
pub(crate) async fn run_transaction<F, T, E>(
    txn: WaveSyncTransaction,
    callback: F,
) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(
            &'c WaveSyncTransaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    txn.run(callback).await
}
