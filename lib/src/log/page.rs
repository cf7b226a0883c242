//! Catch-up pages: one origin's log entries in sequence order, bounded in entries and in
//! encoded bytes.
//!
//! A node serves what its log holds, whatever its own registry says: rows of tables it
//! does not register (yet, or ever) and values of columns it lacks travel on, so a peer
//! that pulls from it loses nothing (a rolling upgrade, a late registration). Key column
//! names come from `_wavesync_tables`. Read-only.

use super::{corrupt, read_bytes, read_cell, seq_value, stmt, table_keys};
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
    // An operation repeats its table, key values and key names; count them per entry
    // (an upper bound) plus 64 bytes of timestamp, sequence number, tags and lengths.
    64 + table.len() + 2 * key.len() + column.len() + value
}

/// One page of `origin`'s log entries with seq in (after, through], after `cursor`, as
/// operations tagged with their sequence numbers, and where the next page starts (`None`
/// when this page ends the range). Rows whose table's key names are unknown here are
/// left out (they cannot be named to the peer).
pub(crate) async fn page(
    conn: &DatabaseConnection,
    // Not consulted: a node serves what its log holds (kept until the engine's call
    // site drops it).
    _synced: &dyn Fn(&str) -> Option<std::sync::Arc<crate::schema::TableMeta>>,
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
    // The timestamp of the operation being built, and whether its row is served.
    let mut current_hlc: Option<Hlc> = None;
    let mut current_included = false;
    // Rows are streamed: a page of large values is never read whole only to be cut.
    let rows = conn.stream_raw(stmt(&sql, values)).await?;
    futures::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        read += 1;
        let seq = u64::try_from(row.try_get_by_index::<i64>(0)?)
            .map_err(|_| corrupt("negative sequence number"))?;
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
            current_included = false;
            let Some(names) = keys.get(&table) else {
                tracing::debug!(%table, "not serving rows of a table whose key names are unknown");
                continue;
            };
            let Some(key_values) = crate::value::decode_key(&key) else {
                return Err(corrupt("primary key encoding"));
            };
            if key_values.len() != names.len() {
                continue;
            }
            current_included = true;
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
        if !current_included {
            // An entry of a row that was left out above.
            continue;
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
