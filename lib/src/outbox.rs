//! The hand-off of committed local change sets to the network engine. A writer never
//! waits on it.
//!
//! Owns the bounded queue between commits and the engine, and the engine's side of it
//! ([`EngineFeed`]). Every change set is in the log before it is handed off, so the queue
//! is only a fast path: when it is full, the writer goes on, the set is dropped from the
//! queue, and the engine is woken to read what it missed from the log instead. The engine
//! publishes its origin's transactions in sequence order, each exactly once, whichever
//! way it got them. This is what breaks the cycle "writer holds a connection and waits
//! for the engine, the engine waits for that connection" (SeaORM's SQLite pool may hold
//! a single connection).
//!
//! A receiver taken by the application ([`crate::WaveSyncDb::change_set_receiver`]) is
//! different: it asked for every change set on a channel, so writers wait for room there
//! (back-pressure), as documented on that method.
//!
//! It never reads or writes the database except through `log`, and never holds a lock
//! across an await.

use crate::clock::NodeId;
use crate::log::{self, PageLimit};
use crate::protocol::ChangeSet;
use sea_orm::{DatabaseConnection, DbErr};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How many committed change sets may wait in the engine's queue.
const QUEUE_CAPACITY: usize = 256;
/// How many transactions the engine reads back from the log at a time.
const READ_BATCH: u64 = 256;

enum Receiver {
    Engine(async_channel::Sender<ChangeSet>),
    Application(async_channel::Sender<ChangeSet>),
}

/// What the engine shares with the writers.
#[derive(Default)]
struct Signal {
    /// A change set could not be queued: read the log.
    overflowed: AtomicBool,
    wake: event_listener::Event,
}

/// The writers' side.
pub(crate) struct Outbox {
    receiver: Mutex<Option<Receiver>>,
    signal: Arc<Signal>,
    /// The highest sequence number this process committed (or found at start).
    committed: AtomicU64,
    /// Whether the engine confirmed this node's numbering (`protocol::recovery`): then
    /// each commit records its number as confirmed.
    confirmed: Arc<AtomicBool>,
}

impl Outbox {
    /// An outbox with no receiver yet; `committed` is this node's head at start.
    pub(crate) fn new(committed: u64) -> Outbox {
        Outbox {
            receiver: Mutex::new(None),
            signal: Arc::default(),
            committed: AtomicU64::new(committed),
            confirmed: Arc::default(),
        }
    }

    fn set(&self, receiver: Receiver) {
        *self.receiver.lock().unwrap_or_else(PoisonError::into_inner) = Some(receiver);
    }

    /// Whether the engine confirmed this node's numbering its alone.
    pub(crate) fn numbering_confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Opens the engine's feed; replaces (closes) any earlier receiver.
    pub(crate) fn open_engine(&self) -> EngineFeed {
        let (sender, receiver) = async_channel::bounded(QUEUE_CAPACITY);
        self.set(Receiver::Engine(sender));
        let committed = self.committed.load(Ordering::Acquire);
        EngineFeed {
            receiver,
            signal: Arc::clone(&self.signal),
            // Sets committed before now reach peers through catch-up.
            next: committed + 1,
            ready: VecDeque::new(),
            arrived: None,
            floor: committed,
            confirmed: Arc::clone(&self.confirmed),
        }
    }

    /// Opens a channel of every change set for the application; replaces (closes) any
    /// earlier receiver, the engine's included.
    pub(crate) fn open_application(&self) -> async_channel::Receiver<ChangeSet> {
        let (sender, receiver) = async_channel::bounded(QUEUE_CAPACITY);
        self.set(Receiver::Application(sender));
        receiver
    }

    /// Hands a committed change set on. Never waits for the engine.
    pub(crate) async fn hand_off(&self, change_set: ChangeSet) {
        self.committed.fetch_max(change_set.seq, Ordering::AcqRel);
        let (engine, application) = {
            let guard = self.receiver.lock().unwrap_or_else(PoisonError::into_inner);
            match &*guard {
                Some(Receiver::Engine(sender)) => (Some(sender.clone()), None),
                Some(Receiver::Application(sender)) => (None, Some(sender.clone())),
                None => (None, None),
            }
        };
        if let Some(sender) = engine {
            match sender.try_send(change_set) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(_)) => {
                    tracing::debug!(
                        "engine queue full; the engine reads the change set from the log"
                    );
                    self.signal.overflowed.store(true, Ordering::Release);
                    self.signal.wake.notify(1);
                }
                Err(async_channel::TrySendError::Closed(_)) => {}
            }
        } else if let Some(sender) = application
            && sender.send(change_set).await.is_err()
        {
            tracing::debug!("change set receiver dropped; local changes stay in the log");
        }
    }
}

/// The engine's side: this node's committed change sets in sequence order.
pub(crate) struct EngineFeed {
    receiver: async_channel::Receiver<ChangeSet>,
    signal: Arc<Signal>,
    /// The next sequence number to hand out.
    next: u64,
    /// Read from the log or received, in order from `next`.
    ready: VecDeque<ChangeSet>,
    /// Received past a gap, waiting for the gap to be read from the log.
    arrived: Option<ChangeSet>,
    /// This node's head when the feed opened.
    floor: u64,
    confirmed: Arc<AtomicBool>,
}

impl EngineFeed {
    /// This node's head when the feed opened: what it had committed before this run.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// Tells the writers that this node's numbering is confirmed (or no longer is).
    pub(crate) fn set_confirmed(&self, confirmed: bool) {
        self.confirmed.store(confirmed, Ordering::Release);
    }

