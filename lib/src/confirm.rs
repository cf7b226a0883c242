//! Knowing when data is safe: futures that resolve once peers hold this node's writes,
//! or once this node has caught up with its group.
//!
//! Owns [`WaveSyncDb::wait_until_replicated`] and [`WaveSyncDb::wait_until_caught_up`].
//! They are built on the sync events ([`crate::SyncEvent::HeadsUpdated`],
//! `CatchUpFinished`, connection events), never on a timer: each subscribes first, then
//! checks what the engine knows, then sleeps until the next event. They only read; they
//! never change what the engine does beyond asking it for fresh heads (at most one round
//! per 100 ms, however many wait). Neither has a timeout of its own: the app races it
//! against its runtime's timer.

use crate::clock::NodeId;
use crate::connection::WaveSyncDb;
use crate::error::Error;
use crate::log;
use crate::status::PeerInfo;
use futures::StreamExt;
use libp2p::PeerId;
use std::collections::HashMap;

/// Whether `peer` has applied every transaction of `me` up to `target`.
fn holds(peer: &PeerInfo, me: NodeId, target: u64) -> bool {
    peer.connected
        && !peer.banned
        && (target == 0
            || peer
                .heads
                .iter()
                .any(|(origin, seq)| *origin == me && *seq >= target))
}

impl WaveSyncDb {
    /// Resolves once `peers` connected peers of the group (at least one) have applied
    /// every transaction this node committed before the call: from then on those writes
    /// survive the loss of this device. Returns the peers that hold them.
    ///
    /// Waits as long as it takes (no peer online, say); race it against a timer of your
    /// runtime to give up. Fails with [`Error::EngineStopped`] when the engine stops
    /// first and [`Error::NoNetwork`] for a database built `without_network()`.
    ///
    /// ```rust,no_run
    /// # async fn example(db: wavesyncdb::WaveSyncDb) -> Result<(), wavesyncdb::Error> {
    /// // ... writes ...
    /// let holders = db.wait_until_replicated(1).await?;
    /// println!("safe on {}", holders[0]);
    /// # Ok(()) }
    /// ```
    pub async fn wait_until_replicated(&self, peers: usize) -> Result<Vec<PeerId>, Error> {
        let engine = self.engine.as_ref().ok_or(Error::NoNetwork {
            action: "wait for peers to hold its writes",
        })?;
        let mut events = self.sync_events();
        let me = self.shared.node_id;
        let target = log::head(&self.shared.conn, me).await?;
        let needed = peers.max(1);
        loop {
            let holders: Vec<PeerId> = self
                .peers()
                .into_iter()
                .filter(|peer| holds(peer, me, target))
                .map(|peer| peer.peer_id)
                .collect();
            if holders.len() >= needed {
                return Ok(holders);
            }
            // The peers' heads are as of their last answer: ask again, then wait for it
            // (or for a peer to connect).
            engine.refresh_heads();
            if events.next().await.is_none() {
                return Err(Error::EngineStopped);
            }
        }
    }

    /// Resolves once this node has caught up with a connected peer of its group: it holds
    /// every transaction that peer had applied when it last answered (a catch-up just
    /// finished, or there was nothing to pull), and that peer held none of its own
    /// transactions back (as a node does after a restart until a peer has answered it).
    /// Returns that peer. Use it at start, before
    /// showing data that must be current; it resolves at once when already caught up
    /// with a connected peer.
    ///
    /// Waits as long as no peer of the group is online; race it against a timer of your
    /// runtime to give up. Fails with [`Error::EngineStopped`] when the engine stops
    /// first and [`Error::NoNetwork`] for a database built `without_network()`.
    pub async fn wait_until_caught_up(&self) -> Result<PeerId, Error> {
        let engine = self.engine.as_ref().ok_or(Error::NoNetwork {
            action: "catch up with its group",
        })?;
        let mut events = self.sync_events();
        let me = self.shared.node_id;
        loop {
            let ours: HashMap<NodeId, u64> =
                log::heads(&self.shared.conn).await?.into_iter().collect();
            let caught_up = engine
                .status()
                .peers
                .iter()
                .find(|(_, state)| {
                    // A peer that holds its own numbers back (it just restarted) has more
                    // than its reply says: not final yet.
                    state.connected
                        && state.settled
                        && state.banned_until.is_none()
                        && crate::protocol::catchup::behind(&ours, &state.heads, me) == 0
                })
                .map(|(peer, _)| *peer);
            if let Some(peer) = caught_up {
                return Ok(peer);
            }
            engine.refresh_heads();
            if events.next().await.is_none() {
                return Err(Error::EngineStopped);
            }
        }
    }
}
