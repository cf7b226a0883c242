//! A captured write inside a [`WaveSyncTransaction`]: the statement runs, its
//! `RETURNING` rows (or a read-back) become [`SyncOperation`]s in the transaction's
//! buffer, stamped while the write holds SQLite's write lock; statements that pass
//! through are watched for a registry change or a trigger change.
//!
//! Owns the row counter that gives a captured write the `ExecResult` SeaORM expects. It
//! never commits and never talks to the engine.

use super::{WaveSyncTransaction, shared_generation};
use crate::capture::rows::{
    Cells, locate_cells, operations_from_rows, read_back_positions, visible_rows,
};
use crate::capture::{Capture, Step};
use sea_orm::sea_query::Values;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement};
use std::sync::{Arc, PoisonError};

impl WaveSyncTransaction {
    /// After `sql` passed through: if the registry changed since the transaction began,
    /// the synced tables it now names are reconciled with the log at commit (it may have
    /// written one of them uncaptured). If it may have created or dropped a trigger, the
    /// triggers are read again after the commit, and if one now writes a synced table,
    /// this transaction's later writes are noted already (see `trigger_mode`).
    pub(super) async fn after_pass_through(&self, sql: &str) -> Result<(), DbErr> {
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

    pub(super) fn plan(&self, sql: &str) -> Result<Option<Capture>, DbErr> {
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
    pub(super) async fn captured_query_after(
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
                buffer.refused.get_or_insert(crate::Error::NotCaptured {
                    reason: err.to_string(),
                });
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
    pub(super) async fn exec_result(&self, rows_affected: u64) -> Result<ExecResult, DbErr> {
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
