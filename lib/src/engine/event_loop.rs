//! The event loop: the one and only owner of the libp2p `Swarm`.
//!
//! It turns swarm events into [`NetEvent`]s for the driver and the driver's [`Command`]s
//! into swarm calls, and keeps the bookkeeping that needs the swarm (request ids, response
//! channels). It makes no sync decision and never touches the database. While the driver
//! is behind, sending it an event waits, so the swarm is not polled and peers are slowed
//! down by the transport instead of us dropping their messages.

use super::behaviour::{Behaviour, BehaviourEvent, CatchUpCodec, catch_up_protocol, gossip_topic};
use super::{Command, NetEvent, NetworkConfig, NetworkStatus};
use futures::StreamExt;
use libp2p::Transport as _;
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, gossipsub, mdns, noise, request_response, tcp, yamux};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
}

fn build_swarm(
    keypair: libp2p::identity::Keypair,
    config: &NetworkConfig,
    received_bytes: Arc<AtomicU64>,
) -> Result<Swarm<Behaviour>, String> {
    let codec = CatchUpCodec {
        max_request_bytes: 64 << 10,
        max_response_bytes: config.page_bytes * 2 + (1 << 20),
        received_bytes,
    };
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(3600));
    match &config.secret {
        None => {
            let builder = libp2p::SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .map_err(|e| format!("TCP transport: {e}"))?;
            #[cfg(feature = "quic")]
            let builder = builder.with_quic();
            Ok(builder
                .with_behaviour(|key| behaviour(key, config, codec))
                .map_err(|e| format!("network behaviour: {e}"))?
                .with_swarm_config(swarm_config)
                .build())
        }
        Some(secret) => {
            // Private group: the pre-shared-key handshake comes first on every TCP
            // connection, before noise. QUIC has no PSK support, so it stays off.
            let psk = secret.pre_shared_key();
            Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_other_transport(|key| {
                    let noise = noise::Config::new(key)?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                            .and_then(move |socket, _| {
                                libp2p::pnet::PnetConfig::new(psk).handshake(socket)
                            })
                            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                            .authenticate(noise)
                            .multiplex(yamux::Config::default())
                            .timeout(Duration::from_secs(20)),
                    )
                })
                .map_err(|e| format!("private TCP transport: {e}"))?
                .with_behaviour(|key| behaviour(key, config, codec))
                .map_err(|e| format!("network behaviour: {e}"))?
                .with_swarm_config(swarm_config)
                .build())
        }
    }
}

fn behaviour(
    key: &libp2p::identity::Keypair,
    config: &NetworkConfig,
    codec: CatchUpCodec,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(config.max_message_bytes + (64 << 10))
        .validation_mode(gossipsub::ValidationMode::Strict)
        // We validate before gossipsub forwards: an invalid message goes no further.
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| e.to_string())?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossipsub_config,
    )?;
    let catch_up = request_response::Behaviour::with_codec(
        codec,
        [(
            catch_up_protocol(&config.topic, config.secret.as_ref()),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            key.public().to_peer_id(),
        )?)
    } else {
        None
    };
    Ok(Behaviour {
        blocked: Default::default(),
        gossipsub,
        catch_up,
        mdns: mdns.into(),
    })
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
    ) -> Result<EventLoop, String> {
        let mut swarm = build_swarm(keypair, config, received_bytes)?;
        let topic = gossip_topic(&config.topic, config.secret.as_ref());
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| format!("subscribing to the topic: {e}"))?;
        let mut pending = std::collections::HashSet::new();
        for address in &config.listen {
            let id = swarm
                .listen_on(address.clone())
                .map_err(|e| format!("listening on {address}: {e}"))?;
            pending.insert(id);
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
                    SwarmEvent::ListenerClosed { listener_id, reason: Err(err), .. } => {
                        return Err(format!("listener {listener_id:?} failed: {err}"));
                    }
                    SwarmEvent::ListenerError { error, .. } => return Err(format!("listener failed: {error}")),
                    _ => {}
                },
                _ = &mut deadline => return Err("no listen address after 10 s".into()),
            }
        }
        for address in &config.bootstrap {
            if let Err(err) = swarm.dial(address.clone()) {
                tracing::warn!(%address, %err, "cannot dial bootstrap peer");
            }
        }
        Ok(EventLoop {
            swarm,
            topic,
            commands,
            events,
            stop,
            status,
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
        })
    }

    pub(crate) async fn run(mut self) {
        loop {
            tokio::select! {
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
                let _ = self.swarm.disconnect_peer_id(peer);
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
        let forward = match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                tracing::debug!(%peer_id, "connected");
                (num_established.get() == 1).then_some(NetEvent::Connected(peer_id))
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => (num_established == 0).then_some(NetEvent::Disconnected(peer_id)),
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
            })) => Some(NetEvent::Gossip {
                author: message.source,
                via: propagation_source,
                message_id,
                data: message.data,
            }),
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
                Some(NetEvent::Request { peer, id, request })
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
                Some(NetEvent::Response {
                    peer,
                    token,
                    response,
                })
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
}
