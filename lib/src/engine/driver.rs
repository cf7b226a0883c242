//! The sync driver: the protocol between this node's database and its peers.
//!
//! Owns live publishing (one gossip message per committed transaction, split into parts
//! when large), live receiving (validate the author, apply whatever the sequence number,
//! notice gaps), group membership, and the glue of catch-up ([`super::pull`]). Every
//! decision with a rule behind it is a pure piece under `protocol`, handed `now`: part
//! reassembly (`protocol::parts`), strikes and bans (`protocol::strikes`), what a pull
//! accepts and how far a head may advance (`protocol::heads`). It talks to the swarm only
//! through [`Command`]s and [`NetEvent`]s; it never holds the `Swarm`.
//!
//! ## Group membership
//! Every exchange is scoped by the group: the catch-up protocol id and the gossip topic
//! carry a group id derived from the topic and the secret (`behaviour::group_id`), so a
//! peer of another group cannot ask, serve or publish anything here. A connected peer
//! (mDNS dials whomever it finds) counts as a member, in `peers()` and `sync_status()`,
//! only once it has proven it speaks the group's protocol: it answered our heads request,
//! sent us a request, or forwarded gossip on the group topic. One that refuses the
//! protocol is disconnected.
//!
//! ## The live path
//! A live change set signed by its origin is applied whatever its sequence number: merge
//! is idempotent, so a duplicate changes nothing, and a head that a peer made us believe
//! too high (see `protocol::heads`) cannot silence an origin. Only a duplicate that
//! changed nothing is not forwarded.

use super::{Command, NetEvent, NetworkConfig, NetworkStatus};
use crate::clock::NodeId;
use crate::log;
use crate::protocol::attest::Attested;
use crate::protocol::codec::{DecodeError, decode_gossip, encode_gossip, is_newer_variant};
use crate::protocol::heads::{MAX_HEADS, PullProgress};
use crate::protocol::parts::{Part, PartBudget, PartOutcome, Reassembly};
use crate::protocol::recovery::{Recovery, State as RecoveryState};
use crate::protocol::strikes::{Offense, StrikeRules, Strikes, Verdict, offense_of_rejection};
use crate::protocol::{ChangeSet, Gossip, GossipV1, SyncOperation};
use crate::replica::Shared;
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(super) enum Pending {
    Heads,
    Pull { origin: NodeId },
}

/// A catch-up pull of one origin's range from one peer.
pub(super) struct Pull {
    pub peer: PeerId,
    pub progress: PullProgress,
    /// The request whose answer is the next page; any other answer is stale.
    pub token: u64,
}

/// Departed peers (neither connected nor banned) kept in the status: beyond this, the
/// ones departed are forgotten, so peers that come and go cannot grow it without bound.
const MAX_DEPARTED: usize = 256;

fn forget_departed(peers: &mut std::collections::BTreeMap<PeerId, super::PeerState>) {
    let departed = |state: &super::PeerState| !state.connected && state.banned_until.is_none();
    let mut excess = peers
        .values()
        .filter(|state| departed(state))
        .count()
        .saturating_sub(MAX_DEPARTED);
    peers.retain(|_, state| {
        if excess > 0 && departed(state) {
            excess -= 1;
            false
        } else {
            true
        }
    });
}

/// The node id of a peer.
pub(super) fn node_of(peer: &PeerId) -> NodeId {
    NodeId::from_peer_id_bytes(&peer.to_bytes())
}

