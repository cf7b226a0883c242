//! Applying a peer's change set: validate, merge, write, notify.
//!
//! Owns the inbound path. In one IMMEDIATE database transaction (so `SchemaBuilder::sync`
//! cannot change the schema between admission and write): every name and value is
//! admitted against the registry (`schema`), timestamps against the clock's drift bound;
//! one bad operation rejects the whole change set, which is counted and changes nothing.
//! Then the winning cell versions (`merge`) go to the log, each touched row is rewritten
//! from its versions, the origin's head advances if the set is the next one expected, and
//! the clock is persisted. Notifications follow the commit.
//!
//! Peers on different schema versions lose nothing and raise no error storm:
//! - an operation on a table this peer does not sync (unregistered or `register_local`)
//!   is skipped and counted (`unknown_table`); the rest of the set applies;
//! - a value for a column this synced table does not have (yet) is stored in the log as a
//!   cell version, takes part in last-writer-wins, and is not written to the table; the
//!   table's name goes to `migrate`'s pending list, and when `sync` adds the column the
//!   rows are rewritten from their versions.
//!
//! It must never build SQL from a name as received: only registered names are quoted in.
//! Unknown column names only ever reach the log as bound parameters.

use crate::clock::NodeId;
use crate::connection::{Shared, notifications};
use crate::error::{Error, RejectReason};
use crate::log::{self, LogEntry};
use crate::merge::{CellVersion, RowState, row_state, winners, written_cells};
use crate::migrate;
use crate::notify::ChangeSource;
use crate::protocol::{ChangeSet, SyncOperation};
use crate::schema::quote_ident;
use crate::schema::{ROW_EXISTS_COLUMN, TableMeta};
use crate::value::{CellValue, encode_key};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};

/// An operation whose names and values passed admission, spelled as registered here.
/// Its values may include columns this peer does not have yet, named in `unknown_columns`.
struct Admitted {
    meta: Arc<TableMeta>,
    op: SyncOperation,
    unknown_columns: Vec<String>,
}

/// The operations of a change set to apply, and how many were skipped because this peer
/// does not sync their table.
struct Admission {
    admitted: Vec<Admitted>,
    skipped: usize,
}

pub(crate) async fn apply_remote(shared: &Shared, change_set: ChangeSet) -> Result<usize, Error> {
    apply_remote_batch(shared, vec![change_set]).await
}

/// Applies several change sets in one database transaction (catch-up applies a page at a
/// time): one commit, one read of the versions of the rows they touch, one write per
/// table and shape of row instead of one per row. Every set is admitted before anything
/// is written; one set that must be rejected rejects the batch. Returns the rows changed.
pub(crate) async fn apply_remote_batch(
    shared: &Shared,
    change_sets: Vec<ChangeSet>,
) -> Result<usize, Error> {
    // Our own changes coming back (e.g. relayed by a peer): we have them already.
    let change_sets: Vec<ChangeSet> = change_sets
        .into_iter()
        .filter(|set| set.origin != shared.node_id)
        .collect();
    if change_sets.is_empty() {
        return Ok(0);
    }
    let txn = shared
        .conn
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    let mut sets = Vec::with_capacity(change_sets.len());
    for change_set in &change_sets {
        let Admission { admitted, skipped } = match admit_all(shared, change_set) {
            Ok(admission) => admission,
            Err(reason) => {
                shared.metrics.rejected(reason.code());
                tracing::warn!(origin = %change_set.origin, seq = change_set.seq, %reason, "rejected remote change set");
                return Err(reason.into());
            }
        };
        for _ in 0..skipped {
            shared.metrics.rejected("unknown_table");
        }
        // Values for columns this peer lacks are set aside in the log, not written:
        // counted like the skipped tables, so a peer that sends many shows up in the
        // metrics.
        for _ in admitted.iter().filter(|a| !a.unknown_columns.is_empty()) {
            shared.metrics.rejected("unknown_column");
        }
        sets.push(AdmittedSet {
            origin: change_set.origin,
            seq: change_set.seq,
            admitted,
        });
    }
    let positions: Vec<(NodeId, u64)> = sets.iter().map(|set| (set.origin, set.seq)).collect();
    let (changed, mut statements) = merge_and_write(&txn, sets).await?;
    // A head advances over the sets that follow it without a gap, in order.
    statements.extend(
        positions
            .into_iter()
            .map(|(origin, seq)| log::advance_head_statement(origin, seq)),
    );
    let clock_bound = shared.clock_bound_to_persist();
    if let Some(bound) = clock_bound {
        statements.push(log::save_clock_statement(bound));
    }
    // Every write of the batch in one round trip to SQLite.
    log::execute_all(&txn, statements).await?;
    txn.commit().await?;
    if let Some(bound) = clock_bound {
        shared.clock_bound_persisted(bound);
    }
    let mut rows = 0;
    let mut operations = Vec::new();
    for (change_set, changed) in change_sets.iter().zip(changed) {
        shared.metrics.remote_applied(changed.len());
        tracing::debug!(origin = %change_set.origin, seq = change_set.seq, rows = changed.len(), "applied remote change set");
        rows += changed.len();
        operations.extend(changed);
    }
    if !operations.is_empty() {
        let applied = ChangeSet {
            origin: change_sets[0].origin,
            seq: change_sets[0].seq,
            operations,
        };
        shared
            .bus
            .publish(notifications(&applied, ChangeSource::Remote));
    }
    Ok(rows)
}

