//! The event loop: the one and only owner of the libp2p `Swarm`.
//!
//! It turns swarm events into [`NetEvent`]s for the driver and the driver's [`Command`]s
//! into swarm calls, and keeps the bookkeeping that needs the swarm (request ids, response
//! channels); it drives [`Relays`] (reservations, rendezvous, redials) and [`Links`] (how
//! each peer is connected, and new circuits for another hole punch while a peer is only
//! relayed). It publishes connection [`SyncEvent`]s (never waiting on a subscriber). It
//! makes no sync decision and never touches the database. While the driver is behind,
//! sending it an event waits, so the swarm is not polled and peers are slowed down by the
//! transport instead of us dropping their messages.
//!
//! A peer counts as connected for [`SyncEvent::PeerConnected`] on the same evidence the
//! driver uses for group membership (it sent us gossip on the group topic, a catch-up
//! request, or answered ours): relay servers and peers of other groups are never
//! announced. A relay server that does not speak the group's protocol is not
//! disconnected when the driver asks (it carries our circuits).

use super::behaviour::{Behaviour, BehaviourEvent, gossip_topic};
use super::bootstrap::Bootstrap;
use super::discovery::Relays;
use super::links::Links;
use super::{Command, NetEvent, NetworkConfig, NetworkStatus};
use crate::error::Error;
use crate::events::{ConnectionKind, EventBus, Reachability, SyncEvent};
use futures::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{PeerId, Swarm, autonat, dcutr, gossipsub, mdns, relay, request_response};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often relay reservations, registrations and lookups are checked.
const RELAY_TICK: Duration = Duration::from_millis(500);

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    commands: async_channel::Receiver<Command>,
    events: async_channel::Sender<NetEvent>,
    stop: async_channel::Receiver<()>,
    status: Arc<Mutex<NetworkStatus>>,
    /// Our outbound requests: libp2p's id to the driver's token.
    outbound: HashMap<request_response::OutboundRequestId, u64>,
    /// Inbound requests waiting for the driver's answer.
    inbound: HashMap<u64, request_response::ResponseChannel<crate::protocol::Response>>,
    next_inbound: u64,
    relays: Relays,
    /// Every open connection, per peer, how it travels, and hole-punch retries.
    links: Links,
    /// Peers announced as connected members ([`SyncEvent::PeerConnected`]).
    announced: HashSet<PeerId>,
    events_bus: EventBus,
    /// Whether the group is private (a group secret): how a failed handshake is worded.
    private: bool,
    /// Where swarm events are counted (feature `prometheus`).
    telemetry: super::telemetry::Telemetry,
    /// The bootstrap addresses, redialled while not connected.
    bootstrap: Bootstrap,
}

