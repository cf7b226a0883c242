//! The autocommit fast path: one captured write outside any transaction, with its
//! bookkeeping, in two round trips to SQLite.
//!
//! Owns [`autocommit_write`]. Same guarantees as a [`crate::WaveSyncTransaction`]: the
//! write and its log entries commit together or not at all, a cancelled write leaves no
//! trace (its connection is closed, so SQLite rolls it back), and only a committed change
//! is handed on. It holds no pooled connection and no lock while handing the change set
//! on, and never waits for the engine.

use crate::capture::Capture;
use crate::capture::rows::{
    Cells, locate_cells, operations_from_rows, read_back_positions, visible_rows,
};
use crate::clock::Hlc;
use crate::commit::after_commit;
use crate::log;
use crate::protocol::SyncOperation;
use crate::replica::Shared;
use crate::transaction::WaveSyncTransaction;
use sea_orm::sea_query::Values;
use sea_orm::{DbErr, ExecResult, QueryResult, RuntimeErr};
use sea_query_sqlx::SqlxValues;
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use std::sync::Arc;

/// What a write outside any transaction returns: its `RETURNING` rows and its `execute`
/// result.
pub(crate) struct AutocommitWrite {
    pub rows: Vec<QueryResult>,
    pub exec: ExecResult,
}

/// A pooled connection holding the transaction of one autocommit write. If the write's
/// future is dropped between `BEGIN` and `COMMIT` (cancelled), the connection is closed
/// instead of going back to the pool, and SQLite rolls the transaction back with it.
struct WriteConnection {
    conn: PoolConnection<Sqlite>,
    in_transaction: bool,
}

impl Drop for WriteConnection {
    fn drop(&mut self) {
        if self.in_transaction {
            self.conn.close_on_drop();
        }
    }
}

impl WriteConnection {
    /// Runs `sql` with `values`; returns its rows and the last statement's result.
    async fn run(
        &mut self,
        sql: &str,
        values: sea_orm::sea_query::Values,
    ) -> Result<(Vec<QueryResult>, Option<sqlx::sqlite::SqliteQueryResult>), sqlx::Error> {
        use futures::TryStreamExt;
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(values));
        let mut stream = sqlx::Executor::fetch_many(&mut *self.conn, query);
        let mut rows = Vec::new();
        let mut last = None;
        while let Some(item) = stream.try_next().await? {
            match item {
                sqlx::Either::Left(result) => last = Some(result),
                sqlx::Either::Right(row) => rows.push(QueryResult::from(row)),
            }
        }
        Ok((rows, last))
    }

    /// What a captured write that returned `rows` wrote, stamped `hlc`: read from its rows,
    /// or read back by key on this connection (see [`Cells`]).
    async fn captured_operations(
        &mut self,
        capture: &Capture,
        hlc: Hlc,
        rows: &[QueryResult],
    ) -> Result<Vec<SyncOperation>, DbErr> {
        match locate_cells(capture, rows)? {
            Cells::InRows(positions) => operations_from_rows(capture, hlc, rows, &positions),
            Cells::ReadBack(queries) => {
                let mut read = Vec::new();
                for (sql, values) in queries {
                    let (rows, _) = self
                        .run(&sql, values)
                        .await
                        .map_err(|err| DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))))?;
                    read.extend(rows);
                }
                operations_from_rows(capture, hlc, &read, &read_back_positions(capture))
            }
        }
    }

    /// Ends the transaction after a failure; a connection that cannot roll back is
    /// closed rather than reused.
    async fn roll_back(&mut self) {
        if let Err(err) = self.run("ROLLBACK", Values(Vec::new())).await {
            tracing::debug!(%err, "rollback after a failed write");
            return;
        }
        self.in_transaction = false;
    }
}

