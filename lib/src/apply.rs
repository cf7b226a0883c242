//! Applying a peer's change set: validate, merge, write, notify.
//!
//! Owns the inbound path. Every name and value is admitted against the registry first
//! (`schema`), timestamps against the clock's drift bound; one bad operation rejects the
//! whole change set, which is counted and changes nothing. Then, in one IMMEDIATE database
//! transaction: the winning cell versions (`merge`) go to the log, each touched row is
//! rewritten from its versions, the origin's head advances if the set is the next one
//! expected, and the clock is persisted. Notifications follow the commit.
//!
//! It must never build SQL from a name as received: only registered names are quoted in.

use crate::clock::NodeId;
use crate::connection::{Shared, notifications};
use crate::error::{Error, RejectReason};
use crate::log::{self, LogEntry};
use crate::merge::{CellVersion, RowState, row_state, winners, written_cells};
use crate::notify::ChangeSource;
use crate::protocol::{ChangeSet, SyncOperation};
use crate::schema::TableMeta;
use crate::value::{CellValue, encode_key};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};

/// An operation whose names and values passed admission, spelled as registered here.
struct Admitted {
    meta: Arc<TableMeta>,
    op: SyncOperation,
}

pub(crate) async fn apply_remote(shared: &Shared, change_set: ChangeSet) -> Result<usize, Error> {
    if change_set.origin == shared.node_id {
        // Our own change coming back (e.g. relayed by a peer): we have it already.
        return Ok(0);
    }
    let admitted = match admit_all(shared, &change_set) {
        Ok(admitted) => admitted,
        Err(reason) => {
            shared.metrics.rejected(reason.code());
            tracing::warn!(origin = %change_set.origin, seq = change_set.seq, %reason, "rejected remote change set");
            return Err(reason.into());
        }
    };
    let ChangeSet { origin, seq, .. } = change_set;
    let txn = shared
        .conn
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
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

/// Admits every operation, or names the first reason to reject the set.
fn admit_all(shared: &Shared, change_set: &ChangeSet) -> Result<Vec<Admitted>, RejectReason> {
    let registry = shared
        .registry
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let mut admitted = Vec::with_capacity(change_set.operations.len());
    for op in &change_set.operations {
        if op.hlc.node != change_set.origin {
            return Err(RejectReason::ForeignStamp);
        }
        let meta = registry
            .synced(&op.table)
            .ok_or_else(|| RejectReason::UnknownTable {
                table: op.table.clone(),
            })?;
        admitted.push(admit(&meta, op)?);
    }
    drop(registry);
    shared.observe(admitted.iter().map(|a| a.op.hlc))?;
    Ok(admitted)
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
    if op.kind != crate::WriteKind::Delete {
        for (name, value) in &op.values {
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
    for Admitted { meta, op } in admitted {
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
    for row in touched {
        let held = &rows[&(row.meta.name.clone(), row.key)];
        write_row(txn, &row.meta, &row.primary_key, row_state(&row.meta, held)).await?;
    }
    Ok(changed)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Makes the user table's row match its state.
async fn write_row(
    txn: &DatabaseTransaction,
    meta: &TableMeta,
    primary_key: &[(String, CellValue)],
    state: RowState,
) -> Result<(), DbErr> {
    let table = quote(&meta.name);
    let key_match = primary_key
        .iter()
        .map(|(name, _)| format!("{} = ?", quote(name)))
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
                .map(|(name, _)| format!("{} = ?", quote(name)))
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
                .map(|(name, _)| quote(name))
                .collect();
            let keys: Vec<String> = primary_key.iter().map(|(name, _)| quote(name)).collect();
            let placeholders = vec!["?"; columns.len()].join(", ");
            let on_conflict = if values.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                let set = values
                    .iter()
                    .map(|(name, _)| format!("{0} = excluded.{0}", quote(name)))
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
