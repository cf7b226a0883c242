//! Applying a peer's change set: validate, merge, write, notify.
//!
//! Owns the inbound path. In one IMMEDIATE database transaction on the engine's own
//! connection (so `SchemaBuilder::sync` cannot change the schema between admission and
//! write, and no application connection is ever waited for): every name and value is
//! admitted ([`admit`]), timestamps against the clock's drift bound; one bad operation
//! rejects the whole change set, which is counted and changes nothing. Then the winning
//! cell versions (`merge`) go to the log, each touched row of a synced table is rewritten
//! from its versions ([`rows`]), the origin's head advances if the set is the next one
//! expected, and the clock is persisted. Notifications follow the commit.
//!
//! Nothing is dropped because this peer cannot apply it yet:
//! - an operation on a table this peer does not sync (not registered yet, or local) is
//!   stored in the log as data (names bound as parameters), with the table's key names
//!   and a "whole table pending" mark; when `sync` registers the table, its rows are
//!   written from the log (`migrate`). The head advances: the change is held, and served
//!   to other peers like any other;
//! - a value for a column this synced table does not have (yet) is stored in the log as a
//!   cell version, takes part in last-writer-wins, and is not written to the table; when
//!   `sync` adds the column the rows are rewritten from their versions.
//!
//! Foreign keys: the engine's connection does not enforce them (`PRAGMA foreign_keys` is
//! off on it). Replicas merge per cell and per origin in any order, so a child can
//! arrive before its parent (another origin, another page), and a parent deleted on one
//! peer while a child is added on another leaves that child on every peer alike; checking
//! constraints on apply would stall such a pull forever and let peers differ. What the
//! origin's own constraints did (cascades) reaches peers as the writes they are.
//! UNIQUE constraints on non-key columns stay enforced: two rows that collide (one email
//! under two keys, written on two peers apart) are settled the same way on every peer
//! ([`unique`]): the row whose existence is newer stays, the other is deleted.
//!
//! It must never build SQL from a name as received: only registered names are quoted in.
//! Unknown names only ever reach the log as bound parameters.

mod admit;
mod rows;
mod unique;

pub(crate) use rows::rewrite_table;

use crate::clock::NodeId;
use crate::error::Error;
use crate::log::{self, LogEntry};
use crate::merge::{CellVersion, row_state, winners, written_cells};
use crate::notify::ChangeSource;
use crate::notify::notifications;
use crate::protocol::{ChangeSet, SyncOperation};
use crate::replica::Shared;
use crate::schema::TableMeta;
use crate::value::{CellValue, encode_key};
use admit::Admitted;
use rows::{RowWrites, Writes};
use sea_orm::{DatabaseTransaction, DbErr};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(crate) async fn apply_remote(shared: &Shared, change_set: ChangeSet) -> Result<usize, Error> {
    apply_remote_batch(shared, vec![change_set]).await
}

/// Applies several change sets in one database transaction (catch-up applies a page at a
/// time): one commit, one read of the versions of the rows they touch, one write per
/// table and shape of row instead of one per row. Every set is admitted before anything
/// is written; one set that must be rejected rejects the batch. Returns the rows changed.
pub(crate) async fn apply_remote_batch(
    shared: &Shared,
    change_sets: Vec<ChangeSet>,
) -> Result<usize, Error> {
    // Our own changes coming back (e.g. relayed by a peer): we have them already.
    let change_sets: Vec<ChangeSet> = change_sets
        .into_iter()
        .filter(|set| set.origin != shared.node_id)
        .collect();
    apply_batch(shared, change_sets).await
}

/// Applies this node's own transactions pulled back from a peer: ones an earlier life of
/// this node issued and its database lost (`protocol::recovery`). Merged like any remote
/// set, so a version this node holds already changes nothing.
pub(crate) async fn apply_recovered_batch(
    shared: &Shared,
    change_sets: Vec<ChangeSet>,
) -> Result<usize, Error> {
    apply_batch(shared, change_sets).await
}

async fn apply_batch(shared: &Shared, change_sets: Vec<ChangeSet>) -> Result<usize, Error> {
    if change_sets.is_empty() {
        return Ok(0);
    }
    // A row that collides with another on a UNIQUE column fails the batched write; the
    // batch is then applied again row by row, resolving each collision (`unique`).
    let mut careful = false;
    let (changed, clock_bound, local) = loop {
        match apply_once(shared, &change_sets, careful).await {
            Err(Attempt::UniqueCollision) if !careful => careful = true,
            Err(Attempt::UniqueCollision) => {
                return Err(Error::UniqueCollision);
            }
            Err(Attempt::Failed(err)) => return Err(err),
            Ok(done) => break done,
        }
    };
    if let Some(bound) = clock_bound {
        shared.clock_bound_persisted(bound);
    }
    if let Some(local) = local {
        // Rows this peer deleted to settle unique collisions: its own transaction.
        shared.publish_local(local).await;
    }
    let mut rows = 0;
    let mut operations = Vec::new();
    for (change_set, changed) in change_sets.iter().zip(changed) {
        if !change_set.operations.is_empty() {
            // An empty set only passes a number whose writes were all superseded.
            shared.metrics.remote_applied(changed.len());
        }
        tracing::debug!(origin = %change_set.origin, seq = change_set.seq, rows = changed.len(), "applied remote change set");
        rows += changed.len();
        operations.extend(changed);
    }
    if !operations.is_empty() {
        let applied = ChangeSet {
            origin: change_sets[0].origin,
            seq: change_sets[0].seq,
            operations,
        };
        shared
            .bus
            .publish(notifications(&applied, ChangeSource::Remote));
    }
    Ok(rows)
}