/// Runs one captured write outside any transaction, with its bookkeeping, in two round
/// trips to SQLite instead of the four a SeaORM transaction takes (`BEGIN`, write,
/// bookkeeping, `COMMIT`): `BEGIN IMMEDIATE` goes with the write, `COMMIT` with the
/// bookkeeping. Same guarantees as [`WaveSyncTransaction`]: the write and its log
/// entries commit together or not at all, and only a committed change is published.
///
/// `as_execute` says whether the caller is `execute` (errors are `DbErr::Exec`, as
/// SeaORM's) or a query (`DbErr::Query`).
pub(crate) async fn autocommit_write(
    shared: &Arc<Shared>,
    capture: &Capture,
    values: Option<Values>,
    as_execute: bool,
) -> Result<AutocommitWrite, DbErr> {
    // Held until the write committed or failed (see `Shared::write_gate`).
    let _gate = shared.write_gate.lock().await;
    if !capture.cascades.is_empty()
        || shared.registry().trigger_plan().capture
        || shared
            .touch_triggers_ever
            .load(std::sync::atomic::Ordering::Acquire)
    {
        // A delete whose foreign keys' actions write other rows: those are read before
        // and after it, in a transaction of its own (rare enough to take the slow path).
        // Likewise once some trigger wrote a synced table: SQLite notes what the write
        // changed, and the notes are read at commit (or the noting is removed from a
        // connection, see `trigger_mode`).
        let txn = WaveSyncTransaction::begin_internal(shared).await?;
        let (rows, exec) = txn.captured_write(capture, values).await?;
        txn.commit().await?;
        return Ok(AutocommitWrite { rows, exec });
    }
    let failed = |err: sqlx::Error| {
        let err = RuntimeErr::SqlxError(Arc::new(err));
        if as_execute {
            DbErr::Exec(err)
        } else {
            DbErr::Query(err)
        }
    };
    let conn = shared
        .conn
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .map_err(|err| match err {
            sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
            sqlx::Error::PoolClosed => {
                DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed)
            }
            err => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))),
        })?;
    let mut conn = WriteConnection {
        conn,
        in_transaction: true,
    };
    let sql = format!("BEGIN IMMEDIATE;\n{}", capture.sql);
    let (rows, result) = match conn.run(&sql, values.unwrap_or(Values(Vec::new()))).await {
        Ok(done) => done,
        Err(err) => {
            conn.roll_back().await;
            return Err(failed(err));
        }
    };
    let exec = ExecResult::from(result.unwrap_or_default());
    // Stamped under the write lock `BEGIN IMMEDIATE` took (see `captured_query_after`).
    let hlc = shared.tick();
    let operations = match conn.captured_operations(capture, hlc, &rows).await {
        Ok(operations) => operations,
        Err(err) => {
            conn.roll_back().await;
            return Err(err);
        }
    };
    if operations.is_empty() {
        // Nothing written: nothing to log or send.
        if let Err(err) = conn.run("COMMIT", Values(Vec::new())).await {
            conn.roll_back().await;
            return Err(failed(err));
        }
        conn.in_transaction = false;
        return Ok(AutocommitWrite {
            rows: visible_rows(capture, rows),
            exec,
        });
    }
    // Held from taking the sequence number until the change set is handed on, so change
    // sets reach the engine in sequence order.
    let _in_order = shared.commit_order.lock().await;
    let origin = shared.node_id;
    let entries = log::local_entries(origin, &operations);
    let clock_bound = shared.clock_bound_to_persist();
    let confirmed = shared.outbox.numbering_confirmed();
    let (mut sql, values) = log::local_commit_statements(origin, &entries, clock_bound, confirmed);
    sql.push_str(";\nCOMMIT");
    let seq = match conn.run(&sql, Values(values)).await {
        Ok((bookkeeping, _)) => bookkeeping.first().map(log::local_seq),
        Err(err) => {
            conn.roll_back().await;
            return Err(failed(err));
        }
    };
    conn.in_transaction = false;
    // Back to the pool before the hand-off: nothing after the commit holds a connection.
    drop(conn);
    let seq =
        seq.ok_or_else(|| crate::log::corrupt("no sequence number for a local transaction"))??;
    after_commit(shared, clock_bound, seq, operations).await;
    Ok(AutocommitWrite {
        rows: visible_rows(capture, rows),
        exec,
    })
}
