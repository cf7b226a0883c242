//! What `WaveSyncDb::peers` and `WaveSyncDb::sync_status` report.
//!
//! Plain data, filled in by the engine from what it knows; it never holds a lock or a
//! handle, and imports nothing of the engine or the facade.

use crate::clock::NodeId;
use libp2p::{Multiaddr, PeerId};

/// How a connection to a peer travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    /// Straight between the two peers (same network, a reachable address, or a hole
    /// punched through both NATs).
    Direct,
    /// Through a relay server's circuit (end-to-end encrypted; the relay sees sizes and
    /// timing only).
    Relayed,
}

/// A catch-up from one peer while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUpProgress {
    /// Transactions applied so far.
    pub done: u64,
    /// Transactions to pull (as the peer claims them).
    pub total: u64,
}

/// One peer of this node's group as this node sees it. A connected peer is listed only
/// once it has shown it speaks the group's protocol (same topic, same secret); peers of
/// other groups on the same network (mDNS finds them too) never appear.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's libp2p id.
    pub peer_id: PeerId,
    /// The node id its changes carry.
    pub node_id: NodeId,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Per origin, the highest contiguous transaction the peer has applied (as of its
    /// last answer).
    pub heads: Vec<(NodeId, u64)>,
    /// How many of those transactions this node lacks. `sync_status` counts against this
    /// node's heads as they are now; `peers` against its heads as of the peer's last
    /// answer (it reads no database). The heads are the peer's claims: the count
    /// saturates at `u64::MAX`.
    pub behind: u64,
    /// Invalid messages received from this peer, whatever the reason (only those it
    /// provably caused count towards a ban).
    pub rejected_messages: u64,
    /// Whether the peer is refused for now, after too many invalid messages.
    pub banned: bool,
    /// How the connection travels while connected: [`ConnectionKind::Direct`] as soon as
    /// one direct connection is open (a hole punched), else
    /// [`ConnectionKind::Relayed`]. `None` while not connected.
    pub connection: Option<ConnectionKind>,
    /// The catch-up from this peer now running, if any.
    pub catch_up: Option<CatchUpProgress>,
    /// Why the last failed connection to or from this peer failed, if one did since it
    /// was last connected (see [`ConnectionFailure::reason`]).
    pub last_error: Option<String>,
}

/// A connection that failed: a dial (to a bootstrap address, a relay, a peer found by
/// mDNS or rendezvous) or an incoming handshake. In
/// [`SyncStatus::connection_failures`] and [`crate::SyncEvent::ConnectionFailed`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionFailure {
    /// The peer, when known (a bootstrap address without `/p2p/<id>` names none).
    pub peer: Option<PeerId>,
    /// The address dialled, or the one an incoming connection came from.
    pub address: Option<Multiaddr>,
    /// Whether the peer dialled us (`true`) or we dialled it.
    pub incoming: bool,
    /// What failed, with the whole cause and, for known mistakes (a wrong group secret,
    /// nothing listening, no route), what to check.
    pub reason: String,
    /// When it failed.
    pub at: std::time::SystemTime,
}

impl std::fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let direction = if self.incoming { "from" } else { "to" };
        match (&self.peer, &self.address) {
            (Some(peer), Some(address)) => write!(f, "connection {direction} {peer} at {address}")?,
            (Some(peer), None) => write!(f, "connection {direction} {peer}")?,
            (None, Some(address)) => write!(f, "connection {direction} {address}")?,
            (None, None) => write!(f, "a connection")?,
        }
        write!(f, " failed: {}", self.reason)
    }
}

/// Where this node stands in its group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's libp2p id (`None` without network).
    pub peer_id: Option<PeerId>,
    /// The addresses it listens on.
    pub listening: Vec<Multiaddr>,
    /// Per origin, the highest contiguous transaction applied here.
    pub heads: Vec<(NodeId, u64)>,
    /// The peers it knows.
    pub peers: Vec<PeerInfo>,
    /// How many peers are connected.
    pub connected_peers: usize,
    /// The most transactions any one peer has that this node lacks.
    pub behind: u64,
    /// The catch-ups now running, summed over the peers pulled from (`None` when none
    /// runs): what a progress bar shows.
    pub catch_up: Option<CatchUpProgress>,
    /// The most recent failed connections (at most 16, oldest first): a wrong group
    /// secret, a bootstrap address where nothing listens, an address this build cannot
    /// dial.
    pub connection_failures: Vec<ConnectionFailure>,
}

impl CatchUpProgress {
    /// The sum of several catch-ups' progress; `None` for none.
    pub(crate) fn sum(parts: impl IntoIterator<Item = CatchUpProgress>) -> Option<Self> {
        parts.into_iter().fold(None, |sum, part| {
            let sum = sum.unwrap_or(CatchUpProgress { done: 0, total: 0 });
            Some(CatchUpProgress {
                done: sum.done.saturating_add(part.done),
                total: sum.total.saturating_add(part.total),
            })
        })
    }
}