/// Why one attempt at applying a batch did not commit.
enum Attempt {
    /// A row write collided on a UNIQUE column: try again row by row.
    UniqueCollision,
    Failed(Error),
}

impl<E: Into<Error>> From<E> for Attempt {
    fn from(err: E) -> Attempt {
        Attempt::Failed(err.into())
    }
}

/// What a committed attempt did: per set the operations that changed a synced table,
/// the clock bound it persisted, and the local change set of its collision deletes.
type Applied = (
    Vec<Vec<SyncOperation>>,
    Option<crate::clock::Hlc>,
    Option<ChangeSet>,
);

/// One attempt at applying `change_sets` in one IMMEDIATE transaction on the engine's
/// connection. With `careful`, rows are written one by one and unique collisions are
/// settled; without, they are batched and a collision fails the attempt.
async fn apply_once(
    shared: &Shared,
    change_sets: &[ChangeSet],
    careful: bool,
) -> Result<Applied, Attempt> {
    let txn = crate::sql::begin_immediate(&shared.engine_conn).await?;
    let mut sets = Vec::with_capacity(change_sets.len());
    for change_set in change_sets {
        // The block ends the registry's read lock before `observe` takes the clock's.
        let admitted = { admit::admit_all(&shared.registry(), change_set) }.and_then(|admitted| {
            // Every timestamp is checked, whatever table it stamps.
            shared.observe(change_set.operations.iter().map(|op| op.hlc))?;
            Ok(admitted)
        });
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                shared.metrics.rejected(reason.code());
                tracing::warn!(origin = %change_set.origin, seq = change_set.seq, %reason, "rejected remote change set");
                return Err(Attempt::Failed(reason.into()));
            }
        };
        if !careful {
            // Changes kept for later (tables this peer does not sync, columns it lacks)
            // are counted, so a peer that sends many shows up in the metrics.
            for admitted in &admitted {
                if admitted.meta.is_none() {
                    shared.metrics.rejected("unknown_table");
                } else if !admitted.unknown_columns.is_empty() {
                    shared.metrics.rejected("unknown_column");
                }
            }
        }
        sets.push(AdmittedSet {
            origin: change_set.origin,
            seq: change_set.seq,
            admitted,
        });
    }
    let positions: Vec<(NodeId, u64)> = sets.iter().map(|set| (set.origin, set.seq)).collect();
    let (changed, mut statements, row_writes, repeats) = merge_and_write(&txn, sets).await?;
    // A head advances over the sets that follow it without a gap, in order.
    statements.extend(
        positions
            .into_iter()
            .map(|(origin, seq)| log::advance_head_statement(origin, seq)),
    );
    // After the heads: a repeated version moves only to a number its origin's head has
    // reached here (see `log::repeat_statements`).
    statements.extend(repeats);
    let mut local = None;
    if careful {
        log::execute_all(&txn, std::mem::take(&mut statements)).await?;
        let deletes = unique::write_rows_one_by_one(&txn, row_writes).await?;
        if !deletes.is_empty() {
            local = Some(unique::commit_deletes(&txn, shared, deletes).await?);
        }
    } else {
        let mut writes = RowWrites::default();
        for row in row_writes {
            writes.push(row.meta, row.primary_key, row.state);
        }
        statements.extend(writes.finish());
    }
    let clock_bound = shared.clock_bound_to_persist();
    let mut closing = Vec::new();
    if let Some(bound) = clock_bound {
        closing.push(log::save_clock_statement(bound));
    }
    if careful {
        log::execute_all(&txn, closing).await?;
    } else {
        statements.extend(closing);
        // Every write of the batch in one round trip to SQLite.
        if let Err(err) = log::execute_all(&txn, statements).await {
            if unique::is_collision(&err) {
                txn.rollback().await?;
                return Err(Attempt::UniqueCollision);
            }
            return Err(err.into());
        }
    }
    txn.commit().await?;
    Ok((changed, clock_bound, local))
}

/// The admitted operations of one change set.
struct AdmittedSet {
    origin: NodeId,
    seq: u64,
    admitted: Vec<Admitted>,
}

/// A row some operation won, to rewrite from its versions once all are merged.
struct TouchedRow {
    meta: Arc<TableMeta>,
    key: Vec<u8>,
    primary_key: Vec<(String, CellValue)>,
}

