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
    if change_set.origin == shared.node_id {
        // Our own change coming back (e.g. relayed by a peer): we have it already.
        return Ok(0);
    }
    let txn = shared
        .conn
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    let Admission { admitted, skipped } = match admit_all(shared, &change_set) {
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
    // Values for columns this peer lacks are set aside in the log, not written: counted
    // like the skipped tables, so a peer that sends many shows up in the metrics.
    for _ in admitted.iter().filter(|a| !a.unknown_columns.is_empty()) {
        shared.metrics.rejected("unknown_column");
    }
    let ChangeSet { origin, seq, .. } = change_set;
    let changed = merge_and_write(&txn, admitted, origin, seq).await?;
    if seq == log::head(&txn, origin).await? + 1 {
        log::set_head(&txn, origin, seq).await?;
    }
    log::save_clock(&txn, shared.clock_reading()).await?;
    txn.commit().await?;
    let rows = changed.len();
    shared.metrics.remote_applied(rows);
    tracing::debug!(%origin, seq, rows, "applied remote change set");
    if !changed.is_empty() {
        let applied = ChangeSet {
            origin,
            seq,
            operations: changed,
        };
        shared
            .bus
            .publish(notifications(&applied, ChangeSource::Remote));
    }
    Ok(rows)
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

/// Merges the operations into the log and rewrites the rows they won; returns the
/// operations that changed something.
async fn merge_and_write(
    txn: &DatabaseTransaction,
    admitted: Vec<Admitted>,
    origin: NodeId,
    seq: u64,
) -> Result<Vec<SyncOperation>, DbErr> {
    // The versions of every row touched so far, so later operations of the same set
    // merge against earlier ones.
    let mut rows: HashMap<(String, Vec<u8>), HashMap<String, CellVersion>> = HashMap::new();
    let mut touched: Vec<TouchedRow> = Vec::new();
    let mut touched_keys: HashSet<(String, Vec<u8>)> = HashSet::new();
    let mut entries = Vec::new();
    let mut changed = Vec::new();
    let mut pending: HashMap<String, Vec<String>> = HashMap::new();
    for Admitted {
        meta,
        op,
        unknown_columns,
    } in admitted
    {
        let key_values: Vec<CellValue> = op.primary_key.iter().map(|(_, v)| v.clone()).collect();
        let key = encode_key(&key_values);
        let slot = (meta.name.clone(), key.clone());
        if !rows.contains_key(&slot) {
            let held = log::row_versions(txn, &meta.name, &key).await?;
            rows.insert(slot.clone(), held);
        }
        let held = rows.entry(slot).or_default();
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
        changed.push(op);
    }
    log::store(txn, entries).await?;
    for (table, columns) in &pending {
        tracing::debug!(%table, ?columns, "keeping remote values for columns this peer lacks");
        migrate::record_pending(txn, table, columns).await?;
    }
    for row in touched {
        let held = &rows[&(row.meta.name.clone(), row.key)];
        write_row(txn, &row.meta, &row.primary_key, row_state(&row.meta, held)).await?;
    }
    Ok(changed)
}

/// Makes the user table's row match its state.
pub(crate) async fn write_row(
    txn: &impl ConnectionTrait,
    meta: &TableMeta,
    primary_key: &[(String, CellValue)],
    state: RowState,
) -> Result<(), DbErr> {
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
        RowState::Partial(values) if values.is_empty() => return Ok(()),
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
    txn.execute_raw(statement).await.map(drop)
}
