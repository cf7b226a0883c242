//! The commit step of a local transaction, shared by user transactions, the autocommit
//! fast path and the registration of tables: what SQLite noted is read, the operations go
//! to the log with the transaction's sequence number and the clock bound in the same
//! database transaction, it commits, and only then is the change set handed on (in
//! sequence order) and the clock bound recorded.
//!
//! It never holds a lock or a connection across an await on the engine: the hand-off only
//! queues the change set.

use crate::clock::Hlc;
use crate::log;
use crate::protocol::{ChangeSet, SyncOperation};
use crate::replica::Shared;
use sea_orm::{DatabaseTransaction, DbErr};

/// After a local commit: records the persisted clock bound and hands the change set on.
pub(crate) async fn after_commit(
    shared: &Shared,
    clock_bound: Option<Hlc>,
    seq: u64,
    operations: Vec<SyncOperation>,
) {
    if let Some(bound) = clock_bound {
        shared.clock_bound_persisted(bound);
    }
    tracing::debug!(
        seq,
        operations = operations.len(),
        "committed synced transaction"
    );
    shared
        .publish_local(ChangeSet {
            origin: shared.node_id,
            seq,
            operations,
        })
        .await;
}

/// Whether SQLite noted what a transaction changed (see `trigger_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notes {
    /// No touch triggers.
    None,
    /// The connection keeps its touch triggers (some trigger writes a synced table).
    Kept,
    /// Installed for this transaction only: removed before it commits.
    ForOnce,
}

/// Logs `operations` in `txn`, with what SQLite noted (`notes`, see `trigger_mode`),
/// commits, and publishes the change set.
pub(crate) async fn commit_outermost(
    txn: DatabaseTransaction,
    shared: &Shared,
    mut operations: Vec<SyncOperation>,
    notes: Notes,
) -> Result<(), DbErr> {
    if notes != Notes::None {
        // Under SQLite's write lock if anything was noted: the notes are writes.
        crate::trigger_mode::collect(shared, &txn, &mut operations).await?;
    }
    if notes == Notes::ForOnce {
        crate::trigger_mode::remove(&txn).await?;
    }
    if operations.is_empty() {
        return txn.commit().await;
    }
    // Held from taking the sequence number until the change set is handed on, so change
    // sets reach the engine in sequence order.
    let _in_order = shared.commit_order.lock().await;
    let origin = shared.node_id;
    let entries = log::local_entries(origin, &operations);
    let clock_bound = shared.clock_bound_to_persist();
    let confirmed = shared.outbox.numbering_confirmed();
    let seq = log::record_local_commit(&txn, origin, &entries, clock_bound, confirmed).await?;
    txn.commit().await?;
    after_commit(shared, clock_bound, seq, operations).await;
    Ok(())
}