pub(crate) struct Driver {
    pub(super) shared: Arc<Shared>,
    pub(super) config: NetworkConfig,
    commands: async_channel::Sender<Command>,
    events: async_channel::Receiver<NetEvent>,
    pub(super) outbox: Option<crate::outbox::EngineFeed>,
    status: Arc<Mutex<NetworkStatus>>,
    stop: async_channel::Receiver<()>,
    next_token: u64,
    pub(super) pending: HashMap<u64, Pending>,
    pub(super) pulls: HashMap<NodeId, Pull>,
    partial: Reassembly,
    strikes: Strikes<PeerId>,
    /// Connected peers that have not proven yet that they are of our group.
    candidates: HashSet<PeerId>,
    /// Signs our heads statements (`protocol::attest`).
    pub(super) keypair: libp2p::identity::Keypair,
    /// The group id the statements are signed for.
    pub(super) group: String,
    /// The highest statement verified per origin.
    pub(super) attested: Attested,
    /// Whether this node's own numbers are confirmed, or held back while it takes back
    /// transactions an earlier life of it issued (`protocol::recovery`).
    pub(super) recovery: Recovery,
    /// Per peer pulled from: transactions applied and asked for in its current catch-up.
    pub(super) catch_ups: HashMap<PeerId, (u64, u64)>,
    /// The app's requests for fresh heads (`EngineHandle::refresh_heads`).
    refresh: async_channel::Receiver<()>,
    /// When the requested round of heads requests goes out, if one is requested.
    refresh_due: Option<tokio::time::Instant>,
    /// When the last requested round went out.
    last_refresh: Option<tokio::time::Instant>,
    /// Requested rounds in a row, each within the heads interval of the last.
    refresh_streak: u32,
}

