//! The sync driver: the protocol between this node's database and its peers.
//!
//! Owns live publishing (one gossip message per committed transaction, split into parts
//! when large), live receiving (validate the author, skip what is applied, apply, notice
//! gaps), catch-up (heads on connect and periodically, then bounded pages of what is
//! missing, whole transactions applied atomically, the head advanced only after the data
//! is durably applied) and serving peers' catch-up requests from the log. It talks to the
//! swarm only through [`Command`]s and [`NetEvent`]s; it never holds the `Swarm`.

use super::{Command, NetEvent, NetworkConfig, NetworkStatus};
use crate::clock::NodeId;
use crate::connection::Shared;
use crate::log::{self, PageLimit};
use crate::protocol::catchup::{self, Need};
use crate::protocol::codec::{decode_gossip, encode_gossip};
use crate::protocol::{
    ChangeSet, Gossip, GossipV1, Request, RequestV1, Response, ResponseV1, SyncOperation,
};
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many transactions may be half-received (some parts missing) at once.
const MAX_PARTIAL_SETS: usize = 64;
/// How long the parts of a transaction may take to arrive before catch-up takes over.
const PARTIAL_SET_TIMEOUT: Duration = Duration::from_secs(60);
/// A peer that sends this many invalid messages within [`STRIKE_WINDOW`] is banned.
const STRIKES_TO_BAN: usize = 10;
const STRIKE_WINDOW: Duration = Duration::from_secs(60);
/// How long a banned peer is refused.
const BAN_DURATION: Duration = Duration::from_secs(300);

enum Pending {
    Heads,
    Pull { origin: NodeId },
}

/// A catch-up pull of one origin's range from one peer.
struct Pull {
    peer: PeerId,
    after: u64,
    through: u64,
    /// Operations of a transaction whose last page has not arrived yet.
    carry: Vec<(u64, SyncOperation)>,
    /// The request whose answer is the next page; any other answer is stale.
    token: u64,
}

struct PartialSet {
    started: Instant,
    parts: Vec<Option<Vec<SyncOperation>>>,
}

