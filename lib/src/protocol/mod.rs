//! What peers exchange: committed transactions as row values, never SQL text.
//!
//! Owns [`ChangeSet`], [`SyncOperation`] and [`WriteKind`]. Pure data: no I/O, no
//! database, no network. A `ChangeSet` is exactly one committed local transaction, so a
//! receiver applies all of it or none of it; its `(origin, seq)` address is what catch-up
//! asks for. Nothing here is trusted on receipt: `schema` admits names and values.

use crate::clock::{Hlc, NodeId};
use crate::value::CellValue;
use serde::{Deserialize, Serialize};

/// The kind of a captured write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WriteKind {
    /// A row was inserted (or upserted); every synced column is carried.
    Insert,
    /// Some columns of a row were updated; only those columns are carried.
    Update,
    /// A row was deleted; only its key is carried.
    Delete,
}

/// One written row: its table, key, the columns written and the timestamp of the write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOperation {
    /// The table written.
    pub table: String,
    /// Insert, update or delete.
    pub kind: WriteKind,
    /// When, and by which node, the write happened. Every row of one statement shares it.
    pub hlc: Hlc,
    /// The primary key, column by column, in key order.
    pub primary_key: Vec<(String, CellValue)>,
    /// The written non-key columns and their new values (empty for a delete).
    pub values: Vec<(String, CellValue)>,
}

impl SyncOperation {
    /// The node that made this write.
    pub fn node_id(&self) -> NodeId {
        self.hlc.node
    }

    /// The value written to `column`, if this operation wrote it.
    pub fn value(&self, column: &str) -> Option<&CellValue> {
        self.primary_key
            .iter()
            .chain(&self.values)
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .map(|(_, value)| value)
    }
}

/// All rows written by one committed transaction of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The node whose transaction this is.
    pub origin: NodeId,
    /// The origin's transaction number: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// The written rows, in the order the transaction wrote them.
    pub operations: Vec<SyncOperation>,
}