/// The least time between two rounds of heads requests the app asked for (it doubles
/// while they come back to back).
pub(crate) const REFRESH_SPACING: Duration = Duration::from_millis(100);

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        keypair: libp2p::identity::Keypair,
        shared: Arc<Shared>,
        config: NetworkConfig,
        commands: async_channel::Sender<Command>,
        events: async_channel::Receiver<NetEvent>,
        outbox: crate::outbox::EngineFeed,
        status: Arc<Mutex<NetworkStatus>>,
        stop: async_channel::Receiver<()>,
        refresh: async_channel::Receiver<()>,
    ) -> Driver {
        let partial = Reassembly::new(PartBudget::for_messages(config.max_message_bytes));
        let recovery = Recovery::new(shared.node_id, outbox.floor());
        let group = super::behaviour::group_id(&config.topic, config.secret.as_ref());
        Driver {
            shared,
            config,
            commands,
            events,
            outbox: Some(outbox),
            status,
            stop,
            next_token: 0,
            pending: HashMap::new(),
            pulls: HashMap::new(),
            partial,
            strikes: Strikes::new(StrikeRules::default()),
            candidates: HashSet::new(),
            keypair,
            group,
            attested: Attested::new(MAX_HEADS),
            recovery,
            catch_ups: HashMap::new(),
            refresh,
            refresh_due: None,
            last_refresh: None,
            refresh_streak: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        // Numbers confirmed by an earlier run; those after it wait for a peer's word.
        match log::confirmed(&self.shared.engine_conn).await {
            Ok(Some(confirmed)) => {
                let floor = self.outbox.as_ref().map_or(confirmed, |feed| feed.floor());
                self.recovery = Recovery::new(self.shared.node_id, confirmed.min(floor));
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(%err, "reading this node's confirmed numbering"),
        }
        let mut tick = tokio::time::interval(self.config.heads_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // This node's committed change sets, in order; the feed reads from the log
            // what its queue could not take.
            // Held back while this node's numbering is unconfirmed (`protocol::recovery`).
            let held_back = self.recovery.held_back_above().is_some();
            let feed = self.outbox.as_mut().filter(|_| !held_back);
            let conn = &self.shared.engine_conn;
            let me = self.shared.node_id;
            let next_local = async move {
                match feed {
                    Some(feed) => feed.next(conn, me).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                change_set = next_local => match change_set {
                    Some(change_set) => self.publish(change_set).await,
                    None => {
                        tracing::warn!(
                            "the local change-set channel was taken over (change_set_receiver); \
                             live publishing stops, catch-up still serves peers"
                        );
                        self.outbox = None;
                    }
                },
                event = self.events.recv() => match event {
                    Ok(event) => self.on_event(event).await,
                    Err(_) => break,
                },
                _ = tick.tick() => {
                    if let Some(feed) = &self.outbox {
                        feed.check_log();
                    }
                    self.on_tick().await
                }
                // Closed only with the handle, and then `stop` ends the loop too.
                Ok(()) = self.refresh.recv(), if self.refresh_due.is_none() => {
                    let now = tokio::time::Instant::now();
                    // Rounds asked for back to back space out (100 ms doubling up to the
                    // heads interval): a waiter that cannot be satisfied costs the peers
                    // no more than the regular tick after a few seconds.
                    let quiet = self.last_refresh.is_none_or(|last| {
                        now.saturating_duration_since(last) > self.config.heads_interval
                    });
                    self.refresh_streak = if quiet { 0 } else { self.refresh_streak.saturating_add(1) };
                    let spacing = REFRESH_SPACING
                        .saturating_mul(1 << self.refresh_streak.min(16))
                        .min(self.config.heads_interval.max(REFRESH_SPACING));
                    let earliest = self.last_refresh.map_or(now, |last| last + spacing);
                    self.refresh_due = Some(earliest.max(now));
                }
                _ = tokio::time::sleep_until(self.refresh_due.unwrap_or_else(tokio::time::Instant::now)), if self.refresh_due.is_some() => {
                    self.refresh_due = None;
                    self.last_refresh = Some(tokio::time::Instant::now());
                    self.ask_connected_for_heads().await;
                }
                _ = self.stop.recv() => break,
            }
        }
        tracing::debug!("sync driver stopped");
    }

    pub(super) async fn command(&self, command: Command) {
        // Fails only when the event loop has stopped, and then so do we.
        let _ = self.commands.send(command).await;
    }

    pub(super) fn token(&mut self, pending: Pending) -> u64 {
        self.next_token += 1;
        self.pending.insert(self.next_token, pending);
        self.next_token
    }

    pub(super) fn status(&self) -> std::sync::MutexGuard<'_, NetworkStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- live path ----

    async fn publish(&mut self, change_set: ChangeSet) {
        let whole = encode_gossip(&Gossip::V1(GossipV1::ChangeSet(change_set.clone())));
        if whole.len() <= self.config.max_message_bytes {
            self.shared.metrics.gossip_published(1);
            self.command(Command::Publish(whole)).await;
            return;
        }
        let ChangeSet {
            origin,
            seq,
            operations,
        } = change_set;
        let mut count = whole.len().div_ceil(self.config.max_message_bytes).max(2);
        loop {
            let per_part = operations.len().div_ceil(count).max(1);
            let chunks: Vec<&[SyncOperation]> = operations.chunks(per_part).collect();
            let total = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
            let parts: Vec<Vec<u8>> = chunks
                .iter()
                .enumerate()
                .map(|(index, chunk)| {
                    encode_gossip(&Gossip::V1(GossipV1::Part {
                        origin,
                        seq,
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        count: total,
                        operations: chunk.to_vec(),
                    }))
                })
                .collect();
            if parts
                .iter()
                .all(|p| p.len() <= self.config.max_message_bytes)
            {
                self.shared.metrics.gossip_published(parts.len() as u64);
                for part in parts {
                    self.command(Command::Publish(part)).await;
                }
                return;
            }
            if per_part == 1 {
                // One row larger than a message: peers get it through catch-up.
                tracing::warn!(
                    seq,
                    "a row exceeds the gossip message bound; it syncs through catch-up"
                );
                return;
            }
            count *= 2;
        }
    }

    // ---- membership, strikes ----

    /// `peer` has shown it speaks our group's protocol: count it as a member.
    pub(super) fn prove(&mut self, peer: PeerId) {
        if self.candidates.remove(&peer) {
            tracing::debug!(%peer, "a peer of our group");
            self.status().peers.entry(peer).or_default().connected = true;
        }
    }

    /// Counts one invalid message from `peer` (`PeerInfo::rejected_messages`).
    pub(super) fn count_rejected(&self, peer: PeerId) {
        if let Some(state) = self.status().peers.get_mut(&peer) {
            state.rejected = state.rejected.saturating_add(1);
        }
    }

    /// Counts what `peer` provably did against it; bans it after too many.
    pub(super) async fn strike(&mut self, peer: PeerId, offense: Offense) {
        tracing::debug!(%peer, ?offense, "strike");
        let Verdict::Ban { until } = self.strikes.strike(peer, offense, Instant::now()) else {
            return;
        };
        if let Some(state) = self.status().peers.get_mut(&peer) {
            state.banned_until = Some(until);
        }
        self.pulls.retain(|_, pull| pull.peer != peer);
        self.command(Command::Ban(peer)).await;
    }

    /// A rejected change set from `peer`: counted, and struck if it was provably forged.
    pub(super) async fn rejected_change_set(&mut self, peer: PeerId, err: &crate::Error) {
        if let crate::Error::Rejected(reason) = err {
            self.count_rejected(peer);
            if let Some(offense) = offense_of_rejection(reason) {
                self.strike(peer, offense).await;
            }
        }
    }

    // ---- live path: receiving ----

    /// Validates and applies one gossip message; says whether gossipsub may forward it.
    async fn on_gossip(
        &mut self,
        author: Option<PeerId>,
        via: PeerId,
        data: Vec<u8>,
    ) -> MessageAcceptance {
        // Only a peer subscribed to our group's topic forwards on it.
        self.prove(via);
        self.shared.metrics.gossip_received(data.len());
        let message = match decode_gossip(&data, self.config.max_message_bytes) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(%via, %err, "rejected a malformed gossip message");
                self.shared.metrics.rejected("malformed");
                self.count_rejected(via);
                let offense = match err {
                    DecodeError::TooLarge { .. } => Some(Offense::Oversized),
                    DecodeError::Malformed(_) if is_newer_variant(&data) => None,
                    DecodeError::Malformed(_) => Some(Offense::Undecodable),
                };
                if let Some(offense) = offense {
                    self.strike(via, offense).await;
                }
                return MessageAcceptance::Reject;
            }
        };
        let change_set = match message {
            Gossip::V1(GossipV1::ChangeSet(change_set)) => change_set,
            Gossip::V1(GossipV1::Part {
                origin,
                seq,
                index,
                count,
                operations,
            }) => {
                let part = Part {
                    author: author.as_ref().map(node_of),
                    origin,
                    seq,
                    index,
                    count,
                    operations,
                    bytes: data.len(),
                };
                match self.partial.add(part, Instant::now()) {
                    PartOutcome::Complete(change_set) => change_set,
                    // A well-formed part of its origin travels on.
                    PartOutcome::Pending => return MessageAcceptance::Accept,
                    PartOutcome::Duplicate | PartOutcome::Dropped => {
                        return MessageAcceptance::Ignore;
                    }
                    outcome @ (PartOutcome::Forged | PartOutcome::Malformed) => {
                        let (reason, offense) = if outcome == PartOutcome::Forged {
                            ("forged_origin", Offense::Forged)
                        } else {
                            ("malformed", Offense::Undecodable)
                        };
                        tracing::warn!(?author, %via, %origin, seq, reason, "rejected a part");
                        self.shared.metrics.rejected(reason);
                        self.count_rejected(via);
                        self.strike(via, offense).await;
                        return MessageAcceptance::Reject;
                    }
                }
            }
        };
        // Live changes are signed by their author; a peer cannot pass off its writes as
        // another node's (relayed history comes through catch-up instead).
        if author.is_none_or(|author| node_of(&author) != change_set.origin) {
            tracing::warn!(
                ?author,
                "rejected a change set whose origin is not its signed author"
            );
            self.shared.metrics.rejected("forged_origin");
            self.count_rejected(via);
            self.strike(via, Offense::Forged).await;
            return MessageAcceptance::Reject;
        }
        let head = match log::head(&self.shared.engine_conn, change_set.origin).await {
            Ok(head) => head,
            Err(err) => {
                tracing::warn!(%err, "reading heads");
                return MessageAcceptance::Ignore;
            }
        };
        let (origin, seq) = (change_set.origin, change_set.seq);
        let acceptance = match crate::apply::apply_remote(&self.shared, change_set).await {
            // Applied already, and nothing changed: a duplicate goes no further.
            Ok(0) if seq <= head => MessageAcceptance::Ignore,
            Ok(_) => MessageAcceptance::Accept,
            Err(err) => {
                tracing::warn!(%origin, seq, %via, %err, "could not apply a live change set");
                // Counted by reason in `apply_remote`.
                self.rejected_change_set(via, &err).await;
                return if matches!(err, crate::Error::Rejected(_)) {
                    MessageAcceptance::Reject
                } else {
                    MessageAcceptance::Ignore
                };
            }
        };
        if seq == head.saturating_add(1) {
            // The head moved by one (`peers()` counts `behind` against it); a jump past
            // sets that waited shows at the next heads reply.
            let mut status = self.status();
            let own = status.own_heads.entry(origin).or_default();
            *own = (*own).max(seq);
        }
        if seq > head.saturating_add(1) {
            // A transaction of this origin went missing: ask the forwarder what it has.
            self.ask_heads(via).await;
        }
        acceptance
    }

    // ---- events ----

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.end_idle_catch_ups();
        if self.recovery.state() == RecoveryState::Recovering
            && !self.pulls.contains_key(&self.shared.node_id)
        {
            // The pull of our own origin was abandoned: the next heads reply starts over
            // (or, after too many, our numbers are issued again without the lost ones).
            let step = self.recovery.on_pull_end(false);
            self.recovery_step(None, step).await;
        }
        self.partial.expire(now);
        self.strikes.expire(now);
        let expired: Vec<PeerId> = self
            .status()
            .peers
            .iter_mut()
            .filter(|(_, state)| state.banned_until.is_some_and(|until| until <= now))
            .map(|(peer, state)| {
                state.banned_until = None;
                *peer
            })
            .collect();
        for peer in expired {
            self.command(Command::Unban(peer)).await;
        }
        self.ask_connected_for_heads().await;
    }

    /// Asks every connected peer, members and candidates, for its heads.
    async fn ask_connected_for_heads(&mut self) {
        let mut connected: Vec<PeerId> = self
            .status()
            .peers
            .iter()
            .filter(|(_, state)| state.connected)
            .map(|(peer, _)| *peer)
            .collect();
        connected.extend(self.candidates.iter().copied());
        for peer in connected {
            self.ask_heads(peer).await;
        }
    }

    async fn on_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connected(peer) => {
                // Counted (again) once it shows it speaks our group's protocol.
                self.candidates.insert(peer);
                self.ask_heads(peer).await;
            }
            NetEvent::Disconnected(peer) => {
                self.candidates.remove(&peer);
                {
                    let mut status = self.status();
                    status.disconnected(&peer);
                    forget_departed(&mut status.peers);
                }
                self.pulls.retain(|_, pull| pull.peer != peer);
            }
            NetEvent::Gossip {
                author,
                via,
                message_id,
                data,
            } => {
                let acceptance = self.on_gossip(author, via, data).await;
                self.command(Command::Validate {
                    message_id,
                    via,
                    acceptance,
                })
                .await;
            }
            NetEvent::Request { peer, id, request } => {
                // Only a peer of our group can reach our group's protocol.
                self.prove(peer);
                self.serve(peer, id, request).await;
            }
            NetEvent::Response {
                peer,
                token,
                response,
            } => self.on_response(peer, token, response).await,
            NetEvent::RequestFailed {
                peer,
                token,
                outsider,
            } => {
                tracing::debug!(%peer, token, outsider, "catch-up request failed");
                if outsider && self.candidates.remove(&peer) {
                    tracing::debug!(%peer, "a peer of another group (or version): disconnecting");
                    self.command(Command::Disconnect(peer)).await;
                }
                if let Some(Pending::Pull { origin }) = self.pending.remove(&token)
                    && self
                        .pulls
                        .get(&origin)
                        .is_some_and(|pull| pull.token == token)
                {
                    self.pulls.remove(&origin);
                }
            }
        }
    }
}
