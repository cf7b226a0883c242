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
//! (time for DCUtR's own round of three dials) is dialled again through a relay that
//! carries it: the new circuit starts a new round on the other side. The waits double up
//! to [`MAX_RETRY`], at most [`MAX_RETRIES`] times while the peer stays connected (a
//! direct connection that drops resumes the count, it does not restart it).
//!
//! Only the peer with the smaller id retries: two rounds at once would race for the same
//! ports, and each retry costs a circuit on the relay server (which limits them per
//! peer). For the same reason the circuit of the previous retry is closed when the next
//! one is dialled (its round is long over, and the first circuit still carries the peer).
//!
//! It closes no connection of its own accord and never dials anything but a circuit
//! through a relay server the peer is reached through; the event loop does both.

use crate::status::ConnectionKind;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a relayed-only peer waits for DCUtR's own round before the first retry.
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest wait between two retries.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(300);
/// Retries per connected peer: after these (some half an hour) its NATs are taken to be
/// ones no hole goes through (symmetric), and it stays relayed until it reconnects. Every
/// retry leaves one more circuit open on the relay, which is why there is an end.
pub(super) const MAX_RETRIES: u32 = 8;

/// When to try a hole punch with a relayed-only peer again.
struct Retry {
    wait: Duration,
    /// `None` while the peer is direct, or once [`MAX_RETRIES`] are spent.
    next: Option<Instant>,
    done: u32,
    /// The circuit our last retry opened (or is opening).
    circuit: Option<ConnectionId>,
}

/// A hole-punch retry that is due.
pub(super) struct DueRetry {
    /// The relayed-only peer.
    pub peer: PeerId,
    /// The circuit to dial it through (`<relay>/p2p-circuit`).
    pub through: Multiaddr,
    /// The previous retry's circuit, to close if it is still open.
    pub close: Option<ConnectionId>,
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
    /// Per connected peer with a larger id than ours that was ever relayed-only.
    retries: HashMap<PeerId, Retry>,
}