impl EventLoop {
    /// Builds the swarm, subscribes to the topic, listens and dials the bootstrap peers;
    /// returns once every listener reported its address.
    pub(crate) async fn start(
        keypair: libp2p::identity::Keypair,
        config: &NetworkConfig,
        commands: async_channel::Receiver<Command>,
        events: async_channel::Sender<NetEvent>,
        stop: async_channel::Receiver<()>,
        status: Arc<Mutex<NetworkStatus>>,
        received_bytes: Arc<AtomicU64>,
    ) -> Result<EventLoop, Error> {
        let mut swarm = super::transport::build_swarm(keypair, config, received_bytes)
            .map_err(|reason| Error::EngineStart { reason })?;
        let topic = gossip_topic(&config.topic, config.secret.as_ref());
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| Error::EngineStart {
                reason: format!("subscribing to the topic: {e}"),
            })?;
        let mut pending = HashMap::new();
        for address in &config.listen {
            let id = swarm
                .listen_on(address.clone())
                .map_err(|e| super::failures::listen_error(address, e))?;
            pending.insert(id, address.clone());
        }
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !pending.is_empty() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        pending.remove(&listener_id);
                        status.lock().unwrap_or_else(PoisonError::into_inner).listening.push(address);
                    }
                    SwarmEvent::ListenerClosed { listener_id, reason: Err(source), .. }
                    | SwarmEvent::ListenerError { listener_id, error: source } => {
                        if let Some(address) = pending.remove(&listener_id) {
                            return Err(Error::Listen { address, source });
                        }
                    }
                    _ => {}
                },
                _ = &mut deadline => {
                    let addresses: Vec<String> = pending.values().map(ToString::to_string).collect();
                    return Err(Error::EngineStart {
                        reason: format!("no listen address after 10 s for {}", addresses.join(", ")),
                    });
                }
            }
        }
        let bootstrap = Bootstrap::new(&config.bootstrap, Instant::now());
        let (events_bus, telemetry) = {
            let status = status.lock().unwrap_or_else(PoisonError::into_inner);
            (status.events.clone(), status.telemetry.clone())
        };
        let mut relays = Relays::new(config, events_bus.clone(), Instant::now());
        relays.on_tick(&mut swarm, Instant::now());
        let me = *swarm.local_peer_id();
        let mut event_loop = EventLoop {
            swarm,
            topic,
            commands,
            events,
            stop,
            status,
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            relays,
            links: Links::new(me),
            announced: HashSet::new(),
            events_bus,
            private: config.secret.is_some(),
            telemetry,
            bootstrap,
        };
        event_loop.dial_bootstrap();
        Ok(event_loop)
    }

    /// Dials the bootstrap addresses that are due (not connected, backoff over).
    fn dial_bootstrap(&mut self) {
        let now = Instant::now();
        for (index, address) in self.bootstrap.due(now) {
            let opts = DialOpts::unknown_peer_id().address(address.clone()).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.bootstrap.dialing(index, id),
                Err(err) => {
                    tracing::warn!(%address, %err, "cannot dial bootstrap peer");
                    self.bootstrap.dial_failed(index, now);
                }
            }
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, NetworkStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn run(mut self) {
        let mut relay_tick = tokio::time::interval(RELAY_TICK);
        relay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = relay_tick.tick() => {
                    self.relays.on_tick(&mut self.swarm, Instant::now());
                    self.dial_bootstrap();
                    self.retry_hole_punches();
                }
                event = self.swarm.select_next_some() => {
                    if self.on_swarm_event(event).await.is_err() {
                        break;
                    }
                }
                command = self.commands.recv() => match command {
                    Ok(command) => self.on_command(command),
                    Err(_) => break,
                },
                _ = self.stop.recv() => break,
            }
        }
        tracing::debug!("event loop stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(data) => {
                if let Err(err) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data)
                {
                    // No peer yet, or a full queue: the change is in the log and reaches
                    // peers through catch-up.
                    tracing::debug!(%err, "gossip publish skipped");
                }
            }
            Command::Request {
                peer,
                token,
                request,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .catch_up
                    .send_request(&peer, request);
                self.outbound.insert(id, token);
            }
            Command::Respond { id, response } => {
                if let Some(channel) = self.inbound.remove(&id)
                    && self
                        .swarm
                        .behaviour_mut()
                        .catch_up
                        .send_response(channel, response)
                        .is_err()
                {
                    tracing::debug!("peer left before its catch-up response was sent");
                }
            }
            Command::Validate {
                message_id,
                via,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &via, acceptance);
            }
            Command::Ban(peer) => {
                tracing::warn!(%peer, "refusing a peer that sent too many invalid messages");
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            Command::Unban(peer) => {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
            Command::Disconnect(peer) => {
                // A relay server need not be of our group: it carries our circuits.
                if !self.relays.is_relay(&peer) {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
            Command::Dial(address) => {
                if let Err(err) = self.swarm.dial(address.clone()) {
                    tracing::warn!(%address, %err, "cannot dial peer");
                }
            }
        }
    }

    /// Forwards what the driver needs; `Err` when the driver is gone.
    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), ()> {
        self.telemetry.record(&event);
        let forward = match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(%peer_id, relayed = endpoint.is_relayed(), "connected");
                self.bootstrap
                    .on_established(connection_id, peer_id, Instant::now());
                if let Some(state) = self.lock_status().peers.get_mut(&peer_id) {
                    state.last_error = None;
                }
                self.opened(peer_id, connection_id, &endpoint);
                self.relays.on_connected(&mut self.swarm, peer_id);
                (num_established.get() == 1).then_some(NetEvent::Connected(peer_id))
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.closed(peer_id, connection_id);
                if num_established == 0 {
                    self.relays.on_disconnected(peer_id, Instant::now());
                    self.bootstrap.on_disconnected(peer_id, Instant::now());
                }
                (num_established == 0).then_some(NetEvent::Disconnected(peer_id))
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(?peer_id, %error, "dial failed");
                self.bootstrap.on_dial_error(connection_id, Instant::now());
                if let Some(peer_id) = peer_id {
                    self.relays.on_dial_failed(peer_id, Instant::now());
                }
                if let Some(failure) = super::failures::outgoing(peer_id, &error, self.private) {
                    self.lock_status().connection_failed(failure);
                }
                None
            }
            SwarmEvent::IncomingConnectionError {
                peer_id,
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(?peer_id, %send_back_addr, %error, "incoming connection failed");
                if let Some(failure) =
                    super::failures::incoming(peer_id, &send_back_addr, &error, self.private)
                {
                    self.lock_status().connection_failed(failure);
                }
                None
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                // A circuit listener closes with its relay: its addresses are no longer
                // ours to hand out.
                self.lock_status()
                    .listening
                    .retain(|address| !addresses.contains(address));
                self.relays.on_listener_closed(listener_id);
                None
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.lock_status()
                    .listening
                    .retain(|known| *known != address);
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                self.on_relay_client(event);
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => {
                self.relays.on_rendezvous(&mut self.swarm, event);
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => {
                match result {
                    Ok(_) => {
                        tracing::info!(peer = %remote_peer_id, "hole punched: direct connection")
                    }
                    Err(err) => {
                        tracing::info!(peer = %remote_peer_id, %err, "hole punching failed; relayed for now (the smaller peer id retries)");
                        self.events_bus.publish(SyncEvent::UpgradeFailed {
                            peer: remote_peer_id,
                        });
                    }
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                new,
                ..
            })) => {
                let reachability = match new {
                    autonat::NatStatus::Public(address) => Reachability::Public(address),
                    autonat::NatStatus::Private => Reachability::Private,
                    autonat::NatStatus::Unknown => Reachability::Unknown,
                };
                tracing::info!(?reachability, "reachability changed");
                self.events_bus
                    .publish(SyncEvent::ReachabilityChanged(reachability));
                None
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                if !status.listening.contains(&address) {
                    status.listening.push(address);
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer_id, address) in found {
                    if !self.swarm.is_connected(&peer_id) {
                        tracing::debug!(%peer_id, %address, "discovered by mDNS");
                        let _ = self.swarm.dial(address);
                    }
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => Some(self.proven(
                propagation_source,
                NetEvent::Gossip {
                    author: message.source,
                    via: propagation_source,
                    message_id,
                    data: message.data,
                },
            )),
            SwarmEvent::Behaviour(BehaviourEvent::CatchUp(event)) => self.on_catch_up(event),
            _ => None,
        };
        let Some(event) = forward else { return Ok(()) };
        // Wait for the driver (back-pressure), but keep executing its commands meanwhile:
        // it may itself be waiting to hand us one.
        let events = self.events.clone();
        let send = events.send(event);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent.map_err(drop),
                command = self.commands.recv() => match command {
                    Ok(command) => self.on_command(command),
                    Err(_) => return Err(()),
                },
            }
        }
    }

    fn on_catch_up(
        &mut self,
        event: request_response::Event<crate::protocol::Request, crate::protocol::Response>,
    ) -> Option<NetEvent> {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let id = self.next_inbound;
                self.next_inbound += 1;
                self.inbound.insert(id, channel);
                Some(self.proven(peer, NetEvent::Request { peer, id, request }))
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let token = self.outbound.remove(&request_id)?;
                Some(self.proven(
                    peer,
                    NetEvent::Response {
                        peer,
                        token,
                        response,
                    },
                ))
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "catch-up request failed");
                let token = self.outbound.remove(&request_id)?;
                let outsider = matches!(
                    error,
                    request_response::OutboundFailure::UnsupportedProtocols
                );
                Some(NetEvent::RequestFailed {
                    peer,
                    token,
                    outsider,
                })
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound catch-up request failed");
                None
            }
            Event::ResponseSent { .. } => None,
        }
    }

    // ---- connections, relays ----

    fn set_link(&self, peer: PeerId, kind: Option<ConnectionKind>) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match kind {
            Some(kind) => status.links.insert(peer, kind),
            None => status.links.remove(&peer),
        };
    }

    fn opened(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &libp2p::core::ConnectedPoint,
    ) {
        let (before, after) = self
            .links
            .opened(peer, connection, endpoint, Instant::now());
        self.set_link(peer, after);
        if before == Some(ConnectionKind::Relayed)
            && after == Some(ConnectionKind::Direct)
            && self.announced.contains(&peer)
        {
            self.events_bus
                .publish(SyncEvent::ConnectionUpgraded { peer });
        }
    }

    fn closed(&mut self, peer: PeerId, connection: ConnectionId) {
        let kind = self.links.closed(peer, connection, Instant::now());
        self.set_link(peer, kind);
        if kind.is_none() && self.announced.remove(&peer) {
            // The status says so before subscribers hear it (they read it next).
            self.lock_status().disconnected(&peer);
            self.events_bus
                .publish(SyncEvent::PeerDisconnected { peer });
        }
    }

    /// `peer` has shown it speaks our group's protocol: announce it once per connection.
    fn proven(&mut self, peer: PeerId, event: NetEvent) -> NetEvent {
        if let Some(connection) = self.links.kind_of(&peer)
            && self.announced.insert(peer)
        {
            // The status says so before subscribers hear it (they read it next); the
            // driver records the same evidence when it takes the event in.
            self.lock_status().peers.entry(peer).or_default().connected = true;
            self.events_bus
                .publish(SyncEvent::PeerConnected { peer, connection });
        }
        event
    }

    /// Dials the relayed-only peers whose hole-punch retry is due, through their relay:
    /// the new circuit starts a new DCUtR round.
    fn retry_hole_punches(&mut self) {
        for due in self.links.due_retries(Instant::now()) {
            let peer = due.peer;
            tracing::debug!(%peer, through = %due.through, "still relayed: a new circuit for another hole punch");
            if let Some(circuit) = due.close {
                self.swarm.close_connection(circuit);
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![due.through])
                .condition(PeerCondition::Always)
                .build();
            let circuit = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.links.dialled(peer, circuit),
                Err(err) => tracing::debug!(%peer, %err, "cannot dial a relayed peer again"),
            }
        }
    }

    fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } => {
                self.relays.on_reserved(&mut self.swarm, relay_peer_id);
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "circuit to a peer opened");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "a peer opened a circuit to us");
            }
        }
    }
}
