//! The network engine: one background thread that owns the libp2p swarm, and the sync
//! driver that connects it to the database.
//!
//! libp2p is tokio-only, the application is not: the engine runs on a dedicated thread
//! with a current-thread tokio runtime, and talks to the rest of the crate only through
//! bounded `async-channel`s. On that runtime run two tasks:
//! - the event loop ([`event_loop`]), the only owner of the `Swarm`: it turns swarm events
//!   into [`NetEvent`]s and [`Command`]s into swarm calls, and nothing else;
//! - the driver ([`driver`]), the sync protocol: it publishes committed change sets,
//!   applies received ones, exchanges heads and pulls what is missing, and serves peers'
//!   pulls from the log.
//!
//! Beyond the LAN, the event loop also keeps this node on its relay servers
//! ([`discovery`]): a circuit reservation, a rendezvous registration under the group's
//! namespace, and dials to the members it discovers there; libp2p's DCUtR then upgrades
//! relayed connections to direct ones where both NATs let a hole be punched.
//!
//! Every channel is bounded: a slow database slows the event loop, which stops reading
//! from peers (back-pressure); nothing is dropped on our side. Dropping the last
//! `WaveSyncDb` handle, or `shutdown()`, stops both tasks and the thread.

pub(crate) mod behaviour;
mod bootstrap;
mod discovery;
mod driver;
mod event_loop;
mod failures;
mod links;
mod pull;
mod telemetry;
pub(crate) mod transport;

use crate::clock::NodeId;
use crate::error::Error;
use crate::events::{ConnectionKind, EventBus, SyncEvent};
use crate::protocol::{Request, Response};
use crate::replica::Shared;
pub(crate) use discovery::check_relay_addresses;
use libp2p::{Multiaddr, PeerId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Capacity of the channels between the event loop and the driver.
const CHANNEL_CAPACITY: usize = 1024;

/// Network settings, from [`crate::WaveSyncDbBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct NetworkConfig {
    pub topic: String,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    /// Relay and rendezvous servers, each address ending in `/p2p/<server id>`.
    pub relays: Vec<Multiaddr>,
    /// How often the members registered on the relays are looked up again.
    pub discovery_interval: Duration,
    pub mdns: bool,
    pub heads_interval: Duration,
    pub max_message_bytes: usize,
    pub page_entries: u64,
    pub page_bytes: usize,
    pub request_timeout: Duration,
    pub secret: Option<crate::secret::GroupSecret>,
}

impl NetworkConfig {
    pub(crate) fn new(topic: String) -> NetworkConfig {
        NetworkConfig {
            topic,
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .expect("valid multiaddr literal"),
            ],
            bootstrap: Vec::new(),
            relays: Vec::new(),
            discovery_interval: Duration::from_secs(10),
            mdns: true,
            heads_interval: Duration::from_secs(5),
            max_message_bytes: 1 << 20,
            page_entries: 5_000,
            page_bytes: 4 << 20,
            request_timeout: Duration::from_secs(30),
            secret: None,
        }
    }
}

/// From the driver to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish on the group topic.
    Publish(Vec<u8>),
    /// Send a catch-up request; the answer comes back with the same token.
    Request {
        peer: PeerId,
        token: u64,
        request: Request,
    },
    /// Answer the inbound request `id`.
    Respond { id: u64, response: Response },
    /// Connect to an address.
    Dial(Multiaddr),
    /// Tell gossipsub whether to forward a received message (and whom to blame).
    Validate {
        message_id: libp2p::gossipsub::MessageId,
        via: PeerId,
        acceptance: libp2p::gossipsub::MessageAcceptance,
    },
    /// Disconnect a peer and refuse it until [`Command::Unban`].
    Ban(PeerId),
    /// Accept a banned peer again.
    Unban(PeerId),
    /// Close every connection to a peer that is not of our group.
    Disconnect(PeerId),
}

/// From the event loop to the driver.
#[derive(Debug)]
pub(crate) enum NetEvent {
    Connected(PeerId),
    Disconnected(PeerId),
    /// A gossip message; `author` is the signed source, `via` the peer that forwarded it.
    Gossip {
        author: Option<PeerId>,
        via: PeerId,
        message_id: libp2p::gossipsub::MessageId,
        data: Vec<u8>,
    },
    /// An inbound catch-up request to answer with [`Command::Respond`].
    Request {
        peer: PeerId,
        id: u64,
        request: Request,
    },
    /// The answer to our request `token`.
    Response {
        peer: PeerId,
        token: u64,
        response: Response,
    },
    /// Our request `token` failed (timeout, disconnect, refused protocol).
    RequestFailed {
        peer: PeerId,
        token: u64,
        /// The peer does not speak our group's catch-up protocol.
        outsider: bool,
    },
}

