//! Counters of what the sync core did: committed, applied and rejected change sets.
//!
//! Owns [`Metrics`] (lock-free counters, plus a small map of rejections by reason) and
//! its public [`MetricsSnapshot`]. It never decides anything; it only counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    local_change_sets: AtomicU64,
    remote_change_sets_applied: AtomicU64,
    remote_rows_changed: AtomicU64,
    gossip_published: AtomicU64,
    gossip_received: AtomicU64,
    catch_up_pages_received: AtomicU64,
    catch_up_operations_received: AtomicU64,
    catch_up_operations_served: AtomicU64,
    /// Shared with the catch-up codec, which sees the frames' sizes.
    bytes_received: Arc<AtomicU64>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of the sync counters of one [`crate::WaveSyncDb`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Local transactions committed with synced writes (each one `ChangeSet`).
    pub local_change_sets: u64,
    /// Remote change sets applied (duplicates included: applying one changes nothing).
    pub remote_change_sets_applied: u64,
    /// Rows inserted, updated or deleted here by remote changes.
    pub remote_rows_changed: u64,
    /// Gossip messages published (a large transaction takes several).
    pub gossip_published: u64,
    /// Gossip messages received.
    pub gossip_received: u64,
    /// Catch-up pages received from peers.
    pub catch_up_pages_received: u64,
    /// Operations received through catch-up.
    pub catch_up_operations_received: u64,
    /// Operations served to peers through catch-up.
    pub catch_up_operations_served: u64,
    /// Sync payload bytes received from peers: gossip messages and catch-up frames
    /// (transport framing and encryption not included).
    pub bytes_received: u64,
    /// Remote changes rejected, by reason (see [`crate::RejectReason::code`]; also
    /// `malformed` and `forged_origin` for messages that could not be read or trusted,
    /// `forged_page` for catch-up pages outside the range asked for).
    /// `unknown_table` and `unknown_column` count operations set aside rather than
    /// rejected: the rest of their change set applies, and values for columns this peer
    /// lacks wait in the log until its schema has them.
    pub rejected: BTreeMap<String, u64>,
}

impl MetricsSnapshot {
    /// All rejections, whatever the reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

impl Metrics {
    pub(crate) fn local_change_set(&self) {
        self.local_change_sets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remote_applied(&self, rows_changed: usize) {
        self.remote_change_sets_applied
            .fetch_add(1, Ordering::Relaxed);
        self.remote_rows_changed
            .fetch_add(rows_changed as u64, Ordering::Relaxed);
    }

    pub(crate) fn gossip_published(&self, messages: u64) {
        self.gossip_published.fetch_add(messages, Ordering::Relaxed);
    }

    pub(crate) fn gossip_received(&self, bytes: usize) {
        self.gossip_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The counter of received bytes, for the catch-up codec.
    pub(crate) fn bytes_received_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_received)
    }

    pub(crate) fn catch_up_page(&self, operations: u64) {
        self.catch_up_pages_received.fetch_add(1, Ordering::Relaxed);
        self.catch_up_operations_received
            .fetch_add(operations, Ordering::Relaxed);
    }

    pub(crate) fn catch_up_served(&self, operations: u64) {
        self.catch_up_operations_served
            .fetch_add(operations, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        *rejected.entry(reason).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        MetricsSnapshot {
            local_change_sets: self.local_change_sets.load(Ordering::Relaxed),
            remote_change_sets_applied: self.remote_change_sets_applied.load(Ordering::Relaxed),
            remote_rows_changed: self.remote_rows_changed.load(Ordering::Relaxed),
            gossip_published: self.gossip_published.load(Ordering::Relaxed),
            gossip_received: self.gossip_received.load(Ordering::Relaxed),
            catch_up_pages_received: self.catch_up_pages_received.load(Ordering::Relaxed),
            catch_up_operations_received: self.catch_up_operations_received.load(Ordering::Relaxed),
            catch_up_operations_served: self.catch_up_operations_served.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            rejected: rejected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        }
    }
}
