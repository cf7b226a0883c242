//! Sync events: what happens to this node's connections and catch-ups, pushed to the app.
//!
//! Owns [`SyncEvent`], the bounded [`EventBus`] the engine publishes on, and
//! [`SyncEvents`], one subscriber's cursor (from [`crate::WaveSyncDb::sync_events`]).
//! Events sit in a ring buffer of fixed size; each subscriber keeps its own cursor, so
//! publishing never waits and never fails: a subscriber that falls behind is told how many
//! events it missed ([`EventsLagged`]) and reads the current state from
//! [`crate::WaveSyncDb::sync_status`]. The bus must never be the source of truth, and the
//! engine must never wait on it.
//!
//! Subscribe first, then read `sync_status()`: every change after the subscription is then
//! seen, none can fall in between. The stream ends (`None`) once the engine has stopped
//! and every buffered event was read.

use event_listener::{Event, EventListener};
use futures::Stream;
use libp2p::PeerId;
use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

pub use crate::status::ConnectionKind;

/// How many events a subscriber may fall behind before it lags.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Whether this node can be dialled from the internet, as other peers' probes found out
/// (libp2p AutoNAT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not known yet (no probe answered).
    Unknown,
    /// Reachable at this address: peers can dial it directly.
    Public(libp2p::Multiaddr),
    /// Behind a NAT or firewall: peers reach it through a relay, then try hole punching.
    Private,
}

/// Something that happened to this node's network, for the app to show or act on.
///
/// New variants may be added; match with a `_` arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A peer of this node's group is connected (it proved it speaks the group's
    /// protocol). `peers()` and `sync_status()` show it connected by the time this event
    /// is read (and disconnected by the time [`SyncEvent::PeerDisconnected`] is).
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// How its connection travels.
        connection: ConnectionKind,
    },
    /// The last connection to a peer of the group closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer reached through a relay now has a direct connection too (hole punched).
    ConnectionUpgraded {
        /// The peer.
        peer: PeerId,
    },
    /// One round of hole punching to a relayed peer failed; sync goes on through the
    /// relay. It is not final: the engine tries again later with waits that double (see
    /// README's "Beyond the LAN"), and each failed round publishes this event again, so a
    /// [`SyncEvent::ConnectionUpgraded`] for the same peer may still follow.
    UpgradeFailed {
        /// The peer.
        peer: PeerId,
    },
    /// A relay server accepted this node's reservation: peers can reach it through the
    /// relay.
    RelayReserved {
        /// The relay server.
        relay: PeerId,
    },
    /// The connection to a relay server was lost; the engine dials it again by itself.
    RelayLost {
        /// The relay server.
        relay: PeerId,
    },
    /// What AutoNAT found out about this node's reachability changed.
    ReachabilityChanged(Reachability),
    /// A peer of the group told us what it has applied (its heads, in
    /// `sync_status()`): the point to check "does a peer hold my writes yet".
    HeadsUpdated {
        /// The peer.
        peer: PeerId,
    },
    /// A connection failed: a dial, or a peer's handshake (a wrong group secret shows
    /// here). Also kept in `sync_status().connection_failures`.
    ConnectionFailed(crate::status::ConnectionFailure),
    /// A catch-up from `peer` started: `total` transactions are missing here (as the
    /// peer claims them).
    CatchUpStarted {
        /// The peer pulled from.
        peer: PeerId,
        /// Transactions to pull.
        total: u64,
    },
    /// A page of a catch-up was applied.
    CatchUpProgress {
        /// The peer pulled from.
        peer: PeerId,
        /// Transactions applied so far in this catch-up.
        done: u64,
        /// Transactions to pull.
        total: u64,
    },
    /// A catch-up from `peer` ended (everything pulled, or the peer left).
    CatchUpFinished {
        /// The peer pulled from.
        peer: PeerId,
        /// Transactions applied in this catch-up.
        done: u64,
    },
}

/// The subscriber fell behind and missed this many events; read `sync_status()` again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sync-event subscriber lagged behind and missed {0} events; read sync_status() again")]
pub struct EventsLagged(pub u64);

struct Ring {
    /// Id of the oldest buffered event.
    first_id: u64,
    buffer: VecDeque<SyncEvent>,
    closed: bool,
}

/// The engine's side: publish never blocks. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    ring: Mutex<Ring>,
    capacity: usize,
    event: Event,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(EVENT_BUFFER)
    }
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> EventBus {
        EventBus {
            inner: Arc::new(Inner {
                ring: Mutex::new(Ring {
                    first_id: 0,
                    buffer: VecDeque::new(),
                    closed: false,
                }),
                capacity: capacity.max(1),
                event: Event::new(),
            }),
        }
    }

    /// Publishes one event; drops the oldest when full. Never waits.
    pub(crate) fn publish(&self, event: SyncEvent) {
        tracing::trace!(?event, "sync event");
        {
            // A std mutex: held for a push, never across an await.
            let mut ring = self
                .inner
                .ring
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ring.buffer.push_back(event);
            if ring.buffer.len() > self.inner.capacity {
                ring.buffer.pop_front();
                ring.first_id += 1;
            }
        }
        self.inner.event.notify(usize::MAX);
    }

    /// Ends every subscription once its buffered events are read (the engine stopped).
    pub(crate) fn close(&self) {
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.inner.event.notify(usize::MAX);
    }

    /// A subscriber that sees every event published from now on.
    pub(crate) fn subscribe(&self) -> SyncEvents {
        let ring = self
            .inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        SyncEvents {
            next_id: ring.first_id + ring.buffer.len() as u64,
            bus: Some(Arc::clone(&self.inner)),
            listener: None,
        }
    }
}