impl Links {
    /// No connection yet; `me` is this node (it decides who retries).
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
        self.connections
            .entry(peer)
            .or_default()
            .insert(connection, Link { kind, through });
        let after = self.kind_of(&peer);
        self.reschedule(peer, after, now);
        (before, after)
    }

    /// A connection closed; returns how `peer` travels now.
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
        if let Some(retry) = self.retries.get_mut(&peer)
            && retry.circuit == Some(connection)
        {
            retry.circuit = None;
        }
        self.reschedule(peer, kind, now);
        kind
    }

    /// Keeps `peer`'s retry in step with how it travels now.
    fn reschedule(&mut self, peer: PeerId, kind: Option<ConnectionKind>, now: Instant) {
        if peer < self.me {
            return;
        }
        match kind {
            None => {
                self.retries.remove(&peer);
            }
            Some(ConnectionKind::Direct) => {
                if let Some(retry) = self.retries.get_mut(&peer) {
                    retry.next = None;
                }
            }
            Some(ConnectionKind::Relayed) => {
                let retry = self.retries.entry(peer).or_insert(Retry {
                    wait: FIRST_RETRY,
                    next: None,
                    done: 0,
                    circuit: None,
                });
                if retry.next.is_none() && retry.done < MAX_RETRIES {
                    retry.next = Some(now + retry.wait);
                }
            }
        }
    }

    /// Records the connection a retry dial of `peer` will open.
    pub(super) fn dialled(&mut self, peer: PeerId, circuit: ConnectionId) {
        if let Some(retry) = self.retries.get_mut(&peer) {
            retry.circuit = Some(circuit);
        }
    }

    /// The relayed-only peers to dial again now, each with a circuit it is reached
    /// through; their next retry waits twice as long (none after [`MAX_RETRIES`]).
    pub(super) fn due_retries(&mut self, now: Instant) -> Vec<DueRetry> {
        let mut due = Vec::new();
        for (peer, retry) in &mut self.retries {
            if retry.next.is_none_or(|next| next > now) {
                continue;
            }
            retry.done += 1;
            retry.wait = (retry.wait * 2).min(MAX_RETRY);
            retry.next = (retry.done < MAX_RETRIES).then(|| now + retry.wait);
            let links = self.connections.get(peer);
            // Through a circuit that is open now (not the last retry's, which closes).
            let through = links.and_then(|links| {
                links
                    .iter()
                    .filter(|(id, _)| Some(**id) != retry.circuit)
                    .find_map(|(_, link)| link.through.clone())
            });
            let Some(through) = through else { continue };
            let close = retry
                .circuit
                .take()
                .filter(|id| links.is_some_and(|links| links.contains_key(id)));
            due.push(DueRetry {
                peer: *peer,
                through,
                close,
            });
        }
        due
    }
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

    /// `links` learns that relayed connection `id` to `them`, through `relay`, opened.
    fn open_relayed(links: &mut Links, them: PeerId, id: usize, relay: PeerId, at: Instant) {
        links.opened(
            them,
            ConnectionId::new_unchecked(id),
            &relayed_dial(relay, them),
            at,
        );
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
        let (relay, to) = (PeerId::random(), PeerId::random());
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

    fn larger_than(me: PeerId) -> PeerId {
        loop {
            let them = PeerId::random();
            if them > me {
                return them;
            }
        }
    }

    #[test]
    fn a_relayed_only_peer_is_dialled_again_later_and_later_until_direct() {
        let (me, relay) = (PeerId::random(), PeerId::random());
        let them = larger_than(me);
        let mut links = Links::new(me);
        let start = Instant::now();
        let relayed = ConnectionId::new_unchecked(1);
        open_relayed(&mut links, them, 1, relay, start);
        assert_eq!(links.kind_of(&them), Some(ConnectionKind::Relayed));
        assert!(links.due_retries(start + FIRST_RETRY / 2).is_empty());
        let mut at = start;
        let mut waits = Vec::new();
        let mut previous = None;
        while let Some(next) = links.retries[&them].next {
            waits.push(next - at);
            at = next;
            let due = links.due_retries(at);
            assert_eq!(due.len(), 1);
            assert!(due[0].through.to_string().ends_with("/p2p-circuit"));
            // The previous retry's circuit is closed when the next one is dialled.
            assert_eq!(due[0].close, previous);
            let circuit = ConnectionId::new_unchecked(100 + waits.len());
            links.dialled(them, circuit);
            open_relayed(&mut links, them, 100 + waits.len(), relay, at);
            if let Some(old) = previous {
                links.closed(them, old, at);
            }
            previous = Some(circuit);
        }
        assert_eq!(waits.len(), MAX_RETRIES as usize);
        assert_eq!(waits[0], FIRST_RETRY);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        assert!(links.due_retries(at + MAX_RETRY * 4).is_empty());
        let (before, after) = links.opened(them, ConnectionId::new_unchecked(2), &direct(), at);
        assert_eq!(before, Some(ConnectionKind::Relayed));
        assert_eq!(after, Some(ConnectionKind::Direct));
        // Direct gone, relayed left: the spent count stays spent.
        assert_eq!(
            links.closed(them, ConnectionId::new_unchecked(2), at),
            Some(ConnectionKind::Relayed)
        );
        assert!(links.due_retries(at + MAX_RETRY * 4).is_empty());
        links.closed(them, previous.unwrap(), at);
        assert_eq!(links.closed(them, relayed, at), None);
        assert!(links.retries.is_empty());
    }

    #[test]
    fn only_the_smaller_id_retries_and_a_dropped_direct_link_resumes_the_schedule() {
        let (me, relay) = (PeerId::random(), PeerId::random());
        let them = larger_than(me);
        // The larger side never retries.
        let mut theirs = Links::new(them);
        let start = Instant::now();
        open_relayed(&mut theirs, me, 1, relay, start);
        assert!(theirs.due_retries(start + MAX_RETRY * 100).is_empty());
        // Ours: one retry, then direct, then the direct link drops.
        let mut ours = Links::new(me);
        open_relayed(&mut ours, them, 1, relay, start);
        let at = start + FIRST_RETRY;
        assert_eq!(ours.due_retries(at).len(), 1);
        ours.opened(them, ConnectionId::new_unchecked(2), &direct(), at);
        assert!(ours.due_retries(at + MAX_RETRY * 4).is_empty());
        let later = at + MAX_RETRY;
        ours.closed(them, ConnectionId::new_unchecked(2), later);
        assert!(ours.due_retries(later + FIRST_RETRY).is_empty());
        assert_eq!(ours.due_retries(later + FIRST_RETRY * 2).len(), 1);
        assert_eq!(ours.retries[&them].done, 2);
    }
}