    /// Forgets every change set numbered up to `head`: this node's transactions were
    /// issued again under new numbers (`protocol::recovery`), which peers pull.
    pub(crate) fn restart_after(&mut self, head: u64) {
        self.next = self.next.max(head + 1);
        self.ready.retain(|set| set.seq > head);
        if self.arrived.as_ref().is_some_and(|set| set.seq <= head) {
            self.arrived = None;
        }
    }

    /// Makes the next [`EngineFeed::next`] compare this node's head with what it handed
    /// out, and read any difference from the log: for commits whose writer was cancelled
    /// after its `COMMIT`, or made by another process on the same file. Called on every
    /// catch-up tick.
    pub(crate) fn check_log(&self) {
        self.signal.overflowed.store(true, Ordering::Release);
        self.signal.wake.notify(1);
    }

    /// The next change set of `origin` to publish, or `None` once the writers' side has
    /// been replaced. Cancel-safe: a set taken from the queue is kept until handed out.
    pub(crate) async fn next(
        &mut self,
        conn: &DatabaseConnection,
        origin: NodeId,
    ) -> Option<ChangeSet> {
        loop {
            if let Some(set) = self.ready.pop_front() {
                return Some(set);
            }
            if let Some(set) = self.arrived.take() {
                if set.seq < self.next {
                    continue;
                }
                if set.seq == self.next {
                    self.next += 1;
                    return Some(set);
                }
                let through = (set.seq - 1).min(self.next + READ_BATCH - 1);
                self.arrived = Some(set);
                if let Err(err) = self.read_log(conn, origin, through).await {
                    tracing::warn!(%err, "reading local change sets from the log");
                    // Peers get them through catch-up; do not try again forever.
                    self.next = through + 1;
                }
                continue;
            }
            if self.signal.overflowed.swap(false, Ordering::AcqRel) {
                match log::head(conn, origin).await {
                    Ok(head) if head >= self.next => {
                        // A bounded batch at a time; the rest on the next call.
                        let through = head.min(self.next + READ_BATCH - 1);
                        if through < head {
                            self.signal.overflowed.store(true, Ordering::Release);
                        }
                        if let Err(err) = self.read_log(conn, origin, through).await {
                            tracing::warn!(%err, "reading local change sets from the log");
                            self.next = through + 1;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "reading this node's head"),
                }
                continue;
            }
            let listener = self.signal.wake.listen();
            if self.signal.overflowed.load(Ordering::Acquire) {
                continue;
            }
            futures::select_biased! {
                set = futures::FutureExt::fuse(self.receiver.recv()) => match set {
                    Ok(set) => self.arrived = Some(set),
                    Err(_) => return None,
                },
                () = futures::FutureExt::fuse(listener) => {}
            }
        }
    }

    /// Reads `origin`'s transactions `next..=through` from the log into `ready`; a
    /// transaction whose cells were all superseded since comes as an empty set (its number
    /// still counts).
    async fn read_log(
        &mut self,
        conn: &DatabaseConnection,
        origin: NodeId,
        through: u64,
    ) -> Result<(), DbErr> {
        let after = self.next - 1;
        let limit = PageLimit {
            entries: 5_000,
            bytes: 4 << 20,
        };
        let mut cursor = None;
        let mut carry = Vec::new();
        let mut sets = Vec::new();
        loop {
            let (operations, next) =
                log::page(conn, origin, after, through, cursor.as_ref(), limit).await?;
            let last = next.is_none();
            sets.extend(crate::protocol::catchup::assemble(
                origin, &mut carry, operations, last,
            ));
            if last {
                break;
            }
            cursor = next;
        }
        let mut sets = sets.into_iter().peekable();
        for seq in self.next..=through {
            let set = match sets.peek() {
                Some(set) if set.seq == seq => sets.next(),
                _ => None,
            };
            self.ready.push_back(set.unwrap_or(ChangeSet {
                origin,
                seq,
                operations: Vec::new(),
            }));
        }
        self.next = through + 1;
        tracing::debug!(
            through,
            "read local change sets the engine queue could not take"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::WaveSyncDbBuilder;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    #[test]
    fn the_engine_gets_every_change_set_in_order_when_its_queue_overflows() {
        smol::block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}?mode=rwc", dir.path().join("a.db").display());
            let db = WaveSyncDbBuilder::new(url, "t")
                .without_network()
                .build()
                .await
                .unwrap();
            db.execute_unprepared("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, v INTEGER)")
                .await
                .unwrap();
            {
                use crate::schema::{ColumnMeta, TableMeta, ValueKind};
                let meta = TableMeta::new(
                    "t",
                    vec!["id".into()],
                    vec![
                        ColumnMeta {
                            name: "id".into(),
                            kind: ValueKind::Text,
                            nullable: false,
                        },
                        ColumnMeta {
                            name: "v".into(),
                            kind: ValueKind::Integer,
                            nullable: true,
                        },
                    ],
                )
                .unwrap();
                db.shared.registry_mut().insert_synced(meta);
                crate::log::record_table_keys(&db.shared.conn, "t", &["id".to_owned()])
                    .await
                    .unwrap();
            }
            let mut feed = db.shared.outbox.open_engine();
            let total = super::QUEUE_CAPACITY as u64 + 300;
            for n in 0..total {
                db.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "INSERT INTO t (id, v) VALUES (?, ?)",
                    [format!("k{n}").into(), (n as i64).into()],
                ))
                .await
                .unwrap();
            }
            // The queue took the first sets; the engine reads the rest from the log.
            let origin = db.node_id();
            let mut seqs = Vec::new();
            for _ in 0..total {
                let set = feed.next(&db.shared.engine_conn, origin).await.unwrap();
                assert_eq!(set.operations.len(), 1, "seq {}", set.seq);
                seqs.push(set.seq);
            }
            assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
        });
    }
}
