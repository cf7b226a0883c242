//! Remote rows that collide with other rows on a UNIQUE column (two peers inserted one
//! email under two keys while apart).
//!
//! The outcome is the same on every peer, whatever order the rows arrive in: of two rows
//! that collide, the one whose existence has the later version (HLC, then key) keeps its
//! place, and the other is deleted, by this peer, as a local transaction of its own that
//! replicates like any delete. The delete is stamped just above the winner's existence
//! (not "now"), so a later real write to the loser still wins and reopens the question. So no pull stalls on the collision, the tables and logs of
//! all peers end identical, and the deleted row's values stay in the log (a later write to
//! it brings it back). Only applied row by row, after a batched write failed on one.

use super::RowWrite;
use super::rows::row_statement;
use crate::clock::Hlc;
use crate::log;
use crate::protocol::{ChangeSet, SyncOperation, WriteKind};
use crate::replica::Shared;
use crate::schema::{ROW_EXISTS_COLUMN, TableMeta, quote_ident};
use crate::value::{CellValue, encode_key};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use std::sync::Arc;

/// How many collisions one row may settle before the batch gives up.
const MAX_COLLISIONS_PER_ROW: usize = 8;

/// A row to delete to settle a collision.
pub(super) struct Loser {
    meta: Arc<TableMeta>,
    primary_key: Vec<(String, CellValue)>,
    /// The existence version of the row that keeps its place.
    winner: Option<Hlc>,
}

/// Whether `err` is SQLite's UNIQUE constraint failure.
pub(super) fn is_collision(err: &DbErr) -> bool {
    err.to_string().contains("UNIQUE constraint failed")
}

/// The columns SQLite names in a UNIQUE failure (`.. failed: users.email, users.x`).
fn collided_columns(err: &DbErr, meta: &TableMeta) -> Option<Vec<String>> {
    let message = err.to_string();
    let list = message.split("UNIQUE constraint failed: ").nth(1)?;
    let list = list.lines().next()?;
    list.split(',')
        .map(|item| {
            // `table.column`: a collision in another table (a trigger's) is not ours.
            let (table, column) = item.trim().rsplit_once('.')?;
            if !table.eq_ignore_ascii_case(&meta.name) {
                return None;
            }
            meta.column(column).map(|c| c.name.clone())
        })
        .collect()
}

fn key_condition(meta: &TableMeta) -> String {
    let keys = meta
        .primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "({keys}) = ({})",
        vec!["?"; meta.primary_key.len()].join(", ")
    )
}

async fn delete_row(
    conn: &impl ConnectionTrait,
    meta: &TableMeta,
    key: &[CellValue],
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        format!(
            "DELETE FROM {} WHERE {}",
            quote_ident(&meta.name),
            key_condition(meta)
        ),
        key.iter().map(CellValue::to_sea_value),
    ))
    .await
    .map(drop)
}

/// The rows other than `row` that hold `row`'s values of `columns`.
async fn occupants(
    conn: &impl ConnectionTrait,
    row: &RowWrite,
    columns: &[String],
) -> Result<Vec<Vec<CellValue>>, DbErr> {
    let meta = &row.meta;
    let values = match &row.state {
        crate::merge::RowState::Complete(values) | crate::merge::RowState::Partial(values) => {
            values
        }
        crate::merge::RowState::Absent => return Ok(Vec::new()),
    };
    let mut bound = Vec::new();
    let mut conditions = Vec::new();
    for column in columns {
        let Some((_, value)) = values.iter().find(|(name, _)| name == column) else {
            return Ok(Vec::new());
        };
        conditions.push(format!("{} = ?", quote_ident(column)));
        bound.push(value.to_sea_value());
    }
    bound.extend(row.primary_key.iter().map(|(_, v)| v.to_sea_value()));
    let keys = meta
        .primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {keys} FROM {} WHERE {} AND NOT {}",
        quote_ident(&meta.name),
        conditions.join(" AND "),
        key_condition(meta)
    );
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            bound,
        ))
        .await?;
    rows.iter()
        .map(|r| {
            (0..meta.primary_key.len())
                .map(|i| log::read_cell(r, i))
                .collect()
        })
        .collect()
}

/// Whether the row with existence version `a` and key `a_key` keeps its place against
/// the one with `b`, `b_key`.
fn keeps_place(a: Option<Hlc>, a_key: &[u8], b: Option<Hlc>, b_key: &[u8]) -> bool {
    (a, a_key) > (b, b_key)
}

