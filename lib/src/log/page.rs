//! Catch-up pages: one origin's log entries in sequence order, bounded in entries and in
//! encoded bytes.
//!
//! A node serves what its log holds, whatever its own registry says: rows of tables it
//! does not register (yet, or ever) and values of columns it lacks travel on, so a peer
//! that pulls from it loses nothing (a rolling upgrade, a late registration). Key column
//! names come from `_wavesync_tables`. Read-only.

use super::{corrupt, read_bytes, read_cell, read_seq, seq_value, stmt, table_keys};
use crate::clock::{Hlc, NodeId};
use crate::protocol::{Cursor, SyncOperation, WriteKind};
use crate::schema::ROW_EXISTS_COLUMN;
use crate::value::CellValue;
use futures::TryStreamExt;
use sea_orm::{DatabaseConnection, DbErr, StreamTrait, Value};

/// The bound on one catch-up page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageLimit {
    /// Log entries (cells).
    pub entries: u64,
    /// Encoded bytes. A page holds at least one entry, so one cell may exceed this (up to
    /// [`crate::MAX_CELL_BYTES`]); it never exceeds it by more than one entry.
    pub bytes: usize,
}

/// What one entry adds to an encoded page, at most: the value, the names, the key, the
/// timestamp, and the tags and lengths around them.
fn entry_bytes(table: &str, key: &[u8], column: &str, value: &CellValue) -> usize {
    let value = match value {
        CellValue::Text(text) => text.len(),
        CellValue::Blob(blob) => blob.len(),
        _ => 9,
    };
    // An operation repeats its table and key values; count them per entry (an upper
    // bound; key names are counted once per operation) plus 64 bytes of timestamp,
    // sequence number, tags and lengths.
    64 + table.len() + 2 * key.len() + column.len() + value
}

/// One page of `origin`'s log entries with seq in (after, through], after `cursor`, as
/// operations tagged with their sequence numbers, and where the next page starts (`None`
/// when this page ends the range). Fails rather than leave out a row it cannot name.
pub(crate) async fn page(
    conn: &DatabaseConnection,
    origin: NodeId,
    after: u64,
    through: u64,
    cursor: Option<&Cursor>,
    limit: PageLimit,
) -> Result<(Vec<(u64, SyncOperation)>, Option<Cursor>), DbErr> {
    let keys = table_keys(conn).await?;
    let mut values: Vec<Value> = vec![origin.0.to_vec().into(), seq_value(through)];
    let mut sql = String::from(
        "SELECT seq, tbl, pk, col, value, hlc FROM _wavesync_log \
         WHERE origin = ? AND seq <= ?",
    );
    match cursor {
        // The cursor alone bounds the start (it lies past `after`): with a separate
        // `seq > ?` term SQLite seeks by that one and scans every earlier page again.
        Some(cursor) if cursor.seq > after => {
            sql.push_str(" AND (seq, tbl, pk, col) > (?, ?, ?, ?)");
            values.extend([
                seq_value(cursor.seq),
                cursor.table.as_str().into(),
                cursor.key.clone().into(),
                cursor.column.as_str().into(),
            ]);
        }
        _ => {
            sql.push_str(" AND seq > ?");
            values.push(seq_value(after));
        }
    }
    sql.push_str(" ORDER BY seq, tbl, pk, col LIMIT ?");
    values.push(Value::BigInt(Some(
        i64::try_from(limit.entries).unwrap_or(i64::MAX),
    )));

    let mut operations: Vec<(u64, SyncOperation)> = Vec::new();
    // The last entry carried.
    let mut last: Option<Cursor> = None;
    let mut bytes = 0usize;
    let mut read = 0u64;
    // The timestamp of the operation being built.
    let mut current_hlc: Option<Hlc> = None;
    // Rows are streamed: a page of large values is never read whole only to be cut.
    let rows = conn.stream_raw(stmt(&sql, values)).await?;
    futures::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        read += 1;
        let seq = read_seq(&row, 0)?;
        let table: String = row.try_get_by_index(1)?;
        let key = read_bytes(&row, 2, "pk")?;
        let column: String = row.try_get_by_index(3)?;
        let value = read_cell(&row, 4)?;
        let hlc = Hlc::from_bytes(&read_bytes(&row, 5, "hlc")?).ok_or_else(|| corrupt("hlc"))?;
        let size = entry_bytes(&table, &key, &column, &value);
        if last.is_some() && bytes + size > limit.bytes {
            // Over the byte bound: stop here; the next page starts after `last`.
            return Ok((operations, last));
        }
        bytes += size;
        let same_operation = matches!(
            &last,
            Some(at) if at.seq == seq && at.table == table && at.key == key
        ) && current_hlc == Some(hlc);
        last = Some(Cursor {
            seq,
            table: table.clone(),
            key: key.clone(),
            column: column.clone(),
        });
        if !same_operation {
            current_hlc = Some(hlc);
            // A row left out of a page would count as superseded for the peer, which then
            // never asks for it again: refuse to serve instead (the peer asks later or
            // elsewhere). Key names are unknown only in a database logged by an older
            // version before its first `sync()`.
            let Some(names) = keys.get(&table) else {
                return Err(crate::Error::KeysNotRecorded {
                    table: table.clone(),
                }
                .into());
            };
            let Some(key_values) = crate::value::decode_key(&key) else {
                return Err(corrupt("primary key encoding"));
            };
            if key_values.len() != names.len() {
                return Err(corrupt(
                    "a row key that does not fit its table's key columns",
                ));
            }
            bytes += names.iter().map(String::len).sum::<usize>();
            operations.push((
                seq,
                SyncOperation {
                    table: table.clone(),
                    kind: WriteKind::Update,
                    hlc,
                    primary_key: names.iter().cloned().zip(key_values).collect(),
                    values: Vec::new(),
                },
            ));
        }
        let Some((_, op)) = operations.last_mut() else {
            continue;
        };
        if column == ROW_EXISTS_COLUMN {
            op.kind = if value == CellValue::Integer(0) {
                WriteKind::Delete
            } else {
                WriteKind::Insert
            };
        } else {
            op.values.push((column, value));
        }
    }
    let full = read >= limit.entries;
    Ok((operations, if full { last } else { None }))
}

/// The highest sequence number of `origin` up to `through` that still has entries in the
/// log (0 if none): one index seek.
pub(crate) async fn last_seq_with_entries(
    conn: &DatabaseConnection,
    origin: NodeId,
    through: u64,
) -> Result<u64, DbErr> {
    use sea_orm::ConnectionTrait;
    let row = conn
        .query_one_raw(stmt(
            "SELECT coalesce(max(seq), 0) FROM _wavesync_log WHERE origin = ? AND seq <= ?",
            vec![origin.0.to_vec().into(), seq_value(through)],
        ))
        .await?;
    row.map_or(Ok(0), |row| read_seq(&row, 0))
}