/// The admitted operations of one change set.
struct AdmittedSet {
    origin: NodeId,
    seq: u64,
    admitted: Vec<Admitted>,
}

/// Admits every operation on a synced table and skips the others, or names the first
/// reason to reject the set.
fn admit_all(shared: &Shared, change_set: &ChangeSet) -> Result<Admission, RejectReason> {
    let registry = shared
        .registry
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let mut admitted = Vec::with_capacity(change_set.operations.len());
    let mut skipped = 0;
    for op in &change_set.operations {
        if op.hlc.node != change_set.origin {
            return Err(RejectReason::ForeignStamp);
        }
        match registry.synced(&op.table) {
            Some(meta) => admitted.push(admit(&meta, op)?),
            None => {
                tracing::debug!(table = %op.table, "skipping a remote change to a table this peer does not sync");
                skipped += 1;
            }
        }
    }
    drop(registry);
    // Skipped operations' timestamps are checked too: a clock too far ahead is refused
    // whatever table it stamps.
    shared.observe(change_set.operations.iter().map(|op| op.hlc))?;
    Ok(Admission { admitted, skipped })
}

fn admit(meta: &Arc<TableMeta>, op: &SyncOperation) -> Result<Admitted, RejectReason> {
    let missing_key = || RejectReason::MissingKey {
        table: meta.name.clone(),
        expected: meta.primary_key.clone(),
    };
    if op.primary_key.len() != meta.primary_key.len() {
        return Err(missing_key());
    }
    let mut primary_key = Vec::with_capacity(meta.primary_key.len());
    for key in &meta.primary_key {
        let (_, value) = op
            .primary_key
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .ok_or_else(missing_key)?;
        let (column, value) = meta.admit(key, value.clone())?;
        primary_key.push((column.name.clone(), value));
    }
    let mut values = Vec::with_capacity(op.values.len());
    let mut unknown_columns = Vec::new();
    if op.kind != crate::WriteKind::Delete {
        for (name, value) in &op.values {
            if meta.column(name).is_none() {
                // A column of a newer schema: kept (as received) until ours has it. The
                // name of the row-existence cell is never a column.
                if name == ROW_EXISTS_COLUMN {
                    return Err(RejectReason::UnknownColumn {
                        table: meta.name.clone(),
                        column: name.clone(),
                    });
                }
                unknown_columns.push(name.clone());
                values.push((name.clone(), value.clone()));
                continue;
            }
            let (column, value) = meta.admit(name, value.clone())?;
            if meta.is_key(&column.name) {
                return Err(missing_key());
            }
            values.push((column.name.clone(), value));
        }
    }
    Ok(Admitted {
        meta: Arc::clone(meta),
        op: SyncOperation {
            table: meta.name.clone(),
            kind: op.kind,
            hlc: op.hlc,
            primary_key,
            values,
        },
        unknown_columns,
    })
}

/// A row some operation won, to rewrite from its versions once all are merged.
struct TouchedRow {
    meta: Arc<TableMeta>,
    key: Vec<u8>,
    primary_key: Vec<(String, CellValue)>,
}

/// The statements to run for a batch, and what they are for.
type Writes = Vec<(String, Vec<sea_orm::Value>)>;

