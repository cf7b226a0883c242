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

pub(crate) mod attest;
pub(crate) mod catchup;
pub(crate) mod codec;
pub(crate) mod heads;
pub(crate) mod parts;
pub(crate) mod recovery;
pub(crate) mod strikes;

/// The gossipsub message of the live path. The enum is the version: a peer that does not
/// know a variant rejects the message, and catch-up fills the gap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Gossip {
    /// Protocol version 1.
    V1(GossipV1),
}

/// Live messages, version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum GossipV1 {
    /// A whole committed transaction.
    ChangeSet(ChangeSet),
    /// One part of a transaction too large for one message; the receiver applies the
    /// transaction once it holds all `count` parts.
    Part {
        /// The transaction's origin.
        origin: NodeId,
        /// The transaction's sequence number.
        seq: u64,
        /// This part's index, from 0.
        index: u32,
        /// How many parts the transaction has.
        count: u32,
        /// This part's operations, in order.
        operations: Vec<SyncOperation>,
    },
}

/// Where a catch-up page stops: the last log entry it carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub seq: u64,
    pub table: String,
    pub key: Vec<u8>,
    pub column: String,
}

/// A catch-up request (request-response), versioned like [`Gossip`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Protocol version 1.
    V1(RequestV1),
}

/// Catch-up requests, version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum RequestV1 {
    /// "Which transactions have you applied?"
    Heads,
    /// "Send me origin's log entries with seq in (after, through], after `cursor`."
    Pull {
        origin: NodeId,
        after: u64,
        through: u64,
        cursor: Option<Cursor>,
    },
}

/// A catch-up response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Response {
    /// Protocol version 1.
    V1(ResponseV1),
}

/// Catch-up responses, version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum ResponseV1 {
    /// Per origin, the highest contiguous sequence number applied.
    Heads(Vec<(NodeId, u64)>),
    /// One bounded page of log entries, as operations tagged with their sequence number,
    /// in sequence order; `next` is where the following page starts, `None` at the end.
    Page {
        operations: Vec<(u64, SyncOperation)>,
        next: Option<Cursor>,
    },
    /// The request could not be served (e.g. a database error); try another peer later.
    Unavailable,
    /// Heads, with what origins signed about their own heads (see `attest`): its own,
    /// and the highest ones it has verified from others.
    AttestedHeads {
        heads: Vec<(NodeId, u64)>,
        attestations: Vec<Attestation>,
    },
}

/// An origin's signed statement, for one group: "I have issued transactions up to `seq`,
/// and none of mine after `live` has entries left in my log" (all their cells were
/// superseded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attestation {
    pub origin: NodeId,
    pub seq: u64,
    pub live: u64,
    /// The origin's public key (libp2p protobuf encoding); its node id must be `origin`.
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}
