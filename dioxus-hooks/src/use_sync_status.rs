//! [`use_sync_status`]: where this node stands, re-read when the engine says something
//! moved.
//!
//! Owns the loop that follows two pushes, the engine's [`SyncEvents`] (peers coming and
//! going, catch-up progress, heads of peers) and the change bus (every commit, local or
//! remote, moves this node's heads), and re-reads `sync_status()` after each burst of
//! either. It never polls on a timer: the only timers are the burst's settling (as in
//! [`crate::watch`]) and a short recheck while an event is ahead of the status (see
//! [`RECHECKS`]). It never writes to the database.

use crate::watch::{MAX_DELAY, QUIET, sleep};
use dioxus::prelude::*;
use futures::FutureExt;
use futures::future::select;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::{Future, pending};
use std::pin::pin;
use std::time::{Duration, Instant};
use wavesyncdb::{
    ChangeSubscription, EventsLagged, PeerId, SyncEvent, SyncEvents, SyncStatus, WaveSyncDb,
};

/// The delays of the rechecks after a peer connected or left while the status read just
/// after does not show it yet: the engine announces a connection from its network loop a
/// moment before its sync driver records the peer in `sync_status()`. About 3 s in all,
/// then the hook waits for the next push.
const RECHECKS: [Duration; 6] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