/// Merges the sets' operations against the log, in order; returns, per set, the
/// operations that changed something, and the statements that store the winning versions
/// and rewrite the rows they won (not run yet).
async fn merge_and_write(
    txn: &DatabaseTransaction,
    sets: Vec<AdmittedSet>,
) -> Result<(Vec<Vec<SyncOperation>>, Writes), DbErr> {
    // The versions of every row the sets touch, read up front in one statement per
    // table; later operations merge against earlier ones.
    let mut keys_by_table: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut rows: HashMap<(String, Vec<u8>), HashMap<String, CellVersion>> = HashMap::new();
    for set in &sets {
        for Admitted { meta, op, .. } in &set.admitted {
            let key = row_key(op);
            if rows
                .insert((meta.name.clone(), key.clone()), HashMap::new())
                .is_none()
            {
                keys_by_table
                    .entry(meta.name.clone())
                    .or_default()
                    .push(key);
            }
        }
    }
    for (table, keys) in &keys_by_table {
        for (key, held) in log::versions_of_rows(txn, table, keys).await? {
            rows.insert((table.clone(), key), held);
        }
    }
    let mut touched: Vec<TouchedRow> = Vec::new();
    let mut touched_keys: HashSet<(String, Vec<u8>)> = HashSet::new();
    let mut entries = Vec::new();
    let mut changed = Vec::with_capacity(sets.len());
    let mut pending: HashMap<String, Vec<String>> = HashMap::new();
    for AdmittedSet {
        origin,
        seq,
        admitted,
    } in sets
    {
        let mut changed_here = Vec::new();
        for Admitted {
            meta,
            op,
            unknown_columns,
        } in admitted
        {
            let key = row_key(&op);
            let held = rows.entry((meta.name.clone(), key.clone())).or_default();
            let won = winners(held, written_cells(&op));
            if won.is_empty() {
                continue;
            }
            for (column, version) in won {
                if unknown_columns.contains(&column) {
                    let waiting = pending.entry(meta.name.clone()).or_default();
                    if !waiting.contains(&column) {
                        waiting.push(column.clone());
                    }
                }
                entries.push(LogEntry {
                    table: meta.name.clone(),
                    key: key.clone(),
                    column: column.clone(),
                    version: version.clone(),
                    origin,
                    seq,
                });
                held.insert(column, version);
            }
            if touched_keys.insert((meta.name.clone(), key.clone())) {
                touched.push(TouchedRow {
                    meta: Arc::clone(&meta),
                    key,
                    primary_key: op.primary_key.clone(),
                });
            }
            changed_here.push(op);
        }
        changed.push(changed_here);
    }
    for (table, columns) in &pending {
        tracing::debug!(%table, ?columns, "keeping remote values for columns this peer lacks");
        migrate::record_pending(txn, table, columns).await?;
    }
    let mut statements = log::store_statements(&entries, None);
    let mut writes = RowWrites::default();
    for row in touched {
        let held = &rows[&(row.meta.name.clone(), row.key)];
        let state = row_state(&row.meta, held);
        writes.push(row.meta, row.primary_key, state);
    }
    statements.extend(writes.finish());
    Ok((changed, statements))
}

/// The log key of an operation's row.
fn row_key(op: &SyncOperation) -> Vec<u8> {
    let key_values: Vec<CellValue> = op.primary_key.iter().map(|(_, v)| v.clone()).collect();
    encode_key(&key_values)
}

/// What a batch of row writes does; rows of one batch share table and shape.
#[derive(PartialEq)]
enum Shape {
    Delete,
    /// Insert-or-replace of these value columns, in this order.
    Upsert(Vec<String>),
}

/// Consecutive row writes of the same table and shape, gathered into one statement
/// each: a catch-up page rewrites thousands of rows, and one statement per row would
/// cost a round trip to SQLite per row. Order across batches is kept.
#[derive(Default)]
struct RowWrites {
    batch: Option<(Arc<TableMeta>, Shape)>,
    /// Per row: its key values, then its value columns' values.
    rows: Vec<Vec<CellValue>>,
    params: usize,
    /// The statements made so far, in order.
    statements: Vec<(String, Vec<sea_orm::Value>)>,
}

impl RowWrites {
    fn push(
        &mut self,
        meta: Arc<TableMeta>,
        primary_key: Vec<(String, CellValue)>,
        state: RowState,
    ) {
        let (shape, values) = match state {
            RowState::Absent => (Shape::Delete, Vec::new()),
            RowState::Complete(values) => (
                Shape::Upsert(values.iter().map(|(name, _)| name.clone()).collect()),
                values,
            ),
            partial @ RowState::Partial(_) => {
                // Rare (a row whose insert is still on its way): written on its own.
                self.flush();
                if let Some(statement) = row_statement(&meta, &primary_key, partial) {
                    self.statements.push(split(statement));
                }
                return;
            }
        };
        let row: Vec<CellValue> = primary_key
            .into_iter()
            .chain(values)
            .map(|(_, value)| value)
            .collect();
        let same = self
            .batch
            .as_ref()
            .is_some_and(|(m, s)| m.name == meta.name && *s == shape);
        if !same || self.params + row.len() > log::MAX_PARAMS {
            self.flush();
            self.batch = Some((meta, shape));
        }
        self.params += row.len();
        self.rows.push(row);
    }