/// Merges the sets' operations against the log, in order; returns, per set, the
/// operations that changed a synced table, the statements that store the winning
/// versions, the rows to rewrite from them, and the statements that file repeated
/// versions under their origin's latest numbers (nothing run yet).
async fn merge_and_write(
    txn: &DatabaseTransaction,
    sets: Vec<AdmittedSet>,
) -> Result<(Vec<Vec<SyncOperation>>, Writes, Vec<RowWrite>, Writes), DbErr> {
    // The versions of every row the sets touch, read up front in one statement per
    // table; later operations merge against earlier ones.
    let mut keys_by_table: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut rows: HashMap<(String, Vec<u8>), HashMap<String, CellVersion>> = HashMap::new();
    let mut op_keys: Vec<Vec<Vec<u8>>> = Vec::with_capacity(sets.len());
    for set in &sets {
        let mut keys = Vec::with_capacity(set.admitted.len());
        for Admitted { op, .. } in &set.admitted {
            let key = row_key(op);
            if rows
                .insert((op.table.clone(), key.clone()), HashMap::new())
                .is_none()
            {
                keys_by_table
                    .entry(op.table.clone())
                    .or_default()
                    .push(key.clone());
            }
            keys.push(key);
        }
        op_keys.push(keys);
    }
    for (table, keys) in &keys_by_table {
        for (key, held) in log::versions_of_rows(txn, table, keys).await? {
            rows.insert((table.clone(), key), held);
        }
    }
    let mut touched: Vec<TouchedRow> = Vec::new();
    let mut touched_keys: HashSet<(String, Vec<u8>)> = HashSet::new();
    let mut entries = Vec::new();
    let mut changed = Vec::with_capacity(sets.len());
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut unsynced: HashMap<String, Vec<String>> = HashMap::new();
    let mut repeats = Vec::new();
    for (
        AdmittedSet {
            origin,
            seq,
            admitted,
        },
        keys,
    ) in sets.into_iter().zip(op_keys)
    {
        let mut changed_here = Vec::new();
        for (
            Admitted {
                meta,
                op,
                unknown_columns,
            },
            key,
        ) in admitted.into_iter().zip(keys)
        {
            let held = rows.entry((op.table.clone(), key.clone())).or_default();
            let cells = written_cells(&op);
            for (column, version) in &cells {
                if held.get(column) == Some(version) {
                    repeats.push(log::Repeat {
                        table: op.table.clone(),
                        key: key.clone(),
                        column: column.clone(),
                        hlc: version.hlc,
                        seq,
                    });
                }
            }
            let won = winners(held, cells);
            if won.is_empty() {
                continue;
            }
            for (column, version) in won {
                if meta.is_some() && unknown_columns.contains(&column) {
                    let waiting = (op.table.clone(), column.clone());
                    if !pending.contains(&waiting) {
                        pending.push(waiting);
                    }
                }
                entries.push(LogEntry {
                    table: op.table.clone(),
                    key: key.clone(),
                    column: column.clone(),
                    version: version.clone(),
                    origin,
                    seq,
                });
                held.insert(column, version);
            }
            let Some(meta) = meta else {
                // Kept for a later registration: remember how to name its rows.
                unsynced
                    .entry(op.table.clone())
                    .or_insert_with(|| op.primary_key.iter().map(|(n, _)| n.clone()).collect());
                continue;
            };
            if touched_keys.insert((op.table.clone(), key.clone())) {
                touched.push(TouchedRow {
                    meta,
                    key,
                    primary_key: op.primary_key.clone(),
                });
            }
            changed_here.push(op);
        }
        changed.push(changed_here);
    }
    let mut statements = log::store_statements(&entries, None);
    for (table, column) in pending {
        tracing::debug!(%table, %column, "keeping remote values for a column this peer lacks");
        statements.push(log::pending::mark_statement(&table, &column));
    }
    for (table, keys) in &unsynced {
        tracing::debug!(%table, "keeping remote rows of a table this peer does not sync (yet)");
        statements.extend(log::unknown_table_statement(table, keys));
    }
    let mut row_writes = Vec::with_capacity(touched.len());
    for row in touched {
        let held = &rows[&(row.meta.name.clone(), row.key.clone())];
        let state = row_state(&row.meta, held);
        let exists = held.get(crate::schema::ROW_EXISTS_COLUMN).map(|v| v.hlc);
        row_writes.push(RowWrite {
            meta: row.meta,
            key: row.key,
            primary_key: row.primary_key,
            state,
            exists,
        });
    }
    Ok((
        changed,
        statements,
        row_writes,
        log::repeat_statements(&repeats),
    ))
}

/// A row of a synced table to make match its merged versions.
pub(super) struct RowWrite {
    pub meta: Arc<TableMeta>,
    /// The row's key as the log encodes it.
    pub key: Vec<u8>,
    pub primary_key: Vec<(String, CellValue)>,
    pub state: crate::merge::RowState,
    /// The version of the row's existence.
    pub exists: Option<crate::clock::Hlc>,
}

/// The log key of an operation's row.
fn row_key(op: &SyncOperation) -> Vec<u8> {
    let key_values: Vec<CellValue> = op.primary_key.iter().map(|(_, v)| v.clone()).collect();
    encode_key(&key_values)
}
