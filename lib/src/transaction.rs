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

use crate::capture::rows::{
    Cells, locate_cells, operations_from_rows, read_back_positions, visible_rows,
};
use crate::capture::{Capture, Step};
use crate::clock::Hlc;
use crate::log;
use crate::protocol::{ChangeSet, SyncOperation};
use crate::replica::Shared;
use sea_orm::sea_query::Values;
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
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = shared.conn.begin_with_options(options).await?;
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
                return Err(DbErr::Custom(
                    "a write of this savepoint cannot be synced; roll it back".into(),
                ));
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

    /// After `sql` passed through: if the registry changed since the transaction began,
    /// the synced tables it now names are reconciled with the log at commit (it may have
    /// written one of them uncaptured). If it may have created or dropped a trigger, the
    /// triggers are read again after the commit, and if one now writes a synced table,
    /// this transaction's later writes are noted already (see `trigger_mode`).
    async fn after_pass_through(&self, sql: &str) -> Result<(), DbErr> {
        if shared_generation(&self.shared) != self.generation {
            let tables = crate::migrate::tables_written(sql, &self.shared.registry());
            if !tables.is_empty() {
                let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
                for table in tables {
                    if !buffer.raced.iter().any(|t| t.name == table.name) {
                        buffer.raced.push(table);
                    }
                }
            }
        }
        if !crate::trigger_mode::may_change_triggers(sql) {
            return Ok(());
        }
        let noted = {
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.triggers_changed = true;
            buffer.notes_for_once
        };
        if !self.notes
            && !noted
            && crate::trigger_mode::captures_in(&self.shared, &self.txn).await?
        {
            crate::trigger_mode::install_for_transaction(&self.shared, &self.txn).await?;
            self.buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .notes_for_once = true;
        }
        Ok(())
    }

    /// Logs what `tables` hold and the log does not (see `migrate::reconcile`), as this
    /// transaction's writes.
    pub(crate) async fn reconcile(
        &self,
        tables: &[Arc<crate::schema::TableMeta>],
    ) -> Result<(), DbErr> {
        let now = self.shared.tick();
        let mut operations = Vec::new();
        for table in tables {
            operations.extend(crate::migrate::reconcile(&self.txn, table, now).await?);
        }
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .operations
            .extend(operations);
        Ok(())
    }

    fn plan(&self, sql: &str) -> Result<Option<Capture>, DbErr> {
        self.shared.plan_statement(sql)
    }

    /// Runs a captured write and buffers what it wrote; returns the rows the caller asked
    /// for (see [`visible_rows`]).
    pub(crate) async fn captured_query(
        &self,
        capture: &Capture,
        values: Option<Values>,
    ) -> Result<Vec<QueryResult>, DbErr> {
        let rows = self.captured_query_after(None, capture, values).await?;
        Ok(visible_rows(capture, rows))
    }

    /// Runs a captured write, running `setup` (statements without parameters) first in the
    /// same round trip to SQLite, and buffers what it wrote; returns every row the write
    /// returned, one per row written.
    async fn captured_query_after(
        &self,
        setup: Option<&str>,
        capture: &Capture,
        values: Option<Values>,
    ) -> Result<Vec<QueryResult>, DbErr> {
        let sql = match setup {
            Some(setup) => format!("{setup};\n{}", capture.sql),
            None => capture.sql.clone(),
        };
        if capture.needs_notes && !self.notes {
            // Before the children are read: `children_before` and the notes then agree.
            crate::trigger_mode::install_for_transaction(&self.shared, &self.txn).await?;
            self.buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .notes_for_once = true;
        }
        let children = crate::effects::children_before(&self.txn, capture, &values).await?;
        let statement = Statement {
            sql,
            values,
            db_backend: DbBackend::Sqlite,
        };
        let rows = self.txn.query_all_raw(statement).await?;
        // Stamped now that the write holds SQLite's write lock (until this transaction
        // ends): no remote change or other local write can commit between the stamp and
        // this transaction, so a cell's version here only ever grows.
        let hlc = self.shared.tick();
        let captured = async {
            let mut operations = match locate_cells(capture, &rows)? {
                Cells::InRows(positions) => operations_from_rows(capture, hlc, &rows, &positions)?,
                Cells::ReadBack(queries) => {
                    let mut read = Vec::new();
                    for (sql, values) in queries {
                        read.extend(
                            self.txn
                                .query_all_raw(Statement {
                                    sql,
                                    values: Some(values),
                                    db_backend: DbBackend::Sqlite,
                                })
                                .await?,
                        );
                    }
                    operations_from_rows(capture, hlc, &read, &read_back_positions(capture))?
                }
            };
            operations
                .extend(crate::effects::children_after(&self.txn, capture, children, hlc).await?);
            Ok::<_, DbErr>(operations)
        }
        .await;
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        match captured {
            Ok(operations) => buffer.operations.extend(operations),
            Err(err) => {
                // The write is in this transaction but not in its buffer: it must not
                // commit.
                buffer
                    .refused
                    .get_or_insert(crate::Error::Db(DbErr::Custom(err.to_string())));
                return Err(err);
            }
        }
        Ok(rows)
    }

    /// Runs a captured write and returns both its rows and its `execute` result.
    pub(crate) async fn captured_write(
        &self,
        capture: &Capture,
        values: Option<Values>,
    ) -> Result<(Vec<QueryResult>, ExecResult), DbErr> {
        let rows = self
            .captured_query_after(Some(ROW_COUNTER_SETUP), capture, values)
            .await?;
        let exec = self.exec_result(rows.len() as u64).await?;
        Ok((visible_rows(capture, rows), exec))
    }

    /// Runs a captured write for `execute`: the result counts the rows it wrote.
    pub(crate) async fn captured_execute(
        &self,
        capture: &Capture,
        values: Option<Values>,
    ) -> Result<ExecResult, DbErr> {
        let rows = self
            .captured_query_after(Some(ROW_COUNTER_SETUP), capture, values)
            .await
            .map_err(|err| match err {
                // `execute` reports SeaORM's execution error, as on a plain transaction.
                DbErr::Query(err) => DbErr::Exec(err),
                other => other,
            })?;
        self.exec_result(rows.len() as u64).await
    }

    /// Runs a script whose steps include captured writes.
    pub(crate) async fn run_script(&self, steps: &[Step]) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(ROW_COUNTER_SETUP).await?;
        let mut rows_affected = 0;
        for step in steps {
            rows_affected += match step {
                Step::PassThrough { sql, writes_rows } => {
                    let result = self.txn.execute_unprepared(sql).await?;
                    self.after_pass_through(sql).await?;
                    if *writes_rows {
                        result.rows_affected()
                    } else {
                        0
                    }
                }
                Step::Capture(capture) => {
                    self.captured_query_after(None, capture, None).await?.len() as u64
                }
            };
        }
        self.exec_result(rows_affected).await
    }

    /// The result of `execute` for a captured write of `rows_affected` rows, made by
    /// SQLite itself (see [`ROW_COUNTER_SETUP`]).
    async fn exec_result(&self, rows_affected: u64) -> Result<ExecResult, DbErr> {
        let wanted = sea_orm::Value::BigInt(Some(i64::try_from(rows_affected).unwrap_or(i64::MAX)));
        if rows_affected > ROW_COUNTER_PREFILLED {
            self.txn
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "WITH RECURSIVE more(n) AS ( \
                         SELECT coalesce(max(n), 0) + 1 FROM temp._wavesync_row_counter \
                         UNION ALL SELECT n + 1 FROM more WHERE n < ?) \
                     INSERT INTO temp._wavesync_row_counter (n) SELECT n FROM more WHERE n <= ?",
                    [wanted.clone(), wanted.clone()],
                ))
                .await?;
        }
        self.txn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE temp._wavesync_row_counter SET n = n WHERE n <= ?",
                [wanted],
            ))
            .await
    }
}

