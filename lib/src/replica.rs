//! The replica's state: what a `WaveSyncDb`, its clones, its transactions and the engine
//! share.
//!
//! Owns [`Shared`]: the two connection pools, the node's identity and clock, the
//! registry, the capture plan cache, the outbox, the notification bus and the metrics.
//! It sits below the SeaORM facade (`connection`) and the engine, which both use it; it
//! never implements a SeaORM trait, never spawns a task, and imports nothing above it.

use crate::capture::{self, Capture, Step};
use crate::clock::{Hlc, HlcClock, NodeId};
use crate::error::RejectReason;
use crate::metrics::Metrics;
use crate::notify::{Bus, ChangeSource, notifications};
use crate::outbox::Outbox;
use crate::protocol::ChangeSet;
use crate::schema::Registry;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// How far ahead of the clock its persisted bound is set (see
/// [`Shared::clock_bound_to_persist`]).
const CLOCK_LEASE: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch by the system clock (0 if it is before 1970): the
/// `now` this replica hands its pure clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// State shared by a `WaveSyncDb`, its clones and its transactions.
pub(crate) struct Shared {
    /// The application's pool: its reads and writes, and schema registration.
    pub(crate) conn: DatabaseConnection,
    /// The engine's own connection (remote applies, catch-up reads): it never waits for
    /// a connection of the application's pool, and does not enforce foreign keys (see
    /// `apply`). For an in-memory database, the application's pool itself.
    pub(crate) engine_conn: DatabaseConnection,
    /// Whether the engine has a connection of its own (not for an in-memory database).
    pub(crate) engine_apart: bool,
    /// Whether the engine applies with the main schema's triggers off (`trigger_mode`);
    /// a connection the engine's pool opens follows it.
    pub(crate) engine_triggers_off: Arc<std::sync::atomic::AtomicBool>,
    /// Whether some connection of the application's pool may have touch triggers
    /// (`trigger_mode`): from then on, writes take the path that installs or removes them.
    pub(crate) touch_triggers_ever: std::sync::atomic::AtomicBool,
    pub(crate) node_id: NodeId,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) clock: Mutex<HlcClock>,
    pub(crate) bus: Arc<Bus>,
    pub(crate) outbox: Outbox,
    /// Lets one autocommit write at a time ask SQLite for its write lock: the others wait
    /// here, in order, instead of in SQLite's busy handler, whose growing sleeps starve
    /// some writers past the busy timeout when many contend.
    pub(crate) write_gate: async_lock::Mutex<()>,
    /// Orders commits of synced transactions with the hand-off of their change sets.
    pub(crate) commit_order: async_lock::Mutex<()>,
    /// The clock bound the database holds (milliseconds): commits whose clock reading is
    /// below it need not persist the clock again.
    pub(crate) clock_bound_ms: std::sync::atomic::AtomicU64,
    pub(crate) metrics: Metrics,
    /// Capture plans by SQL text: SeaORM sends the same few texts over and over, and
    /// parsing each one again (reads included) would tax every statement.
    pub(crate) plans: Mutex<PlanCache>,
}

/// Plans made against one registry generation.
#[derive(Default)]
pub(crate) struct PlanCache {
    generation: u64,
    plans: std::collections::HashMap<String, Option<Capture>>,
}

/// Distinct statement texts to remember; past that the cache starts over.
const PLAN_CACHE_ENTRIES: usize = 512;

impl Shared {
    /// A timestamp for a local write.
    pub(crate) fn tick(&self) -> Hlc {
        self.clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tick(now_ms())
    }

    /// The clock's last reading.
    fn clock_reading(&self) -> Hlc {
        self.clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
    }

    /// The clock bound a committing transaction must persist, if the clock has reached
    /// the one the database holds. The bound is set [`CLOCK_LEASE`] ahead, so that most
    /// commits write no clock at all, and a restarted node resumes above every timestamp
    /// it issued or observed (at worst one lease ahead of real time, well inside peers'
    /// drift bound).
    pub(crate) fn clock_bound_to_persist(&self) -> Option<Hlc> {
        let reading = self.clock_reading();
        let held = self
            .clock_bound_ms
            .load(std::sync::atomic::Ordering::Acquire);
        (reading.time_ms >= held).then(|| Hlc {
            time_ms: reading
                .time_ms
                .saturating_add(CLOCK_LEASE.as_millis() as u64),
            counter: 0,
            node: self.node_id,
        })
    }

    /// Records that `bound` committed.
    pub(crate) fn clock_bound_persisted(&self, bound: Hlc) {
        self.clock_bound_ms
            .fetch_max(bound.time_ms, std::sync::atomic::Ordering::AcqRel);
    }

    /// Checks that every timestamp is within the drift bound, then observes the latest.
    pub(crate) fn observe(
        &self,
        timestamps: impl Iterator<Item = Hlc>,
    ) -> Result<(), RejectReason> {
        let now = now_ms();
        let mut clock = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut latest = None;
        for hlc in timestamps {
            clock.check_drift(hlc, now)?;
            latest = latest.max(Some(hlc));
        }
        if let Some(latest) = latest {
            clock.update(latest, now)?;
        }
        Ok(())
    }

    /// The registry, to read. A poisoned lock is taken over: a panic elsewhere must not
    /// stop every later write.
    pub(crate) fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry, to change.
    pub(crate) fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine's feed of committed change sets; replaces (closes) any earlier one.
    pub(crate) fn open_outbox(&self) -> crate::outbox::EngineFeed {
        self.outbox.open_engine()
    }

    pub(crate) fn plan_statement(&self, sql: &str) -> Result<Option<Capture>, DbErr> {
        let registry = self.registry();
        if registry.synced_tables().next().is_none() {
            return Ok(None);
        }
        {
            let cache = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.generation == registry.generation()
                && let Some(plan) = cache.plans.get(sql)
            {
                return Ok(plan.clone());
            }
        }
        // Refusals are not cached: they are errors, and rare.
        let plan =
            capture::plan_statement(sql, DbBackend::Sqlite, &registry).map_err(DbErr::from)?;
        let mut cache = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.generation != registry.generation() || cache.plans.len() >= PLAN_CACHE_ENTRIES {
            cache.plans.clear();
            cache.generation = registry.generation();
        }
        cache.plans.insert(sql.to_owned(), plan.clone());
        Ok(plan)
    }

    pub(crate) fn plan_script(&self, sql: &str) -> Result<Option<Vec<Step>>, DbErr> {
        let registry = self.registry();
        if registry.synced_tables().next().is_none() {
            return Ok(None);
        }
        capture::plan_script(sql, DbBackend::Sqlite, &registry).map_err(DbErr::from)
    }

    /// Hands a committed local change set to the engine and notifies subscribers. Never
    /// waits for the engine (see `outbox`).
    pub(crate) async fn publish_local(&self, change_set: ChangeSet) {
        self.metrics.local_change_set();
        self.bus
            .publish(notifications(&change_set, ChangeSource::Local));
        self.outbox.hand_off(change_set).await;
    }
}