/// What one peer of our group has told us (only peers that proved they are of our
/// group are listed in [`NetworkStatus::peers`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerState {
    pub connected: bool,
    pub heads: Vec<(NodeId, u64)>,
    /// Invalid messages received from this peer.
    pub rejected: u64,
    /// Refused until then, after too many invalid messages.
    pub banned_until: Option<std::time::Instant>,
    /// The catch-up from this peer now running: (done, total).
    pub catch_up: Option<(u64, u64)>,
    /// Why the last connection to or from it failed, cleared when it connects.
    pub last_error: Option<String>,
    /// Whether its last heads reply was final: it held none of its own numbers back.
    pub settled: bool,
    /// Whether `heads` came in the current connection (cleared when it disconnects: the
    /// peer may come back restored from a backup, with less).
    pub fresh: bool,
}

/// What the engine knows, for `peers()` and `sync_status()`.
#[derive(Debug, Default)]
pub(crate) struct NetworkStatus {
    pub listening: Vec<Multiaddr>,
    /// The peers of our group, connected or not.
    pub peers: BTreeMap<PeerId, PeerState>,
    /// How each connected peer is reached (any peer, member or not; kept by the event
    /// loop): direct as soon as one direct connection is open.
    pub links: BTreeMap<PeerId, ConnectionKind>,
    /// Where connection and catch-up events go ([`crate::WaveSyncDb::sync_events`]).
    pub events: EventBus,
    /// This node's heads as the driver last read them (at the last heads reply): what
    /// `peers()` counts `behind` against without reading the database.
    pub own_heads: HashMap<NodeId, u64>,
    /// The most recent failed connections (`failures::RECENT_FAILURES`).
    pub failures: std::collections::VecDeque<crate::status::ConnectionFailure>,
    /// libp2p's metrics, for the event loop to record into (feature `prometheus`).
    pub telemetry: telemetry::Telemetry,
    /// Whether this node's own numbering is confirmed (`protocol::recovery`): until then
    /// a peer's claim about our origin may be an earlier life's transactions.
    pub own_confirmed: bool,
    /// When an incoming connection failure was last recorded (at most one a second: an
    /// outsider can fail handshakes at will).
    pub last_incoming_failure: Option<std::time::Instant>,
}

impl NetworkStatus {
    /// Every peer of our group as the app sees it; `behind` counts against this node's
    /// heads as the driver last read them (`me` is this node, whose own transactions it
    /// never lacks).
    pub(crate) fn peer_infos(&self, me: NodeId) -> Vec<crate::status::PeerInfo> {
        self.peers
            .iter()
            .map(|(peer_id, state)| crate::status::PeerInfo {
                peer_id: *peer_id,
                node_id: NodeId::from_peer_id_bytes(&peer_id.to_bytes()),
                connected: state.connected,
                heads: state.heads.clone(),
                behind: crate::protocol::catchup::behind(&self.own_heads, &state.heads, me),
                rejected_messages: state.rejected,
                banned: state.banned_until.is_some(),
                connection: if state.connected {
                    self.link(peer_id)
                } else {
                    None
                },
                catch_up: state
                    .catch_up
                    .map(|(done, total)| crate::status::CatchUpProgress { done, total }),
                last_error: state.last_error.clone(),
            })
            .collect()
    }

    /// How `peer` is connected now, if it is.
    pub(crate) fn link(&self, peer: &PeerId) -> Option<ConnectionKind> {
        self.links.get(peer).copied()
    }

