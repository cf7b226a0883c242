//! How each peer is connected, and getting a relayed peer a direct path.
//!
//! Owns [`Links`]: every open connection per peer and how it travels (straight, or
//! through a relay server's circuit), and, for a peer connected only through relays, when
//! to try hole punching again.
//!
//! libp2p's DCUtR makes one round of dials per relayed connection, when it opens. A round
//! that fails (a SYN lost on a busy machine, a NAT mapping not there yet, a relay that
//! was slow to report our address) would leave two peers relayed for as long as they stay
//! connected. So a peer still relayed-only [`FIRST_RETRY`] after its first circuit opened
//! is dialled again through the relay that carries it: the new circuit starts a new round.
//! The waits double up to [`MAX_RETRY`], and start over only when the peer reconnects.
//! Two rounds at once would race for the same ports, so the peer with the smaller id
//! dials first and the other waits half as long again: it dials only when the first one
//! did not (an older version, a lost circuit), and every circuit that opens in between
//! pushes both schedules back.
//!
//! It never closes a connection and never dials anything but a circuit through a relay
//! server the peer is already reached through; the event loop does the dialling.

use crate::status::ConnectionKind;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a relayed-only peer waits for DCUtR's own round before the first retry.
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between two retries.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(300);
/// Retries per connected peer: after these (some 25 minutes) its NATs are taken to be
/// ones no hole goes through (symmetric), and it stays relayed until it reconnects. Every
/// retry leaves one more circuit open on the relay, which is why there is an end.
pub(super) const MAX_RETRIES: u32 = 8;

/// When to try a hole punch with a relayed-only peer again.
struct Retry {
    /// The circuit to dial the peer through (`<relay>/p2p-circuit`).
    through: Multiaddr,
    wait: Duration,
    /// `None` once [`MAX_RETRIES`] are spent.
    next: Option<Instant>,
    done: u32,
}

impl Retry {
    fn new(through: Multiaddr, now: Instant, factor: f32) -> Retry {
        Retry {
            through,
            wait: FIRST_RETRY,
            next: Some(now + FIRST_RETRY.mul_f32(factor)),
            done: 0,
        }
    }
}

/// One open connection.
struct Link {
    kind: ConnectionKind,
    /// For a relayed one, the circuit it travels (`<relay>/p2p-circuit`).
    through: Option<Multiaddr>,
}

/// Open connections per peer, and hole-punch retries for relayed-only peers.
pub(super) struct Links {
    me: PeerId,
    connections: HashMap<PeerId, HashMap<ConnectionId, Link>>,
    retries: HashMap<PeerId, Retry>,
}

impl Links {
    /// No connection yet; `me` is this node (it decides who dials first).
    pub(super) fn new(me: PeerId) -> Links {
        Links {
            me,
            connections: HashMap::new(),
            retries: HashMap::new(),
        }
    }

    /// How `peer` travels now: direct as soon as one direct connection is open.
    pub(super) fn kind_of(&self, peer: &PeerId) -> Option<ConnectionKind> {
        let connections = self.connections.get(peer)?;
        if connections
            .values()
            .any(|l| l.kind == ConnectionKind::Direct)
        {
            Some(ConnectionKind::Direct)
        } else if connections.is_empty() {
            None
        } else {
            Some(ConnectionKind::Relayed)
        }
    }

    /// A connection opened; returns how `peer` travelled before and travels now.
    pub(super) fn opened(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
        now: Instant,
    ) -> (Option<ConnectionKind>, Option<ConnectionKind>) {
        let before = self.kind_of(&peer);
        let kind = if endpoint.is_relayed() {
            ConnectionKind::Relayed
        } else {
            ConnectionKind::Direct
        };
        let through = circuit_of(endpoint);
        self.connections.entry(peer).or_default().insert(
            connection,
            Link {
                kind,
                through: through.clone(),
            },
        );
        let after = self.kind_of(&peer);
        if after == Some(ConnectionKind::Direct) {
            self.retries.remove(&peer);
        } else if let Some(through) = through {
            let factor = factor(&self.me, &peer);
            match self.retries.get_mut(&peer) {
                // A new circuit is a new round (ours or the peer's): give it time.
                Some(retry) => {
                    retry.through = through;
                    if let Some(next) = &mut retry.next {
                        *next = (*next).max(now + retry.wait.mul_f32(factor));
                    }
                }
                None => {
                    self.retries.insert(peer, Retry::new(through, now, factor));
                }
            }
        }
        (before, after)
    }

    /// A connection closed; returns how `peer` travels now. A peer left with relayed
    /// connections only (its direct one dropped) is scheduled for a hole punch again.
    pub(super) fn closed(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        now: Instant,
    ) -> Option<ConnectionKind> {
        if let Some(connections) = self.connections.get_mut(&peer) {
            connections.remove(&connection);
            if connections.is_empty() {
                self.connections.remove(&peer);
            }
        }
        let kind = self.kind_of(&peer);
        if kind != Some(ConnectionKind::Relayed) {
            self.retries.remove(&peer);
        } else if !self.retries.contains_key(&peer) {
            let through = self.connections[&peer]
                .values()
                .find_map(|link| link.through.clone());
            if let Some(through) = through {
                let factor = factor(&self.me, &peer);
                self.retries.insert(peer, Retry::new(through, now, factor));
            }
        }
        kind
    }