/// Rows [`ROW_COUNTER_SETUP`] makes sure the counter table has (the 64 written there).
const ROW_COUNTER_PREFILLED: u64 = 64;

// SeaORM cannot build an `ExecResult` by hand for SQLite (its `proxy` feature does not
// compile with sqlx-sqlite in 2.0), and a captured write runs as a query so that its
// RETURNING rows can be read. So SQLite itself makes the result: an UPDATE of exactly
// `rows_affected` rows of a per-connection temp table. This setup runs in the same round
// trip as the write, before it: writes to a WITHOUT ROWID table leave
// `last_insert_rowid()` alone, so the result also carries the captured write's last
// insert id, as `execute` would have. Most writes touch few rows, so the table is filled
// up front and the result costs one more statement.
const ROW_COUNTER_SETUP: &str = "CREATE TEMP TABLE IF NOT EXISTS _wavesync_row_counter \
     (n INTEGER PRIMARY KEY NOT NULL) WITHOUT ROWID;\n\
     INSERT OR IGNORE INTO temp._wavesync_row_counter (n) \
     WITH RECURSIVE more(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM more WHERE n < 64) \
     SELECT n FROM more WHERE NOT EXISTS (SELECT 1 FROM temp._wavesync_row_counter WHERE n = 64)";

/// After a local commit: records the persisted clock bound and hands the change set on.
pub(crate) async fn after_commit(
    shared: &Shared,
    clock_bound: Option<Hlc>,
    seq: u64,
    operations: Vec<SyncOperation>,
) {
    if let Some(bound) = clock_bound {
        shared.clock_bound_persisted(bound);
    }
    tracing::debug!(
        seq,
        operations = operations.len(),
        "committed synced transaction"
    );
    shared
        .publish_local(ChangeSet {
            origin: shared.node_id,
            seq,
            operations,
        })
        .await;
}

fn shared_generation(shared: &Shared) -> u64 {
    shared.registry().generation()
}

/// Whether SQLite noted what a transaction changed (see `trigger_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notes {
    /// No touch triggers.
    None,
    /// The connection keeps its touch triggers (some trigger writes a synced table).
    Kept,
    /// Installed for this transaction only: removed before it commits.
    ForOnce,
}

/// Logs `operations` in `txn`, with what SQLite noted (`notes`, see `trigger_mode`),
/// commits, and publishes the change set.
pub(crate) async fn commit_outermost(
    txn: DatabaseTransaction,
    shared: &Shared,
    mut operations: Vec<SyncOperation>,
    notes: Notes,
) -> Result<(), DbErr> {
    if notes != Notes::None {
        // Under SQLite's write lock if anything was noted: the notes are writes.
        crate::trigger_mode::collect(shared, &txn, &mut operations).await?;
    }
    if notes == Notes::ForOnce {
        crate::trigger_mode::remove(&txn).await?;
    }
    if operations.is_empty() {
        return txn.commit().await;
    }
    // Held from taking the sequence number until the change set is handed on, so change
    // sets reach the engine in sequence order.
    let _in_order = shared.commit_order.lock().await;
    let origin = shared.node_id;
    let entries = log::local_entries(origin, &operations);
    let clock_bound = shared.clock_bound_to_persist();
    let confirmed = shared.outbox.numbering_confirmed();
    let seq = log::record_local_commit(&txn, origin, &entries, clock_bound, confirmed).await?;
    txn.commit().await?;
    after_commit(shared, clock_bound, seq, operations).await;
    Ok(())
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