/// A subscription to [`SyncEvent`]s; see [`crate::WaveSyncDb::sync_events`]. Also a
/// [`Stream`], which ends when the engine stops.
pub struct SyncEvents {
    /// `None` for a database without network: the stream is over at once.
    bus: Option<Arc<Inner>>,
    next_id: u64,
    listener: Option<EventListener>,
}

impl std::fmt::Debug for SyncEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEvents")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl SyncEvents {
    /// A subscription that never yields (a database without network).
    pub(crate) fn ended() -> SyncEvents {
        SyncEvents {
            bus: None,
            next_id: 0,
            listener: None,
        }
    }

    /// The next event if one is waiting: `Some(Err(_))` after a lag, `None` if nothing
    /// is waiting (or the engine stopped).
    pub fn try_recv(&mut self) -> Option<Result<SyncEvent, EventsLagged>> {
        self.next().ok().flatten()
    }

    /// Waits for the next event; `None` once the engine stopped and everything buffered
    /// was read.
    pub async fn recv(&mut self) -> Option<Result<SyncEvent, EventsLagged>> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// `Ok(None)`: nothing waiting; `Err(())`: nothing waiting and the bus is closed.
    #[allow(clippy::result_unit_err)]
    fn next(&mut self) -> Result<Option<Result<SyncEvent, EventsLagged>>, ()> {
        let Some(bus) = &self.bus else {
            return Err(());
        };
        let ring = bus.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if self.next_id < ring.first_id {
            let missed = ring.first_id - self.next_id;
            self.next_id = ring.first_id;
            return Ok(Some(Err(EventsLagged(missed))));
        }
        let index = usize::try_from(self.next_id - ring.first_id).unwrap_or(usize::MAX);
        match ring.buffer.get(index) {
            Some(event) => {
                self.next_id += 1;
                Ok(Some(Ok(event.clone())))
            }
            None if ring.closed => Err(()),
            None => Ok(None),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<SyncEvent, EventsLagged>>> {
        loop {
            match self.next() {
                Ok(Some(item)) => {
                    self.listener = None;
                    return Poll::Ready(Some(item));
                }
                Err(()) => return Poll::Ready(None),
                Ok(None) => {}
            }
            let Some(bus) = &self.bus else {
                return Poll::Ready(None);
            };
            match self.listener.as_mut() {
                // Listen first, then check again: a publish in between is not missed.
                None => self.listener = Some(bus.event.listen()),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }
}

impl Stream for SyncEvents {
    type Item = Result<SyncEvent, EventsLagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl crate::WaveSyncDb {
    /// Subscribes to this node's [`SyncEvent`]s: peers connecting and leaving (direct or
    /// relayed), hole punches, relay reservations, reachability, catch-up progress.
    ///
    /// Subscribe first, then read [`crate::WaveSyncDb::sync_status`], and no event can
    /// fall in between. A subscriber that falls more than 1024 events behind gets
    /// [`EventsLagged`] and should read the status again; the engine never waits for it.
    /// Without network the stream ends at once.
    pub fn sync_events(&self) -> SyncEvents {
        match &self.engine {
            Some(engine) => engine.events.subscribe(),
            None => SyncEvents::ended(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_sees_what_follows_and_is_told_when_it_lags() {
        let bus = EventBus::new(2);
        let early = bus.subscribe();
        let p = PeerId::random();
        bus.publish(SyncEvent::PeerDisconnected { peer: p });
        let mut late = bus.subscribe();
        let mut early = early;
        bus.publish(SyncEvent::ConnectionUpgraded { peer: p });
        bus.publish(SyncEvent::UpgradeFailed { peer: p });
        // `early` missed the first event (capacity 2), `late` never saw it.
        assert_eq!(early.try_recv(), Some(Err(EventsLagged(1))));
        assert_eq!(
            early.try_recv(),
            Some(Ok(SyncEvent::ConnectionUpgraded { peer: p }))
        );
        assert_eq!(
            late.try_recv(),
            Some(Ok(SyncEvent::ConnectionUpgraded { peer: p }))
        );
        assert_eq!(
            late.try_recv(),
            Some(Ok(SyncEvent::UpgradeFailed { peer: p }))
        );
        assert_eq!(late.try_recv(), None);
    }

    #[test]
    fn the_stream_ends_after_close_once_drained() {
        let bus = EventBus::new(8);
        let mut events = bus.subscribe();
        let p = PeerId::random();
        bus.publish(SyncEvent::PeerDisconnected { peer: p });
        bus.close();
        smol::block_on(async {
            assert_eq!(
                events.recv().await,
                Some(Ok(SyncEvent::PeerDisconnected { peer: p }))
            );
            assert_eq!(events.recv().await, None);
        });
        assert!(SyncEvents::ended().try_recv().is_none());
    }
}
