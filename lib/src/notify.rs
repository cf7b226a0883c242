//! The change-notification bus: who changed which rows of which table, local or remote.
//!
//! Owns [`ChangeNotification`] and [`ChangeSubscription`]. Built on `event-listener`, so
//! it works on any executor. Notifications sit in a bounded ring buffer; each subscriber
//! keeps its own cursor, so a slow subscriber never blocks a writer: it is told how many
//! notifications it missed ([`Lagged`]) and can reload. It must never be the source of
//! truth: it says that something changed, the database says what is there.

use crate::protocol::{ChangeSet, WriteKind};
use crate::value::CellValue;
use event_listener::{Event, EventListener};
use futures::Stream;
use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeSource {
    /// A write made through this `WaveSyncDb`.
    Local,
    /// A change received from a peer and applied here.
    Remote,
}

/// One changed row.
#[derive(Clone, Debug, PartialEq)]
pub struct RowChange {
    /// What happened to the row.
    pub kind: WriteKind,
    /// The row's primary key values, in key order.
    pub primary_key: Vec<CellValue>,
}

/// Emitted once per affected table after every committed local transaction and every
/// applied remote change set.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeNotification {
    /// The table that changed.
    pub table: String,
    /// Local write or remote change.
    pub source: ChangeSource,
    /// The rows that changed, in order.
    pub rows: Vec<RowChange>,
}

impl ChangeNotification {
    /// Whether the change came from a peer.
    pub fn is_remote(&self) -> bool {
        self.source == ChangeSource::Remote
    }

    /// Whether the row with this primary key changed.
    pub fn touches(&self, primary_key: &[CellValue]) -> bool {
        self.rows.iter().any(|row| row.primary_key == primary_key)
    }
}

/// The subscriber fell behind and missed this many notifications; reload what it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("subscriber lagged behind and missed {0} change notifications; reload")]
pub struct Lagged(pub u64);

struct Ring {
    /// Id of the oldest buffered notification.
    first_id: u64,
    buffer: VecDeque<Arc<ChangeNotification>>,
}

pub(crate) struct Bus {
    ring: Mutex<Ring>,
    capacity: usize,
    event: Event,
}

impl Bus {
    pub(crate) fn new(capacity: usize) -> Arc<Bus> {
        Arc::new(Bus {
            ring: Mutex::new(Ring {
                first_id: 0,
                buffer: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            event: Event::new(),
        })
    }

    pub(crate) fn publish(&self, notifications: impl IntoIterator<Item = ChangeNotification>) {
        {
            // A std mutex: held for a push, never across an await.
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            for notification in notifications {
                ring.buffer.push_back(Arc::new(notification));
                if ring.buffer.len() > self.capacity {
                    ring.buffer.pop_front();
                    ring.first_id += 1;
                }
            }
        }
        self.event.notify(usize::MAX);
    }

    pub(crate) fn subscribe(self: &Arc<Self>) -> ChangeSubscription {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ChangeSubscription {
            next_id: ring.first_id + ring.buffer.len() as u64,
            bus: Arc::clone(self),
            listener: None,
        }
    }
}

/// A subscription to change notifications; see [`crate::WaveSyncDb::subscribe`].
///
/// It sees every notification published after it was created, so subscribe first and
/// load second, and no change can fall in between. It is also a [`Stream`].
pub struct ChangeSubscription {
    bus: Arc<Bus>,
    next_id: u64,
    listener: Option<EventListener>,
}

impl ChangeSubscription {
    /// The next notification, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Result<Arc<ChangeNotification>, Lagged>> {
        let ring = self.bus.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if self.next_id < ring.first_id {
            let missed = ring.first_id - self.next_id;
            self.next_id = ring.first_id;
            return Some(Err(Lagged(missed)));
        }
        let index = usize::try_from(self.next_id - ring.first_id).ok()?;
        let notification = ring.buffer.get(index)?.clone();
        self.next_id += 1;
        Some(Ok(notification))
    }

    /// Waits for the next notification.
    pub async fn recv(&mut self) -> Result<Arc<ChangeNotification>, Lagged> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Drains every waiting notification; `true` if there was at least one (or a lag).
    /// Useful to coalesce a burst of changes into one reload.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        while self.try_recv().is_some() {
            any = true;
        }
        any
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<ChangeNotification>, Lagged>> {
        loop {
            if let Some(item) = self.try_recv() {
                self.listener = None;
                return Poll::Ready(item);
            }
            match self.listener.as_mut() {
                // Listen first, then check again: a publish between the check and the
                // listen would otherwise be missed.
                None => self.listener = Some(self.bus.event.listen()),
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

impl Stream for ChangeSubscription {
    type Item = Result<Arc<ChangeNotification>, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Some)
    }
}

/// One notification per table, rows in order.
pub(crate) fn notifications(
    change_set: &ChangeSet,
    source: ChangeSource,
) -> Vec<ChangeNotification> {
    let mut out: Vec<ChangeNotification> = Vec::new();
    for op in &change_set.operations {
        let row = RowChange {
            kind: op.kind,
            primary_key: op.primary_key.iter().map(|(_, v)| v.clone()).collect(),
        };
        match out.iter_mut().find(|n| n.table == op.table) {
            Some(notification) => notification.rows.push(row),
            None => out.push(ChangeNotification {
                table: op.table.clone(),
                source,
                rows: vec![row],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(table: &str) -> ChangeNotification {
        ChangeNotification {
            table: table.into(),
            source: ChangeSource::Local,
            rows: vec![],
        }
    }

    #[test]
    fn subscribers_see_only_later_notifications_in_order() {
        let bus = Bus::new(8);
        bus.publish([note("before")]);
        let mut sub = bus.subscribe();
        bus.publish([note("a"), note("b")]);
        assert_eq!(sub.try_recv().unwrap().unwrap().table, "a");
        assert_eq!(sub.try_recv().unwrap().unwrap().table, "b");
        assert!(sub.try_recv().is_none());
    }

    #[test]
    fn a_slow_subscriber_is_told_it_lagged() {
        let bus = Bus::new(2);
        let mut sub = bus.subscribe();
        bus.publish([note("a"), note("b"), note("c")]);
        assert_eq!(sub.try_recv().unwrap(), Err(Lagged(1)));
        assert_eq!(sub.try_recv().unwrap().unwrap().table, "b");
    }

    #[test]
    fn recv_wakes_on_publish_from_another_thread() {
        let bus = Bus::new(8);
        let mut sub = bus.subscribe();
        let publisher = {
            let bus = Arc::clone(&bus);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                bus.publish([note("x")]);
            })
        };
        let got = futures::executor::block_on(sub.recv()).unwrap();
        assert_eq!(got.table, "x");
        publisher.join().unwrap();
    }
}