/// Writes `rows` one statement each; settles each unique collision. Returns the rows
/// deleted to settle them.
pub(super) async fn write_rows_one_by_one(
    conn: &impl ConnectionTrait,
    rows: Vec<RowWrite>,
) -> Result<Vec<Loser>, DbErr> {
    let mut losers = Vec::new();
    for row in rows {
        let Some(statement) = row_statement(&row.meta, &row.primary_key, row.state.clone()) else {
            continue;
        };
        let mut attempts = 0;
        loop {
            let err = match conn.execute_raw(statement.clone()).await {
                Ok(_) => break,
                Err(err) if is_collision(&err) => err,
                Err(err) => return Err(err),
            };
            attempts += 1;
            let columns = collided_columns(&err, &row.meta);
            let found = match &columns {
                Some(columns) if attempts <= MAX_COLLISIONS_PER_ROW => {
                    occupants(conn, &row, columns).await?
                }
                _ => Vec::new(),
            };
            if found.is_empty() {
                // Not a collision this rule can settle (an expression or partial index, a
                // trigger's table): the row stays in the log, unwritten, and the rest of
                // the batch applies; `verify_log` reports it.
                tracing::warn!(table = %row.meta.name, %err, "a remote row collides on a unique index and is not written");
                break;
            }
            let mut incoming_keeps = true;
            let mut winner = None;
            for occupant in found {
                let occupant_key = encode_key(&occupant);
                let held = log::versions_of_rows(
                    conn,
                    &row.meta.name,
                    std::slice::from_ref(&occupant_key),
                )
                .await?;
                let occupant_exists = held
                    .get(&occupant_key)
                    .and_then(|versions| versions.get(ROW_EXISTS_COLUMN))
                    .map(|v| v.hlc);
                if keeps_place(row.exists, &row.key, occupant_exists, &occupant_key) {
                    tracing::warn!(table = %row.meta.name, ?columns, "unique collision: deleting the older row to make room for a remote one");
                    delete_row(conn, &row.meta, &occupant).await?;
                    losers.push(Loser {
                        meta: Arc::clone(&row.meta),
                        primary_key: row.meta.primary_key.iter().cloned().zip(occupant).collect(),
                        winner: row.exists,
                    });
                } else {
                    incoming_keeps = false;
                    winner = winner.max(occupant_exists);
                }
            }
            if !incoming_keeps {
                tracing::warn!(table = %row.meta.name, ?columns, "unique collision: a remote row loses to an existing one and is deleted");
                let key: Vec<CellValue> = row.primary_key.iter().map(|(_, v)| v.clone()).collect();
                delete_row(conn, &row.meta, &key).await?;
                losers.push(Loser {
                    meta: Arc::clone(&row.meta),
                    primary_key: row.primary_key.clone(),
                    winner,
                });
                break;
            }
        }
    }
    Ok(losers)
}

/// The version of a loser's delete: just above the winner's existence, so it beats the
/// loser (older by the rule) and every peer's delete of it comes out alike, while any
/// later real write to the loser still wins and reopens the question.
fn tombstone(winner: Option<Hlc>, origin: crate::clock::NodeId) -> Option<Hlc> {
    winner.map(|w| Hlc {
        time_ms: w.time_ms,
        counter: w.counter.saturating_add(1),
        node: origin,
    })
}

/// Records the collision deletes as one local transaction of this node in `conn`'s
/// transaction; returns its change set, to hand on after the commit.
pub(super) async fn commit_deletes(
    conn: &impl ConnectionTrait,
    shared: &Shared,
    losers: Vec<Loser>,
) -> Result<ChangeSet, DbErr> {
    let origin = shared.node_id;
    let operations: Vec<SyncOperation> = losers
        .into_iter()
        .map(|loser| SyncOperation {
            table: loser.meta.name.clone(),
            kind: WriteKind::Delete,
            hlc: tombstone(loser.winner, origin).unwrap_or_else(|| shared.tick()),
            primary_key: loser.primary_key,
            values: Vec::new(),
        })
        .collect();
    let entries = log::local_entries(origin, &operations);
    let confirmed = shared.outbox.numbering_confirmed();
    let (sql, values) = log::local_commit_statements(origin, &entries, None, confirmed);
    let row = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| crate::log::corrupt("no sequence number for a local transaction"))?;
    let seq = log::local_seq(&row)?;
    Ok(ChangeSet {
        origin,
        seq,
        operations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NodeId;

    #[test]
    fn the_later_row_keeps_its_place_the_same_way_from_both_sides() {
        let at = |t| {
            Some(Hlc {
                time_ms: t,
                counter: 0,
                node: NodeId([1; 16]),
            })
        };
        assert!(keeps_place(at(2), b"a", at(1), b"b"));
        assert!(!keeps_place(at(1), b"b", at(2), b"a"));
        // Equal versions: the key decides, and exactly one side wins.
        assert!(keeps_place(at(1), b"b", at(1), b"a") != keeps_place(at(1), b"a", at(1), b"b"));
        assert!(keeps_place(at(1), b"a", None, b"z"));
    }
}
