//! Bootstrap addresses, kept connected: each address given to
//! `WaveSyncDbBuilder::bootstrap` is dialled at start and again, with backoff, whenever it
//! is not connected (the peer was not up yet, the network dropped, the peer restarted).
//!
//! Pure: handed `now`, it says which addresses to dial; the event loop dials them and
//! reports what became of each dial and connection. It never touches the swarm. The
//! backoff doubles from one second to a minute, and starts over only after a connection
//! that lasted a minute, so an address whose peer keeps closing on us (a peer of another
//! group, which the driver disconnects) is dialled at most once a minute.

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    address: Multiaddr,
    /// The peer this address reached last, while connected.
    peer: Option<PeerId>,
    /// The dial in flight.
    dialing: Option<ConnectionId>,
    /// When it may be dialled next (while neither connected nor dialling).
    next: Instant,
    backoff: Duration,
    /// When the current connection opened.
    since: Option<Instant>,
}

/// The bootstrap addresses and where each stands.
#[derive(Debug, Default)]
pub(crate) struct Bootstrap {
    entries: Vec<Entry>,
}

impl Bootstrap {
    /// Every address due at once.
    pub(crate) fn new(addresses: &[Multiaddr], now: Instant) -> Bootstrap {
        Bootstrap {
            entries: addresses
                .iter()
                .map(|address| Entry {
                    address: address.clone(),
                    peer: None,
                    dialing: None,
                    next: now,
                    backoff: FIRST_BACKOFF,
                    since: None,
                })
                .collect(),
        }
    }

    /// The addresses to dial now, by index; report each with [`Bootstrap::dialing`] or
    /// [`Bootstrap::dial_failed`].
    pub(crate) fn due(&self, now: Instant) -> Vec<(usize, Multiaddr)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.peer.is_none() && e.dialing.is_none() && e.next <= now)
            .map(|(index, e)| (index, e.address.clone()))
            .collect()
    }

    /// The dial of entry `index` is under way as connection `id`.
    pub(crate) fn dialing(&mut self, index: usize, id: ConnectionId) {
        if let Some(entry) = self.entries.get_mut(index) {
            entry.dialing = Some(id);
        }
    }

    fn back_off(entry: &mut Entry, now: Instant) {
        entry.next = now + entry.backoff;
        entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
    }

    /// The dial of entry `index` could not even start.
    pub(crate) fn dial_failed(&mut self, index: usize, now: Instant) {
        if let Some(entry) = self.entries.get_mut(index) {
            entry.dialing = None;
            Self::back_off(entry, now);
        }
    }

    /// A dial failed (`id` may be any dial; only ours count).
    pub(crate) fn on_dial_error(&mut self, id: ConnectionId, now: Instant) {
        for entry in &mut self.entries {
            if entry.dialing == Some(id) {
                entry.dialing = None;
                Self::back_off(entry, now);
            }
        }
    }

    /// Connection `id` to `peer` opened (any connection; ours are recognised by id).
    pub(crate) fn on_established(&mut self, id: ConnectionId, peer: PeerId, now: Instant) {
        for entry in &mut self.entries {
            if entry.dialing == Some(id) {
                entry.dialing = None;
                entry.peer = Some(peer);
                entry.since = Some(now);
            }
        }
    }

    /// The last connection to `peer` closed: its addresses are due again after the
    /// backoff.
    pub(crate) fn on_disconnected(&mut self, peer: PeerId, now: Instant) {
        for entry in &mut self.entries {
            if entry.peer == Some(peer) {
                entry.peer = None;
                if entry
                    .since
                    .take()
                    .is_some_and(|since| now.saturating_duration_since(since) >= STABLE)
                {
                    entry.backoff = FIRST_BACKOFF;
                }
                Self::back_off(entry, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/4001".parse().expect("address")
    }

    #[test]
    fn an_address_is_dialled_again_with_growing_backoff_until_it_answers() {
        let start = Instant::now();
        let mut boot = Bootstrap::new(&[address()], start);
        let mut now = start;
        let mut gaps = Vec::new();
        for n in 0..8 {
            let due = boot.due(now);
            assert_eq!(due.len(), 1, "attempt {n}");
            // Not due twice while a dial is in flight.
            let id = ConnectionId::new_unchecked(n);
            boot.dialing(0, id);
            assert!(boot.due(now).is_empty());
            boot.on_dial_error(id, now);
            let next = boot.entries[0].next;
            gaps.push(next - now);
            now = next;
        }
        let secs: Vec<u64> = gaps.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_lost_connection_is_redialled_and_a_stable_one_resets_the_backoff() {
        let start = Instant::now();
        let mut boot = Bootstrap::new(&[address()], start);
        let peer = PeerId::random();
        let id = ConnectionId::new_unchecked(1);
        boot.dialing(0, id);
        boot.on_established(id, peer, start);
        assert!(
            boot.due(start + Duration::from_secs(600)).is_empty(),
            "connected"
        );
        // Closed at once (a peer of another group): backed off.
        boot.on_disconnected(peer, start);
        assert!(boot.due(start).is_empty());
        assert_eq!(boot.due(start + FIRST_BACKOFF).len(), 1);
        let id = ConnectionId::new_unchecked(2);
        let later = start + FIRST_BACKOFF;
        boot.dialing(0, id);
        boot.on_established(id, peer, later);
        assert_eq!(boot.entries[0].backoff, FIRST_BACKOFF * 2);
        // Lost after a stable hour: due again after one second.
        let lost = later + Duration::from_secs(3600);
        boot.on_disconnected(peer, lost);
        assert!(boot.due(lost).is_empty());
        assert_eq!(boot.due(lost + FIRST_BACKOFF).len(), 1);
        // Other connections and other peers change nothing.
        boot.on_disconnected(PeerId::random(), lost);
        boot.on_dial_error(ConnectionId::new_unchecked(99), lost);
        assert_eq!(boot.due(lost + FIRST_BACKOFF).len(), 1);
    }
}
