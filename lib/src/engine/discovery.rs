//! Staying reachable beyond the LAN: this node's relay servers, its reservations on them,
//! its rendezvous registrations, and the members it finds there.
//!
//! Owns [`Relays`]: per configured relay server, whether it is connected, reserved and
//! registered, and when to try again (a relay that restarts or drops is dialled again with
//! exponential backoff, reserved again and registered again). It is driven by the event
//! loop, which hands it the swarm and the time; it owns nothing else. It never decides
//! who is a member of the group (the driver does, from the group's protocol) and never
//! makes a dial that is not bounded: discoveries are limited per lookup, lookups happen on
//! an interval, and a peer already connected or being dialled is not dialled again.

use super::NetworkConfig;
use super::behaviour::{Behaviour, rendezvous_namespace};
use crate::error::Error;
use crate::events::{EventBus, SyncEvent};
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, rendezvous};
use std::time::{Duration, Instant};

/// First wait before dialling a lost relay again; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two dials of a lost relay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a rendezvous registration lives on the server (renewed at half of it).
const REGISTRATION_TTL: u64 = 2 * 60 * 60;
/// Every this many lookups, one asks for every registration again (without the cookie),
/// so a member whose dial failed is tried again; in between only new ones come back.
const FULL_LOOKUP_EVERY: u32 = 60;
/// Wait before retrying a refused registration.
const REGISTER_RETRY: Duration = Duration::from_secs(10);
/// At most this many registrations per lookup.
const DISCOVER_LIMIT: u64 = 256;

/// Checks that every relay address names its server (`/p2p/<id>` at the end).
pub(crate) fn check_relay_addresses(relays: &[Multiaddr]) -> Result<(), Error> {
    for address in relays {
        if relay_peer(address).is_none() {
            return Err(Error::InvalidRelayAddress {
                address: address.clone(),
                reason: "it does not end with /p2p/<server peer id>",
            });
        }
        if address.iter().any(|p| p == Protocol::P2pCircuit) {
            return Err(Error::InvalidRelayAddress {
                address: address.clone(),
                reason: "it is a circuit address (/p2p-circuit), not a server's address",
            });
        }
    }
    Ok(())
}