    /// `peer`'s last connection closed: what it said is no longer current.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.connected = false;
            state.fresh = false;
        }
    }

    /// Records a failed connection: kept among the recent ones, on the peer if it is
    /// of our group, logged, and told to subscribers.
    pub(crate) fn connection_failed(&mut self, failure: crate::status::ConnectionFailure) {
        if failure.incoming {
            let now = std::time::Instant::now();
            if self
                .last_incoming_failure
                .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1))
            {
                tracing::debug!(%failure, "connection failed (not recorded: too many)");
                return;
            }
            self.last_incoming_failure = Some(now);
        }
        tracing::info!(%failure, "connection failed");
        if let Some(state) = failure.peer.and_then(|peer| self.peers.get_mut(&peer)) {
            state.last_error = Some(failure.reason.clone());
        }
        self.events
            .publish(SyncEvent::ConnectionFailed(failure.clone()));
        failures::remember(&mut self.failures, failure);
    }

    /// Records what `peer` says it has applied and tells subscribers
    /// ([`SyncEvent::HeadsUpdated`]). For the heads code (pull.rs `on_heads`), in place of
    /// writing `peers[peer].heads` directly.
    /// `settled`: the peer holds none of its own numbers back (its reply carried its
    /// signed statement), so its heads are final as of now.
    pub(crate) fn record_heads(&mut self, peer: PeerId, heads: Vec<(NodeId, u64)>, settled: bool) {
        let state = self.peers.entry(peer).or_default();
        state.heads = heads;
        state.settled = settled;
        state.fresh = true;
        self.events.publish(SyncEvent::HeadsUpdated { peer });
    }

    /// A catch-up of `total` transactions from `peer` starts. Called by the pull code.
    pub(crate) fn catch_up_started(&mut self, peer: PeerId, total: u64) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.catch_up = Some((0, total));
        }
        self.events
            .publish(SyncEvent::CatchUpStarted { peer, total });
    }

    /// `done` of `total` transactions from `peer` are applied. Called by the pull code
    /// after each applied page; never waits.
    pub(crate) fn catch_up_progress(&mut self, peer: PeerId, done: u64, total: u64) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.catch_up = Some((done, total));
        }
        self.events
            .publish(SyncEvent::CatchUpProgress { peer, done, total });
    }

    /// The catch-up from `peer` ended (complete, failed, or the peer left) after `done`
    /// transactions. Called by the pull code.
    pub(crate) fn catch_up_finished(&mut self, peer: PeerId, done: u64) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.catch_up = None;
        }
        self.events
            .publish(SyncEvent::CatchUpFinished { peer, done });
    }
}

/// The running engine. Dropping it stops the engine.
pub(crate) struct EngineHandle {
    pub peer_id: PeerId,
    pub status: Arc<Mutex<NetworkStatus>>,
    /// The sync events' bus (also in the status, for the driver).
    pub events: EventBus,
    /// Asks the driver for a round of heads requests (one slot: requests coalesce).
    refresh: async_channel::Sender<()>,
    /// libp2p's metrics (feature `prometheus`; empty without it).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub telemetry: telemetry::Telemetry,
    commands: async_channel::Sender<Command>,
    stop: async_channel::Sender<()>,
    stopped: async_channel::Receiver<()>,
}

