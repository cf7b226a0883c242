//! Admission of a peer's change set: every name and value checked before anything is
//! written.
//!
//! Pure. An operation on a table this peer syncs is matched against its [`TableMeta`]
//! (names, key, types; values for columns this peer lacks are kept aside by name). An
//! operation on a table this peer does not sync (not yet registered, or local) is kept
//! whole, to be stored in the log as data and served to other peers: its names are
//! checked for shape only (non-empty, bounded, a key of distinct columns), since they are
//! only ever bound as parameters. Every value is bounded by [`crate::MAX_CELL_BYTES`].

use crate::error::RejectReason;
use crate::protocol::{ChangeSet, SyncOperation, WriteKind};
use crate::schema::{ROW_EXISTS_COLUMN, Registry, TableMeta};
use std::sync::Arc;

/// The longest table or column name accepted from a peer, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// The most primary key columns accepted from a peer.
const MAX_KEY_COLUMNS: usize = 32;

/// An operation whose names and values passed admission.
pub(super) struct Admitted {
    /// The table's metadata where this peer syncs it; `None`: kept in the log only.
    pub meta: Option<Arc<TableMeta>>,
    /// Spelled as registered here (for a synced table).
    pub op: SyncOperation,
    /// Columns the op writes that this peer's table does not have (all of them for a
    /// table it does not sync).
    pub unknown_columns: Vec<String>,
}

/// Admits every operation of `change_set`, or names the first reason to reject it.
pub(super) fn admit_all(
    registry: &Registry,
    change_set: &ChangeSet,
) -> Result<Vec<Admitted>, RejectReason> {
    let mut admitted = Vec::with_capacity(change_set.operations.len());
    for op in &change_set.operations {
        if op.hlc.node != change_set.origin {
            return Err(RejectReason::ForeignStamp);
        }
        check_sizes(op)?;
        admitted.push(match registry.synced(&op.table) {
            Some(meta) => admit(&meta, op)?,
            None => admit_unsynced(op)?,
        });
    }
    Ok(admitted)
}

fn oversized(op: &SyncOperation, column: &str, bytes: usize) -> RejectReason {
    RejectReason::Oversized {
        table: op.table.clone(),
        column: column.to_owned(),
        bytes,
        max: crate::MAX_CELL_BYTES,
    }
}

/// Every value within [`crate::MAX_CELL_BYTES`].
fn check_sizes(op: &SyncOperation) -> Result<(), RejectReason> {
    for (column, value) in op.primary_key.iter().chain(&op.values) {
        let bytes = value.byte_len();
        if bytes > crate::MAX_CELL_BYTES {
            return Err(oversized(op, column, bytes));
        }
    }
    Ok(())
}

fn malformed(op: &SyncOperation, what: &'static str) -> RejectReason {
    RejectReason::Malformed {
        table: op.table.chars().take(MAX_NAME_BYTES).collect(),
        what,
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES
}

/// An operation on a table this peer does not sync: kept as it came, names as data.
fn admit_unsynced(op: &SyncOperation) -> Result<Admitted, RejectReason> {
    if !name_ok(&op.table) {
        return Err(malformed(op, "table name"));
    }
    if op.primary_key.is_empty() || op.primary_key.len() > MAX_KEY_COLUMNS {
        return Err(malformed(op, "primary key"));
    }
    for (index, (name, _)) in op.primary_key.iter().enumerate() {
        let repeated = op.primary_key[..index]
            .iter()
            .any(|(other, _)| other.eq_ignore_ascii_case(name));
        if !name_ok(name) || repeated {
            return Err(malformed(op, "primary key column"));
        }
    }
    let mut unknown_columns = Vec::new();
    if op.kind != WriteKind::Delete {
        for (name, _) in &op.values {
            let is_key = op
                .primary_key
                .iter()
                .any(|(key, _)| key.eq_ignore_ascii_case(name));
            if !name_ok(name) || name == ROW_EXISTS_COLUMN || is_key {
                return Err(malformed(op, "column name"));
            }
            unknown_columns.push(name.clone());
        }
    }
    let mut op = op.clone();
    if op.kind == WriteKind::Delete {
        op.values.clear();
    }
    Ok(Admitted {
        meta: None,
        op,
        unknown_columns,
    })
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
    if op.kind != WriteKind::Delete {
        for (name, value) in &op.values {
            if meta.column(name).is_none() {
                // A column of a newer schema: kept (as received) until ours has it. The
                // name of the row-existence cell is never a column.
                if !name_ok(name) || name == ROW_EXISTS_COLUMN {
                    return Err(RejectReason::UnknownColumn {
                        table: meta.name.clone(),
                        column: name.chars().take(MAX_NAME_BYTES).collect(),
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
        meta: Some(Arc::clone(meta)),
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