    /// Turns the gathered rows into a statement.
    fn flush(&mut self) {
        let rows = std::mem::take(&mut self.rows);
        self.params = 0;
        let Some((meta, shape)) = self.batch.take() else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        let table = quote_ident(&meta.name);
        let keys: Vec<String> = meta.primary_key.iter().map(|k| quote_ident(k)).collect();
        let tuple = |width: usize| format!("({})", vec!["?"; width].join(", "));
        let values = rows.iter().flatten().map(CellValue::to_sea_value);
        let statement = match &shape {
            Shape::Delete => format!(
                "DELETE FROM {table} WHERE ({}) IN (VALUES {})",
                keys.join(", "),
                vec![tuple(keys.len()); rows.len()].join(", ")
            ),
            Shape::Upsert(columns) => {
                let on_conflict = if columns.is_empty() {
                    "DO NOTHING".to_owned()
                } else {
                    let set = columns
                        .iter()
                        .map(|name| format!("{0} = excluded.{0}", quote_ident(name)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("DO UPDATE SET {set}")
                };
                let all_columns: Vec<String> = keys
                    .iter()
                    .cloned()
                    .chain(columns.iter().map(|c| quote_ident(c)))
                    .collect();
                format!(
                    "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) {on_conflict}",
                    all_columns.join(", "),
                    vec![tuple(all_columns.len()); rows.len()].join(", "),
                    keys.join(", ")
                )
            }
        };
        self.statements.push((statement, values.collect()));
    }

    /// Every statement, in order.
    fn finish(mut self) -> Vec<(String, Vec<sea_orm::Value>)> {
        self.flush();
        self.statements
    }
}

fn split(statement: Statement) -> (String, Vec<sea_orm::Value>) {
    (
        statement.sql,
        statement.values.map(|values| values.0).unwrap_or_default(),
    )
}

/// Makes the user table's row match its state.
pub(crate) async fn write_row(
    txn: &impl ConnectionTrait,
    meta: &TableMeta,
    primary_key: &[(String, CellValue)],
    state: RowState,
) -> Result<(), DbErr> {
    match row_statement(meta, primary_key, state) {
        Some(statement) => txn.execute_raw(statement).await.map(drop),
        None => Ok(()),
    }
}

/// The statement that makes the user table's row match its state (`None`: nothing to do).
fn row_statement(
    meta: &TableMeta,
    primary_key: &[(String, CellValue)],
    state: RowState,
) -> Option<Statement> {
    let table = quote_ident(&meta.name);
    let key_match = primary_key
        .iter()
        .map(|(name, _)| format!("{} = ?", quote_ident(name)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let key_values = primary_key.iter().map(|(_, v)| v.to_sea_value());
    let statement = match state {
        RowState::Absent => Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("DELETE FROM {table} WHERE {key_match}"),
            key_values,
        ),
        RowState::Partial(values) if values.is_empty() => return None,
        RowState::Partial(values) => {
            let set = values
                .iter()
                .map(|(name, _)| format!("{} = ?", quote_ident(name)))
                .collect::<Vec<_>>()
                .join(", ");
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("UPDATE {table} SET {set} WHERE {key_match}"),
                values
                    .iter()
                    .map(|(_, v)| v.to_sea_value())
                    .chain(key_values),
            )
        }
        RowState::Complete(values) => {
            let columns: Vec<String> = primary_key
                .iter()
                .chain(&values)
                .map(|(name, _)| quote_ident(name))
                .collect();
            let keys: Vec<String> = primary_key
                .iter()
                .map(|(name, _)| quote_ident(name))
                .collect();
            let placeholders = vec!["?"; columns.len()].join(", ");
            let on_conflict = if values.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                let set = values
                    .iter()
                    .map(|(name, _)| format!("{0} = excluded.{0}", quote_ident(name)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("DO UPDATE SET {set}")
            };
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!(
                    "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT ({}) {on_conflict}",
                    columns.join(", "),
                    keys.join(", ")
                ),
                key_values.chain(values.iter().map(|(_, v)| v.to_sea_value())),
            )
        }
    };
    Some(statement)
}