    /// The relayed-only peers to dial again now, each with the circuit to dial it
    /// through; their next retry waits twice as long (none after [`MAX_RETRIES`]).
    pub(super) fn due_retries(&mut self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        let mut due = Vec::new();
        for (peer, retry) in &mut self.retries {
            if retry.next.is_some_and(|next| next <= now) {
                retry.done += 1;
                retry.wait = (retry.wait * 2).min(MAX_RETRY);
                retry.next = (retry.done < MAX_RETRIES)
                    .then(|| now + retry.wait.mul_f32(factor(&self.me, peer)));
                due.push((*peer, retry.through.clone()));
            }
        }
        due
    }
}

/// The smaller id dials first: its waits are 1x, the other's 1.5x.
fn factor(me: &PeerId, peer: &PeerId) -> f32 {
    if peer > me { 1.0 } else { 1.5 }
}

/// `<relay address>/p2p-circuit` of a relayed connection: for one we dialled, the
/// address up to the circuit; for one a peer opened to us, our listening address on the
/// relay (which names the relay).
fn circuit_of(endpoint: &ConnectedPoint) -> Option<Multiaddr> {
    let address = match endpoint {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { local_addr, .. } => local_addr,
    };
    let mut through = Multiaddr::empty();
    for protocol in address.iter() {
        through.push(protocol.clone());
        if protocol == Protocol::P2pCircuit {
            return through
                .iter()
                .any(|p| matches!(p, Protocol::P2p(_)))
                .then_some(through);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::Endpoint;
    use libp2p::core::transport::PortUse;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    fn relayed_dial(relay: PeerId, to: PeerId) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{to}")
                .parse()
                .unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    fn direct() -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: "/ip4/198.18.0.3/tcp/4100".parse().unwrap(),
            role_override: Endpoint::Listener,
            port_use: PortUse::Reuse,
        }
    }

    #[test]
    fn the_circuit_is_the_address_up_to_p2p_circuit_and_names_the_relay() {
        let (relay, to) = (peer(), peer());
        let through = circuit_of(&relayed_dial(relay, to)).unwrap();
        assert_eq!(
            through.to_string(),
            format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
        );
        let inbound = ConnectedPoint::Listener {
            local_addr: through.clone(),
            send_back_addr: Multiaddr::empty().with(Protocol::P2p(to)),
        };
        assert_eq!(circuit_of(&inbound), Some(through));
        assert_eq!(circuit_of(&direct()), None);
        let unnamed = ConnectedPoint::Listener {
            local_addr: "/p2p-circuit".parse().unwrap(),
            send_back_addr: Multiaddr::empty(),
        };
        assert_eq!(circuit_of(&unnamed), None);
    }

    #[test]
    fn a_relayed_only_peer_is_dialled_again_later_and_later_until_direct() {
        let (me, relay) = (peer(), peer());
        let mut them = peer();
        while them < me {
            them = peer();
        }
        let mut links = Links::new(me);
        let start = Instant::now();
        let relayed = ConnectionId::new_unchecked(1);
        links.opened(them, relayed, &relayed_dial(relay, them), start);
        assert_eq!(links.kind_of(&them), Some(ConnectionKind::Relayed));
        assert!(links.due_retries(start + FIRST_RETRY / 2).is_empty());
        let mut at = start;
        let mut waits = Vec::new();
        while let Some(next) = links.retries[&them].next {
            waits.push(next - at);
            at = next;
            let due = links.due_retries(at);
            assert_eq!(due.len(), 1);
            assert!(due[0].1.to_string().ends_with("/p2p-circuit"));
            // Our own retry's circuit opens: no fresh schedule, no extra retry.
            links.opened(
                them,
                ConnectionId::new_unchecked(100 + waits.len()),
                &relayed_dial(relay, them),
                at,
            );
        }
        assert_eq!(waits.len(), MAX_RETRIES as usize);
        assert_eq!(waits[0], FIRST_RETRY);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        assert!(links.due_retries(at + MAX_RETRY * 4).is_empty());
        let (before, after) = links.opened(them, ConnectionId::new_unchecked(2), &direct(), at);
        assert_eq!(before, Some(ConnectionKind::Relayed));
        assert_eq!(after, Some(ConnectionKind::Direct));
        assert!(links.due_retries(at + MAX_RETRY * 2).is_empty());
        // Direct gone, relayed left: the schedule starts over.
        assert_eq!(
            links.closed(them, ConnectionId::new_unchecked(2), at),
            Some(ConnectionKind::Relayed)
        );
        assert!(links.due_retries(at + FIRST_RETRY / 2).is_empty());
        assert_eq!(links.due_retries(at + FIRST_RETRY).len(), 1);
        for extra in 1..=MAX_RETRIES as usize {
            links.closed(them, ConnectionId::new_unchecked(100 + extra), at);
        }
        assert_eq!(links.closed(them, relayed, at), None);
        assert!(links.retries.is_empty());
    }

    #[test]
    fn the_larger_id_waits_longer_and_a_new_circuit_pushes_the_retry_back() {
        let (me, relay) = (peer(), peer());
        let mut them = peer();
        while them > me {
            them = peer();
        }
        let mut links = Links::new(me);
        let start = Instant::now();
        links.opened(
            them,
            ConnectionId::new_unchecked(1),
            &relayed_dial(relay, them),
            start,
        );
        assert_eq!(
            links.retries[&them].next,
            Some(start + FIRST_RETRY.mul_f32(1.5))
        );
        // The peer (smaller id) retried: its circuit opens here, and ours waits again.
        let later = start + FIRST_RETRY;
        links.opened(
            them,
            ConnectionId::new_unchecked(2),
            &relayed_dial(relay, them),
            later,
        );
        assert_eq!(
            links.retries[&them].next,
            Some(later + FIRST_RETRY.mul_f32(1.5))
        );
        assert!(links.due_retries(later + FIRST_RETRY).is_empty());
    }
}