impl EngineHandle {
    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, NetworkStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the driver to ask every connected peer of the group for its heads soon (at
    /// most one round per [`driver::REFRESH_SPACING`]); answers arrive as
    /// [`SyncEvent::HeadsUpdated`]. Never waits: a request already pending covers this one.
    pub(crate) fn refresh_heads(&self) {
        let _ = self.refresh.try_send(());
    }

    /// Asks the engine to connect to `address`.
    pub(crate) async fn dial(&self, address: Multiaddr) -> Result<(), Error> {
        self.commands
            .send(Command::Dial(address))
            .await
            .map_err(|_| stopped_error())
    }

    /// Publishes raw bytes on the group topic (for tests of hostile input).
    pub(crate) async fn publish_raw(&self, bytes: Vec<u8>) -> Result<(), Error> {
        self.commands
            .send(Command::Publish(bytes))
            .await
            .map_err(|_| stopped_error())
    }

    /// Stops the engine and waits until its thread has finished.
    pub(crate) async fn shutdown(&self) {
        self.stop.close();
        // Closed (never sent on) when the engine thread ends.
        let _ = self.stopped.recv().await;
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop.close();
    }
}

fn stopped_error() -> Error {
    Error::EngineStopped
}

/// Starts the engine thread and waits until it listens on every configured address.
pub(crate) async fn start(
    shared: Arc<Shared>,
    keypair: libp2p::identity::Keypair,
    config: NetworkConfig,
) -> Result<EngineHandle, Error> {
    let peer_id = keypair.public().to_peer_id();
    let (commands_tx, commands_rx) = async_channel::bounded(CHANNEL_CAPACITY);
    let (events_tx, events_rx) = async_channel::bounded(CHANNEL_CAPACITY);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let (stopped_tx, stopped_rx) = async_channel::bounded::<()>(1);
    let (ready_tx, ready_rx) = async_channel::bounded::<Result<(), Error>>(1);
    let (refresh_tx, refresh_rx) = async_channel::bounded::<()>(1);
    let events = EventBus::default();
    let status = Arc::new(Mutex::new(NetworkStatus {
        events: events.clone(),
        ..NetworkStatus::default()
    }));
    let closing = events.clone();
    let outbox = shared.open_outbox();
    let driver = driver::Driver::new(
        keypair.clone(),
        Arc::clone(&shared),
        config.clone(),
        commands_tx.clone(),
        events_rx,
        outbox,
        Arc::clone(&status),
        stop_rx.clone(),
        refresh_rx,
    );
    match &config.secret {
        Some(secret) => {
            tracing::info!(fingerprint = %secret.fingerprint(), "private group: only peers with the group secret can connect")
        }
        None => tracing::warn!(
            topic = %config.topic,
            "open group: any peer that knows the topic can read and write the synced tables; \
             set a group secret (WaveSyncDbBuilder::group_secret) to make the group private"
        ),
    }
    let telemetry = status
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .telemetry
        .clone();
    let loop_status = Arc::clone(&status);
    let received_bytes = shared.metrics.bytes_received_counter();
    let span = tracing::info_span!("wavesync_engine", %peer_id, node_id = %shared.node_id);
    std::thread::Builder::new()
        .name("wavesync-engine".into())
        .spawn(move || {
            // Dropped when the thread ends, which closes the channel `shutdown` waits on,
            // and ends every sync-event subscription.
            let _stopped = stopped_tx;
            let _closing = CloseOnDrop(closing);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready_tx.try_send(Err(Error::EngineStart {
                        reason: format!("starting its tokio runtime: {err}"),
                    }));
                    return;
                }
            };
            runtime.block_on(tracing::Instrument::instrument(
                async move {
                    let event_loop = match event_loop::EventLoop::start(
                        keypair,
                        &config,
                        commands_rx,
                        events_tx,
                        stop_rx,
                        loop_status,
                        received_bytes,
                    )
                    .await
                    {
                        Ok(event_loop) => event_loop,
                        Err(err) => {
                            let _ = ready_tx.try_send(Err(err));
                            return;
                        }
                    };
                    let _ = ready_tx.try_send(Ok(()));
                    futures::join!(event_loop.run(), driver.run());
                },
                span,
            ));
            tracing::debug!("network engine stopped");
        })
        .map_err(|err| Error::EngineStart {
            reason: format!("spawning its thread: {err}"),
        })?;
    match ready_rx.recv().await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err),
        Err(_) => return Err(stopped_error()),
    }
    tracing::info!(%peer_id, listening = %listening(&status), "network engine started");
    Ok(EngineHandle {
        peer_id,
        status,
        events,
        refresh: refresh_tx,
        telemetry,
        commands: commands_tx,
        stop: stop_tx,
        stopped: stopped_rx,
    })
}

/// Closes the event bus when the engine thread ends, however it ends.
struct CloseOnDrop(EventBus);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn listening(status: &Mutex<NetworkStatus>) -> String {
    let status = status.lock().unwrap_or_else(PoisonError::into_inner);
    status
        .listening
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_hooks_keep_progress_in_the_status_and_tell_subscribers() {
        let mut status = NetworkStatus::default();
        let mut events = status.events.subscribe();
        let peer = PeerId::random();
        status.record_heads(
            peer,
            vec![(NodeId::from_peer_id_bytes(&peer.to_bytes()), 7)],
            true,
        );
        status.catch_up_started(peer, 7);
        status.catch_up_progress(peer, 5, 7);
        assert_eq!(status.peers[&peer].catch_up, Some((5, 7)));
        status.catch_up_finished(peer, 7);
        assert_eq!(status.peers[&peer].catch_up, None);
        let seen: Vec<SyncEvent> = std::iter::from_fn(|| events.try_recv())
            .map(|e| e.expect("no lag"))
            .collect();
        assert_eq!(
            seen,
            [
                SyncEvent::HeadsUpdated { peer },
                SyncEvent::CatchUpStarted { peer, total: 7 },
                SyncEvent::CatchUpProgress {
                    peer,
                    done: 5,
                    total: 7
                },
                SyncEvent::CatchUpFinished { peer, done: 7 },
            ]
        );
    }
}
