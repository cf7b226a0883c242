//! What `WaveSyncDb::peers` and `WaveSyncDb::sync_status` report.
//!
//! Plain data, filled in by the connection from what the engine knows; it never holds a
//! lock or a handle.

use crate::clock::NodeId;
use crate::events::ConnectionKind;
use libp2p::{Multiaddr, PeerId};

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
    /// How many of those transactions this node lacks (filled by `sync_status`). The
    /// heads are the peer's claims: the count saturates at `u64::MAX`.
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
}

impl PeerInfo {
    /// What the engine knows of `peer`, as the app sees it (`behind` is filled by
    /// `sync_status`).
    pub(crate) fn from_state(
        peer_id: PeerId,
        state: &crate::engine::PeerState,
        link: Option<ConnectionKind>,
    ) -> PeerInfo {
        PeerInfo {
            peer_id,
            node_id: NodeId::from_peer_id_bytes(&peer_id.to_bytes()),
            connected: state.connected,
            heads: state.heads.clone(),
            behind: 0,
            rejected_messages: state.rejected,
            banned: state.banned_until.is_some(),
            connection: if state.connected { link } else { None },
            catch_up: state
                .catch_up
                .map(|(done, total)| CatchUpProgress { done, total }),
        }
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
}