fn relay_peer(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

struct Relay {
    peer: PeerId,
    address: Multiaddr,
    connected: bool,
    /// The `/p2p-circuit` listener holding our reservation.
    listener: Option<ListenerId>,
    /// When to ask for a reservation (again) while connected without one.
    next_listen: Instant,
    reserved: bool,
    /// When to dial again while not connected.
    next_dial: Option<Instant>,
    backoff: Duration,
    /// When to register (again) while reserved.
    next_register: Option<Instant>,
    next_discover: Instant,
    /// The relay's cookie from the last lookup: the next one asks only for what is new.
    cookie: Option<rendezvous::Cookie>,
    lookups: u32,
}

/// This node's relay servers and what it holds on each.
pub(super) struct Relays {
    relays: Vec<Relay>,
    namespace: rendezvous::Namespace,
    interval: Duration,
    events: EventBus,
}

impl Relays {
    pub(super) fn new(config: &NetworkConfig, events: EventBus, now: Instant) -> Relays {
        let relays = config
            .relays
            .iter()
            .filter_map(|address| {
                Some(Relay {
                    peer: relay_peer(address)?,
                    address: address.clone(),
                    connected: false,
                    listener: None,
                    next_listen: now,
                    reserved: false,
                    next_dial: Some(now),
                    backoff: FIRST_BACKOFF,
                    next_register: None,
                    next_discover: now,
                    cookie: None,
                    lookups: 0,
                })
            })
            .collect();
        Relays {
            relays,
            namespace: rendezvous_namespace(&config.topic, config.secret.as_ref()),
            interval: config.discovery_interval,
            events,
        }
    }

    /// Whether `peer` is one of our relay servers.
    pub(super) fn is_relay(&self, peer: &PeerId) -> bool {
        self.relays.iter().any(|relay| relay.peer == *peer)
    }

    fn get(&mut self, peer: &PeerId) -> Option<&mut Relay> {
        self.relays.iter_mut().find(|relay| relay.peer == *peer)
    }

    /// Dials, listens, registers and looks up what is due.
    pub(super) fn on_tick(&mut self, swarm: &mut Swarm<Behaviour>, now: Instant) {
        let namespace = self.namespace.clone();
        for relay in &mut self.relays {
            if !relay.connected {
                if relay.next_dial.is_some_and(|at| at <= now) {
                    tracing::debug!(relay = %relay.peer, address = %relay.address, "dialling relay");
                    // Not again until this dial has failed (or the connection is lost).
                    relay.next_dial = None;
                    let opts = DialOpts::peer_id(relay.peer)
                        .addresses(vec![relay.address.clone()])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(err) = swarm.dial(opts) {
                        tracing::debug!(relay = %relay.peer, %err, "cannot dial relay");
                        schedule_dial(relay, now);
                    }
                }
                continue;
            }
            if relay.listener.is_none() && relay.next_listen <= now {
                let circuit = relay.address.clone().with(Protocol::P2pCircuit);
                match swarm.listen_on(circuit.clone()) {
                    Ok(id) => relay.listener = Some(id),
                    Err(err) => {
                        relay.next_listen = now + REGISTER_RETRY;
                        tracing::warn!(%circuit, %err, "cannot reserve on relay");
                    }
                }
            }
            if relay.reserved && relay.next_register.is_some_and(|at| at <= now) {
                relay.next_register = Some(now + REGISTER_RETRY);
                if let Some(client) = swarm.behaviour_mut().rendezvous.as_mut()
                    && let Err(err) =
                        client.register(namespace.clone(), relay.peer, Some(REGISTRATION_TTL))
                {
                    tracing::debug!(relay = %relay.peer, %err, "cannot register yet");
                }
            }
            if relay.next_discover <= now {
                relay.next_discover = now + self.interval;
                relay.lookups = relay.lookups.wrapping_add(1);
                if relay.lookups % FULL_LOOKUP_EVERY == 0 {
                    relay.cookie = None;
                }
                if let Some(client) = swarm.behaviour_mut().rendezvous.as_mut() {
                    // With the cookie of the last answer, the relay sends only what is
                    // new (the libp2p client keeps a timer per registration returned).
                    client.discover(
                        Some(namespace.clone()),
                        relay.cookie.clone(),
                        Some(DISCOVER_LIMIT),
                        relay.peer,
                    );
                }
            }
        }
    }

    /// A connection to `peer` is open; if it is a relay, reserve and look up at once.
    pub(super) fn on_connected(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let Some(relay) = self.get(&peer) else {
            return;
        };
        if relay.connected {
            return;
        }
        tracing::info!(relay = %peer, "connected to relay");
        relay.connected = true;
        relay.next_dial = None;
        relay.backoff = FIRST_BACKOFF;
        relay.next_discover = Instant::now();
        relay.next_listen = Instant::now();
        let address = relay.address.clone();
        if let Some(autonat) = swarm.behaviour_mut().autonat.as_mut() {
            autonat.add_server(peer, Some(address));
        }
        self.on_tick(swarm, Instant::now());
    }

    /// The last connection to `peer` closed; if it is a relay, dial it again later.
    pub(super) fn on_disconnected(&mut self, peer: PeerId, now: Instant) {
        let events = self.events.clone();
        let Some(relay) = self.get(&peer) else {
            return;
        };
        if relay.connected {
            tracing::warn!(relay = %peer, "lost the relay; dialling it again");
            events.publish(SyncEvent::RelayLost { relay: peer });
        }
        relay.connected = false;
        relay.reserved = false;
        // The relay client closes the circuit listener with the connection.
        relay.listener = None;
        relay.next_register = None;
        relay.cookie = None;
        schedule_dial(relay, now);
    }

    /// A dial to `peer` failed; if it is a relay, try again later.
    pub(super) fn on_dial_failed(&mut self, peer: PeerId, now: Instant) {
        if let Some(relay) = self.get(&peer)
            && !relay.connected
        {
            schedule_dial(relay, now);
        }
    }

    /// The relay accepted our reservation: register under the group's namespace.
    pub(super) fn on_reserved(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let events = self.events.clone();
        let Some(relay) = self.get(&peer) else {
            return;
        };
        if !relay.reserved {
            tracing::info!(relay = %peer, "reserved a circuit slot on the relay");
            events.publish(SyncEvent::RelayReserved { relay: peer });
        }
        relay.reserved = true;
        relay.next_register = Some(Instant::now());
        self.on_tick(swarm, Instant::now());
    }

    /// A listener closed; if it held a reservation, reserve again (at the next tick).
    pub(super) fn on_listener_closed(&mut self, listener: ListenerId) {
        for relay in &mut self.relays {
            if relay.listener == Some(listener) {
                relay.listener = None;
                // A refused reservation (limits, rate) is not asked again at once.
                relay.next_listen = Instant::now() + REGISTER_RETRY;
                relay.reserved = false;
            }
        }
    }

    /// Registered: renew at half the lifetime.
    pub(super) fn on_registered(&mut self, peer: PeerId, ttl: u64) {
        if let Some(relay) = self.get(&peer) {
            // The relay's word: never beyond what we asked for, never an overflow.
            let renew = Duration::from_secs((ttl.min(REGISTRATION_TTL) / 2).max(30));
            relay.next_register = Some(
                Instant::now()
                    .checked_add(renew)
                    .unwrap_or_else(|| Instant::now() + REGISTER_RETRY),
            );
        }
    }

    /// A lookup failed; a stale cookie is dropped so the next one starts afresh.
    pub(super) fn on_discover_failed(&mut self, peer: PeerId) {
        if let Some(relay) = self.get(&peer) {
            relay.cookie = None;
        }
    }

    /// Members found on a relay: dial the ones not connected, through that relay.
    pub(super) fn on_discovered(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        rendezvous_node: PeerId,
        registrations: Vec<rendezvous::Registration>,
        cookie: rendezvous::Cookie,
    ) {
        let Some(relay) = self.get(&rendezvous_node) else {
            return;
        };
        relay.cookie = Some(cookie);
        let through = relay.address.clone().with(Protocol::P2pCircuit);
        let me = *swarm.local_peer_id();
        for registration in registrations {
            let peer = registration.record.peer_id();
            if peer == me || swarm.is_connected(&peer) {
                continue;
            }
            tracing::debug!(%peer, relay = %rendezvous_node, "found a member on the relay; dialling it");
            // Only through the relay: the addresses in a registration are the
            // registrant's word (any host, any port); a direct path is found by hole
            // punching (DCUtR) over the relayed connection.
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![through.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(err) = swarm.dial(opts) {
                tracing::debug!(%peer, %err, "cannot dial a discovered member");
            }
        }
    }

    /// What the rendezvous client reports about our registrations and lookups.
    pub(super) fn on_rendezvous(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        event: rendezvous::client::Event,
    ) {
        use rendezvous::client::Event;
        match event {
            Event::Registered {
                rendezvous_node,
                ttl,
                ..
            } => {
                tracing::info!(relay = %rendezvous_node, "registered the group on the relay");
                self.on_registered(rendezvous_node, ttl);
            }
            Event::RegisterFailed {
                rendezvous_node,
                error,
                ..
            } => {
                tracing::warn!(relay = %rendezvous_node, ?error, "the relay refused our registration");
            }
            Event::Discovered {
                rendezvous_node,
                registrations,
                cookie,
            } => {
                self.on_discovered(swarm, rendezvous_node, registrations, cookie);
            }
            Event::DiscoverFailed {
                rendezvous_node,
                error,
                ..
            } => {
                tracing::debug!(relay = %rendezvous_node, ?error, "lookup on the relay failed");
                self.on_discover_failed(rendezvous_node);
            }
            Event::Expired { .. } => {}
        }
    }
}

fn schedule_dial(relay: &mut Relay, now: Instant) {
    relay.next_dial = Some(now + relay.backoff);
    relay.backoff = (relay.backoff * 2).min(MAX_BACKOFF);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_address_must_name_its_server_and_not_be_a_circuit() {
        let peer = PeerId::random();
        let good: Multiaddr = format!("/ip4/203.0.113.7/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        assert!(check_relay_addresses(std::slice::from_ref(&good)).is_ok());
        let bare: Multiaddr = "/ip4/203.0.113.7/tcp/4001".parse().unwrap();
        assert!(matches!(
            check_relay_addresses(&[bare]),
            Err(Error::InvalidRelayAddress { .. })
        ));
        let circuit = good.with(Protocol::P2pCircuit).with(Protocol::P2p(peer));
        assert!(check_relay_addresses(&[circuit]).is_err());
    }

    #[test]
    fn a_lost_relay_is_dialled_again_later_and_later() {
        let peer = PeerId::random();
        let mut relay = Relay {
            peer,
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            connected: false,
            listener: None,
            next_listen: Instant::now(),
            reserved: false,
            next_dial: None,
            backoff: FIRST_BACKOFF,
            next_register: None,
            next_discover: Instant::now(),
            cookie: None,
            lookups: 0,
        };
        let now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..10 {
            schedule_dial(&mut relay, now);
            waits.push(relay.next_dial.unwrap() - now);
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
    }
}
