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
use crate::events::SyncEvent;
use crate::log;
use futures::StreamExt;
use libp2p::PeerId;
use std::collections::HashMap;

/// Whether an event can change what the waiters look at (heads, connections, our
/// confirmation); other events (and a failed connection, which outsiders cause at will)
/// wake no check.
fn worth_a_check(event: &Option<Result<SyncEvent, crate::events::EventsLagged>>) -> bool {
    match event {
        None | Some(Err(_)) => true,
        Some(Ok(event)) => matches!(
            event,
            SyncEvent::HeadsUpdated { .. }
                | SyncEvent::PeerConnected { .. }
                | SyncEvent::PeerDisconnected { .. }
                | SyncEvent::CatchUpFinished { .. }
        ),
    }
}

/// Waits for the next event worth a check; `EngineStopped` when the stream ends.
async fn next_check(events: &mut crate::events::SyncEvents) -> Result<(), Error> {
    loop {
        let event = events.next().await;
        if event.is_none() {
            return Err(Error::EngineStopped);
        }
        if worth_a_check(&event) {
            return Ok(());
        }
    }
}

impl WaveSyncDb {
    /// Resolves once `peers` connected peers of the group (at least one) have applied
    /// every transaction this node committed before the call: from then on those writes
    /// survive the loss of this device. Returns the peers that hold them.
    ///
    /// A peer counts only on what it said in its current connection, and only once this
    /// node's own numbering is confirmed (after a restart that lost commits, a peer may
    /// hold an earlier life's transactions under the same numbers): the target is read
    /// then, so writes renumbered by the recovery are waited for under their new numbers.
    /// A peer that claims more of ours than we ever issued does not count.
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
        let needed = peers.max(1);
        let mut target = None;
        loop {
            if engine.status().own_confirmed {
                let head = log::head(&self.shared.conn, me).await?;
                // Read once confirmed: it covers every write made before the call, under
                // the numbers they finally have.
                let target = *target.get_or_insert(head);
                let holders: Vec<PeerId> = engine
                    .status()
                    .peers
                    .iter()
                    .filter(|(_, state)| {
                        let claim = state
                            .heads
                            .iter()
                            .find(|(origin, _)| *origin == me)
                            .map_or(0, |(_, seq)| *seq);
                        state.connected
                            && state.fresh
                            && state.banned_until.is_none()
                            && claim >= target
                            && claim <= head
                    })
                    .map(|(peer, _)| *peer)
                    .collect();
                if holders.len() >= needed {
                    return Ok(holders);
                }
            }
            // The peers' heads are as of their last answer: ask again, then wait for it
            // (or for a peer to connect, or our numbering to be confirmed).
            engine.refresh_heads();
            next_check(&mut events).await?;
        }
    }

    /// Resolves once this node has caught up with a connected peer of its group: it holds
    /// every transaction that peer had applied when it last answered in this connection
    /// (a catch-up just finished, or there was nothing to pull), that peer held none of
    /// its own transactions back (as a node does after a restart until a peer has
    /// answered it), and this node's own numbering is confirmed (so no write of its own
    /// that a peer still holds is missing). Returns that peer. Use it at start, before
    /// showing data that must be current; it resolves at once when already caught up.
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
            if engine.status().own_confirmed {
                let ours: HashMap<NodeId, u64> =
                    log::heads(&self.shared.conn).await?.into_iter().collect();
                let caught_up = engine
                    .status()
                    .peers
                    .iter()
                    .find(|(_, state)| {
                        state.connected
                            && state.fresh
                            && state.settled
                            && state.banned_until.is_none()
                            && crate::protocol::catchup::behind(&ours, &state.heads, me) == 0
                    })
                    .map(|(peer, _)| *peer);
                if let Some(peer) = caught_up {
                    return Ok(peer);
                }
            }
            engine.refresh_heads();
            next_check(&mut events).await?;
        }
    }
}