/// A signal of where this node stands in its group: connected peers
/// ([`SyncStatus::connected_peers`]), how many transactions it still lacks
/// ([`SyncStatus::behind`]), and per peer details (how its connection travels, a catch-up
/// in progress). `None` until the first answer.
///
/// It is pushed, not polled: the hook subscribes to the engine's
/// [sync events](WaveSyncDb::sync_events) and to the change bus (a commit here or from a
/// peer moves the heads) *before* its first read, so nothing falls in between, and
/// re-reads the status after each burst of either (a lagged subscription just means a
/// re-read). It re-renders only when the status differs. Without network, or once the
/// engine stopped, there are no events and it follows the changes alone. A failed read is
/// logged, the last status stays shown, and the next push reads again.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::{use_db, use_sync_status};
///
/// #[component]
/// fn StatusBar() -> Element {
///     let status = use_sync_status(use_db());
///     match status.read().as_ref() {
///         Some(s) => rsx! { p { "{s.connected_peers} peers, {s.behind} behind" } },
///         None => rsx! { p { "starting…" } },
///     }
/// }
/// ```
#[track_caller]
pub fn use_sync_status(db: impl Borrow<WaveSyncDb>) -> ReadSignal<Option<SyncStatus>> {
    let mut status = use_signal(|| None);
    let db = db.borrow();
    use_hook(move || {
        let db = db.clone();
        // Subscribe first, before the task and its first read: every event and change
        // after these lines wakes it.
        let mut pushes = Pushes {
            changes: db.subscribe(),
            events: Some(db.sync_events()),
            unconfirmed: Unconfirmed::default(),
        };
        spawn(async move {
            loop {
                match db.sync_status().await {
                    Ok(now) => {
                        pushes.confirm(&now);
                        if status.peek().as_ref() != Some(&now) {
                            status.set(Some(now));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the sync status; keeping the last one");
                    }
                }
                pushes.next().await;
            }
        });
        ReadSignal::from(status)
    })
}

/// What woke the hook.
enum Wake {
    /// A change notification (or a lag of the change bus).
    Change,
    /// A sync event (or a lag of the event stream).
    Event(Result<SyncEvent, EventsLagged>),
    /// The event stream ended: the engine stopped, or there is none.
    EventsEnded,
    /// A timer: a recheck is due, or a burst went quiet.
    Timer,
}

/// The hook's subscriptions, and what the last events said the status should show.
struct Pushes {
    changes: ChangeSubscription,
    /// `None` once the stream ended.
    events: Option<SyncEvents>,
    unconfirmed: Unconfirmed,
}

/// Connection changes the events announced and the status does not show yet, and the
/// rechecks done for them. Pure: no subscription, no clock.
#[derive(Debug, Default)]
struct Unconfirmed {
    /// Per peer: connected (`true`) or gone (`false`), as its last event said.
    peers: HashMap<PeerId, bool>,
    /// Rechecks done since the last new expectation.
    rechecks: usize,
}

impl Unconfirmed {
    /// Notes what an event says the status will show.
    fn note(&mut self, event: &Result<SyncEvent, EventsLagged>) {
        let (peer, connected) = match event {
            Ok(SyncEvent::PeerConnected { peer, .. }) => (*peer, true),
            Ok(SyncEvent::PeerDisconnected { peer }) => (*peer, false),
            _ => return,
        };
        self.peers.insert(peer, connected);
        self.rechecks = 0;
    }

    /// Forgets the expectations a status met; `connected` says whether it lists a peer as
    /// connected.
    fn confirm(&mut self, connected: impl Fn(&PeerId) -> bool) {
        self.peers
            .retain(|peer, expected| connected(peer) != *expected);
    }

    /// The delay of the next recheck while an event is still ahead of the status; `None`
    /// when there is none left to wait for (the expectations are then given up).
    fn recheck(&mut self) -> Option<Duration> {
        if self.peers.is_empty() {
            return None;
        }
        let delay = RECHECKS.get(self.rechecks).copied();
        match delay {
            Some(_) => self.rechecks += 1,
            None => {
                tracing::debug!(peers = ?self.peers, "the sync status never showed these peers' connection change");
                self.peers.clear();
            }
        }
        delay
    }
}

impl Pushes {
    /// Forgets the expectations `status` meets.
    fn confirm(&mut self, status: &SyncStatus) {
        self.unconfirmed.confirm(|peer| {
            status
                .peers
                .iter()
                .any(|info| info.peer_id == *peer && info.connected)
        });
    }

    fn note(&mut self, event: &Result<SyncEvent, EventsLagged>) {
        self.unconfirmed.note(event);
    }

    /// Waits until the status should be read again: a change or an event, then until the
    /// burst around it settles; or a recheck is due.
    async fn next(&mut self) {
        let recheck = self.unconfirmed.recheck();
        loop {
            match self.wake(recheck).await {
                Wake::Timer => return,
                Wake::EventsEnded => {
                    // Without network, or the engine stopped: follow the changes alone.
                    self.events = None;
                }
                Wake::Change => break,
                Wake::Event(event) => {
                    self.note(&event);
                    break;
                }
            }
        }
        self.settle().await;
    }

    /// Absorbs changes and events until none arrives for [`QUIET`], at most for
    /// [`MAX_DELAY`]: a burst costs one read.
    async fn settle(&mut self) {
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            self.changes.drain();
            while let Some(event) = self.events.as_mut().and_then(SyncEvents::try_recv) {
                self.note(&event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.wake(Some(QUIET.min(left))).await {
                Wake::Timer => return,
                Wake::EventsEnded => self.events = None,
                Wake::Change => {}
                Wake::Event(event) => self.note(&event),
            }
        }
    }

    /// The first of: a change, an event (or the end of the events), `timer` elapsed.
    async fn wake(&mut self, timer: Option<Duration>) -> Wake {
        let Pushes {
            changes, events, ..
        } = self;
        let change = async {
            // A notification or a lag: either way, read again.
            let _ = changes.recv().await;
            Wake::Change
        };
        let event = async {
            match events.as_mut() {
                Some(events) => match events.recv().await {
                    Some(event) => Wake::Event(event),
                    None => Wake::EventsEnded,
                },
                None => pending().await,
            }
        };
        let timer = async {
            match timer {
                Some(delay) => sleep(delay).await,
                None => pending().await,
            }
            Wake::Timer
        };
        first(change, first(event, timer)).await
    }
}

/// The output of whichever of `a` and `b` finishes first (both are safe to drop).
async fn first<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    select(pin!(a), pin!(b))
        .map(|either| either.factor_first().0)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn an_event_ahead_of_the_status_is_rechecked_with_growing_delays_then_given_up() {
        let (a, b) = (peer(), peer());
        let mut unconfirmed = Unconfirmed::default();
        assert_eq!(
            unconfirmed.recheck(),
            None,
            "nothing announced, nothing to recheck"
        );
        unconfirmed.note(&Ok(SyncEvent::PeerConnected {
            peer: a,
            connection: wavesyncdb::ConnectionKind::Direct,
        }));
        unconfirmed.note(&Ok(SyncEvent::PeerDisconnected { peer: b }));
        // A status that lists neither: `b` gone is confirmed, `a` connected is not yet.
        unconfirmed.confirm(|_| false);
        let delays: Vec<Duration> = std::iter::from_fn(|| unconfirmed.recheck()).collect();
        assert_eq!(delays, RECHECKS);
        assert!(
            unconfirmed.peers.is_empty(),
            "given up after the last recheck"
        );
    }

    #[test]
    fn a_status_that_shows_the_event_ends_the_rechecks_and_a_new_event_restarts_them() {
        let a = peer();
        let mut unconfirmed = Unconfirmed::default();
        unconfirmed.note(&Ok(SyncEvent::PeerDisconnected { peer: a }));
        unconfirmed.confirm(|p| *p == a);
        assert_eq!(unconfirmed.recheck(), Some(RECHECKS[0]));
        assert_eq!(unconfirmed.recheck(), Some(RECHECKS[1]));
        unconfirmed.note(&Ok(SyncEvent::PeerDisconnected { peer: a }));
        assert_eq!(
            unconfirmed.recheck(),
            Some(RECHECKS[0]),
            "a new event starts over"
        );
        unconfirmed.confirm(|_| false);
        assert_eq!(unconfirmed.recheck(), None);
        // Other events and lags announce no connection change.
        unconfirmed.note(&Ok(SyncEvent::HeadsUpdated { peer: a }));
        unconfirmed.note(&Err(EventsLagged(3)));
        assert_eq!(unconfirmed.recheck(), None);
    }
}