pub(crate) struct Driver {
    shared: Arc<Shared>,
    config: NetworkConfig,
    commands: async_channel::Sender<Command>,
    events: async_channel::Receiver<NetEvent>,
    outbox: Option<async_channel::Receiver<ChangeSet>>,
    status: Arc<Mutex<NetworkStatus>>,
    stop: async_channel::Receiver<()>,
    next_token: u64,
    pending: HashMap<u64, Pending>,
    pulls: HashMap<NodeId, Pull>,
    partial: HashMap<(NodeId, u64), PartialSet>,
    /// Recent invalid messages per peer.
    strikes: HashMap<PeerId, Vec<Instant>>,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: NetworkConfig,
        commands: async_channel::Sender<Command>,
        events: async_channel::Receiver<NetEvent>,
        outbox: async_channel::Receiver<ChangeSet>,
        status: Arc<Mutex<NetworkStatus>>,
        stop: async_channel::Receiver<()>,
    ) -> Driver {
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
            partial: HashMap::new(),
            strikes: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(self.config.heads_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let outbox = self.outbox.clone();
            let next_local = async {
                match &outbox {
                    Some(outbox) => outbox.recv().await.ok(),
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
                _ = tick.tick() => self.on_tick().await,
                _ = self.stop.recv() => break,
            }
        }
        tracing::debug!("sync driver stopped");
    }

    async fn command(&self, command: Command) {
        // Fails only when the event loop has stopped, and then so do we.
        let _ = self.commands.send(command).await;
    }

    fn token(&mut self, pending: Pending) -> u64 {
        self.next_token += 1;
        self.pending.insert(self.next_token, pending);
        self.next_token
    }

    fn status(&self) -> std::sync::MutexGuard<'_, NetworkStatus> {
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

    /// Counts an invalid message against `peer` under `reason`; bans it after too many.
    async fn strike(&mut self, peer: PeerId, reason: &'static str) {
        self.shared.metrics.rejected(reason);
        self.strike_without_metric(peer).await;
    }

    /// Like [`Driver::strike`], for a rejection already counted by reason.
    async fn strike_without_metric(&mut self, peer: PeerId) {
        let now = Instant::now();
        let strikes = self.strikes.entry(peer).or_default();
        strikes.retain(|at| now.duration_since(*at) < STRIKE_WINDOW);
        strikes.push(now);
        let ban = strikes.len() >= STRIKES_TO_BAN;
        {
            let mut status = self.status();
            let state = status.peers.entry(peer).or_default();
            state.rejected += 1;
            if ban {
                state.banned_until = Some(now + BAN_DURATION);
            }
        }
        if ban {
            self.strikes.remove(&peer);
            self.pulls.retain(|_, pull| pull.peer != peer);
            self.command(Command::Ban(peer)).await;
        }
    }

    /// Validates and applies one gossip message; says whether gossipsub may forward it.
    async fn on_gossip(
        &mut self,
        author: Option<PeerId>,
        via: PeerId,
        data: Vec<u8>,
    ) -> MessageAcceptance {
        self.shared.metrics.gossip_received(data.len());
        let message = match decode_gossip(&data, self.config.max_message_bytes) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(%via, %err, "rejected a malformed gossip message");
                self.strike(via, "malformed").await;
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
                match self.add_part(origin, seq, index, count, operations) {
                    Ok(Some(change_set)) => change_set,
                    // A well-formed part travels on; the whole is checked when complete.
                    Ok(None) => return MessageAcceptance::Accept,
                    Err(()) => {
                        self.strike(via, "malformed").await;
                        return MessageAcceptance::Reject;
                    }
                }
            }
        };
        // Live changes are signed by their author; a peer cannot pass off its writes as
        // another node's (relayed history comes through catch-up instead).
        if author.is_none_or(|author| {
            NodeId::from_peer_id_bytes(&author.to_bytes()) != change_set.origin
        }) {
            tracing::warn!(
                ?author,
                "rejected a change set whose origin is not its signed author"
            );
            self.strike(via, "forged_origin").await;
            return MessageAcceptance::Reject;
        }
        let head = match log::head(&self.shared.conn, change_set.origin).await {
            Ok(head) => head,
            Err(err) => {
                tracing::warn!(%err, "reading heads");
                return MessageAcceptance::Ignore;
            }
        };
        if change_set.seq <= head {
            // Applied already: a duplicate or a replay changes nothing, and goes no further.
            return MessageAcceptance::Ignore;
        }
        let gap = change_set.seq > head + 1;
        let (origin, seq) = (change_set.origin, change_set.seq);
        let acceptance = match crate::apply::apply_remote(&self.shared, change_set).await {
            Ok(_) => MessageAcceptance::Accept,
            Err(crate::Error::Rejected(reason)) => {
                tracing::warn!(%origin, seq, %via, %reason, "rejected a live change set");
                // Counted by reason in `apply_remote`; here it counts against the peer.
                self.strike_without_metric(via).await;
                return MessageAcceptance::Reject;
            }
            Err(err) => {
                tracing::warn!(%origin, seq, %err, "could not apply a live change set");
                MessageAcceptance::Ignore
            }
        };
        if gap {
            // A transaction of this origin went missing: ask the forwarder what it has.
            self.ask_heads(via).await;
        }
        acceptance
    }

    fn add_part(
        &mut self,
        origin: NodeId,
        seq: u64,
        index: u32,
        count: u32,
        operations: Vec<SyncOperation>,
    ) -> Result<Option<ChangeSet>, ()> {
        let count_usize = usize::try_from(count).map_err(drop)?;
        if index >= count || count_usize > 1 << 16 {
            return Err(());
        }
        if !self.partial.contains_key(&(origin, seq)) && self.partial.len() >= MAX_PARTIAL_SETS {
            // Evict the oldest; catch-up will bring that transaction whole.
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.partial.remove(&oldest);
            }
        }
        let entry = self
            .partial
            .entry((origin, seq))
            .or_insert_with(|| PartialSet {
                started: Instant::now(),
                parts: vec![None; count_usize],
            });
        if entry.parts.len() != count_usize {
            return Err(());
        }
        entry.parts[usize::try_from(index).map_err(drop)?] = Some(operations);
        if entry.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let Some(partial) = self.partial.remove(&(origin, seq)) else {
            return Ok(None);
        };
        Ok(Some(ChangeSet {
            origin,
            seq,
            operations: partial.parts.into_iter().flatten().flatten().collect(),
        }))
    }

    // ---- catch-up: asking ----

    async fn ask_heads(&mut self, peer: PeerId) {
        let token = self.token(Pending::Heads);
        self.command(Command::Request {
            peer,
            token,
            request: Request::V1(RequestV1::Heads),
        })
        .await;
    }

    async fn on_tick(&mut self) {
        self.partial
            .retain(|_, p| p.started.elapsed() < PARTIAL_SET_TIMEOUT);
        let now = Instant::now();
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
        let connected: Vec<PeerId> = self
            .status()
            .peers
            .iter()
            .filter(|(_, state)| state.connected)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in connected {
            self.ask_heads(peer).await;
        }
    }

    async fn on_heads(&mut self, peer: PeerId, heads: Vec<(NodeId, u64)>) {
        self.status().peers.entry(peer).or_default().heads = heads.clone();
        let ours: HashMap<NodeId, u64> = match log::heads(&self.shared.conn).await {
            Ok(ours) => ours.into_iter().collect(),
            Err(err) => {
                tracing::warn!(%err, "reading heads");
                return;
            }
        };
        for need in catchup::needs(&ours, &heads, self.shared.node_id) {
            if !self.pulls.contains_key(&need.origin) {
                self.start_pull(peer, need).await;
            }
        }
    }

    async fn start_pull(&mut self, peer: PeerId, need: Need) {
        tracing::debug!(%peer, origin = %need.origin, after = need.after, through = need.through, "catching up");
        let token = self.token(Pending::Pull {
            origin: need.origin,
        });
        self.pulls.insert(
            need.origin,
            Pull {
                peer,
                after: need.after,
                through: need.through,
                carry: Vec::new(),
                token,
            },
        );
        let request = Request::V1(RequestV1::Pull {
            origin: need.origin,
            after: need.after,
            through: need.through,
            cursor: None,
        });
        self.command(Command::Request {
            peer,
            token,
            request,
        })
        .await;
    }

    async fn on_page(
        &mut self,
        peer: PeerId,
        token: u64,
        origin: NodeId,
        operations: Vec<(u64, SyncOperation)>,
        next: Option<crate::protocol::Cursor>,
    ) {
        let Some(pull) = self.pulls.get_mut(&origin) else {
            return;
        };
        if pull.peer != peer || pull.token != token {
            // An answer to an abandoned pull.
            return;
        }
        self.shared.metrics.catch_up_page(operations.len() as u64);
        let sets = catchup::assemble(origin, &mut pull.carry, operations, next.is_none());
        let (after, through) = (pull.after, pull.through);
        if let Some(cursor) = next.clone() {
            // Ask for the next page before applying this one: the peer reads it from its
            // log while we write.
            let token = self.token(Pending::Pull { origin });
            if let Some(pull) = self.pulls.get_mut(&origin) {
                pull.token = token;
            }
            let request = Request::V1(RequestV1::Pull {
                origin,
                after,
                through,
                cursor: Some(cursor),
            });
            self.command(Command::Request {
                peer,
                token,
                request,
            })
            .await;
        }
        // The page's transactions commit together: one database transaction per page.
        if !sets.is_empty()
            && let Err(err) = crate::apply::apply_remote_batch(&self.shared, sets).await
        {
            tracing::warn!(%origin, %peer, %err, "catch-up stopped: a page could not be applied");
            self.pulls.remove(&origin);
            if matches!(err, crate::Error::Rejected(_)) {
                self.strike_without_metric(peer).await;
            }
            return;
        }
        if next.is_none() {
            self.pulls.remove(&origin);
            // Everything up to `through` is durably applied now (transactions whose
            // entries were all superseded leave nothing to send): count it as seen.
            let advanced = async {
                let head = log::head(&self.shared.conn, origin).await?;
                if through > head {
                    log::set_head(&self.shared.conn, origin, through).await?;
                }
                Ok::<_, sea_orm::DbErr>(())
            };
            if let Err(err) = advanced.await {
                tracing::warn!(%err, "recording catch-up progress");
            }
            tracing::debug!(%peer, %origin, through, "caught up");
        }
    }

    // ---- catch-up: serving ----

    async fn serve(&mut self, peer: PeerId, id: u64, request: Request) {
        let conn = &self.shared.conn;
        let response = match request {
            Request::V1(RequestV1::Heads) => log::heads(conn)
                .await
                .map(|heads| Response::V1(ResponseV1::Heads(heads))),
            Request::V1(RequestV1::Pull {
                origin,
                after,
                through,
                cursor,
            }) => {
                let limit = PageLimit {
                    entries: self.config.page_entries,
                    bytes: self.config.page_bytes,
                };
                let shared = Arc::clone(&self.shared);
                let synced = move |table: &str| shared.synced_table(table);
                log::page(
                    conn,
                    &synced,
                    origin,
                    after,
                    through,
                    cursor.as_ref(),
                    limit,
                )
                .await
                .map(|(operations, next)| {
                    self.shared.metrics.catch_up_served(operations.len() as u64);
                    Response::V1(ResponseV1::Page { operations, next })
                })
            }
        };
        let response = response.unwrap_or_else(|err| {
            tracing::warn!(%peer, %err, "cannot serve a catch-up request");
            Response::V1(ResponseV1::Unavailable)
        });
        self.command(Command::Respond { id, response }).await;
    }

    // ---- events ----

    async fn on_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connected(peer) => {
                self.status().peers.entry(peer).or_default().connected = true;
                self.ask_heads(peer).await;
            }
            NetEvent::Disconnected(peer) => {
                self.status().peers.entry(peer).or_default().connected = false;
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
            NetEvent::Request { peer, id, request } => self.serve(peer, id, request).await,
            NetEvent::Response {
                peer,
                token,
                response,
            } => match (self.pending.remove(&token), response) {
                (Some(Pending::Heads), Response::V1(ResponseV1::Heads(heads))) => {
                    self.on_heads(peer, heads).await
                }
                (
                    Some(Pending::Pull { origin }),
                    Response::V1(ResponseV1::Page { operations, next }),
                ) => {
                    self.on_page(peer, token, origin, operations, next).await;
                }
                (Some(Pending::Pull { origin }), _)
                    if self
                        .pulls
                        .get(&origin)
                        .is_some_and(|pull| pull.token == token) =>
                {
                    // The peer could not serve the pull: another peer's heads restart it.
                    self.pulls.remove(&origin);
                }
                _ => {}
            },
            NetEvent::RequestFailed { peer, token } => {
                tracing::debug!(%peer, token, "catch-up request failed");
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
