//! The sync bookkeeping tables: node identity, the clock, per-origin heads, and the log of
//! cell versions.
//!
//! Owns the `_wavesync_*` tables and every statement that reads or writes them. It is glue:
//! it runs on whatever connection or transaction it is handed and never opens one itself,
//! so the caller decides what commits together (a user's write and its bookkeeping always
//! do). It never decides who wins a conflict (`merge` does).
//!
//! `_wavesync_log` holds one row per cell (table, key, column) with its current value, its
//! HLC and the (origin, seq) of the transaction that wrote it. A newer version replaces
//! the older one, so the log grows with rows x columns, not with the number of writes,
//! and it is exactly what catch-up serves: "the versions of origin O with seq > n".

use crate::clock::{Hlc, NodeId};
use crate::merge::CellVersion;
use crate::value::CellValue;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use std::collections::HashMap;

/// SQLite allows 32766 parameters per statement; stay well below.
const MAX_PARAMS: usize = 7_000;

const CREATE_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS _wavesync_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _wavesync_log (
    tbl TEXT NOT NULL,
    pk BLOB NOT NULL,
    col TEXT NOT NULL,
    value BLOB,
    hlc BLOB NOT NULL,
    origin BLOB NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tbl, pk, col)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _wavesync_log_by_origin ON _wavesync_log (origin, seq);
CREATE TABLE IF NOT EXISTS _wavesync_heads (
    origin BLOB PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// One cell version to store, with the transaction that wrote it.
#[derive(Clone, Debug)]
pub(crate) struct LogEntry {
    pub table: String,
    pub key: Vec<u8>,
    pub column: String,
    pub version: CellVersion,
    pub origin: NodeId,
    pub seq: u64,
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

fn corrupt(what: &str) -> DbErr {
    DbErr::Custom(format!(
        "WaveSyncDB bookkeeping is corrupt: {what}; the `_wavesync_*` tables were changed by hand"
    ))
}

pub(crate) fn sqlite_row(row: &QueryResult) -> Result<&sqlx::sqlite::SqliteRow, DbErr> {
    row.try_as_sqlite_row()
        .ok_or_else(|| DbErr::Custom("WaveSyncDB supports SQLite only".into()))
}

pub(crate) fn read_cell(row: &QueryResult, index: usize) -> Result<CellValue, DbErr> {
    CellValue::read(sqlite_row(row)?, index)
        .map_err(|e| DbErr::Custom(format!("reading column {index}: {e}")))
}

fn read_bytes(row: &QueryResult, index: usize, what: &str) -> Result<Vec<u8>, DbErr> {
    match read_cell(row, index)? {
        CellValue::Blob(bytes) => Ok(bytes),
        _ => Err(corrupt(what)),
    }
}

fn seq_value(seq: u64) -> Value {
    // Sequence numbers start at 1 and grow by one per transaction: far below i64::MAX.
    Value::BigInt(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
}

/// Creates the bookkeeping tables if they are missing.
pub(crate) async fn create_tables(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    conn.execute_unprepared(CREATE_TABLES).await.map(drop)
}

async fn meta_get(conn: &impl ConnectionTrait, key: &str) -> Result<Option<Vec<u8>>, DbErr> {
    let row = conn
        .query_one_raw(stmt(
            "SELECT value FROM _wavesync_meta WHERE key = ?",
            vec![key.into()],
        ))
        .await?;
    row.map(|row| read_bytes(&row, 0, key)).transpose()
}

async fn meta_set(conn: &impl ConnectionTrait, key: &str, value: Vec<u8>) -> Result<(), DbErr> {
    conn.execute_raw(stmt(
        "INSERT INTO _wavesync_meta (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        vec![key.into(), value.into()],
    ))
    .await
    .map(drop)
}

/// This node's id, created and persisted on first use.
pub(crate) async fn node_id(conn: &impl ConnectionTrait) -> Result<NodeId, DbErr> {
    if let Some(bytes) = meta_get(conn, "node_id").await? {
        return NodeId::from_slice(&bytes).ok_or_else(|| corrupt("node_id"));
    }
    let id = NodeId::random();
    meta_set(conn, "node_id", id.0.to_vec()).await?;
    Ok(id)
}

/// The last persisted clock reading.
pub(crate) async fn load_clock(conn: &impl ConnectionTrait) -> Result<Option<Hlc>, DbErr> {
    meta_get(conn, "hlc")
        .await?
        .map(|bytes| Hlc::from_bytes(&bytes).ok_or_else(|| corrupt("hlc")))
        .transpose()
}

/// Persists the clock reading (in the caller's transaction).
pub(crate) async fn save_clock(conn: &impl ConnectionTrait, hlc: Hlc) -> Result<(), DbErr> {
    meta_set(conn, "hlc", hlc.to_bytes().to_vec()).await
}

/// Takes the next sequence number of `origin` (this node) for a committing transaction.
pub(crate) async fn next_local_seq(
    conn: &impl ConnectionTrait,
    origin: NodeId,
) -> Result<u64, DbErr> {
    let row = conn
        .query_one_raw(stmt(
            "INSERT INTO _wavesync_heads (origin, seq) VALUES (?, 1) \
             ON CONFLICT (origin) DO UPDATE SET seq = seq + 1 RETURNING seq",
            vec![origin.0.to_vec().into()],
        ))
        .await?
        .ok_or_else(|| corrupt("no sequence number returned"))?;
    let seq: i64 = row.try_get_by_index(0)?;
    u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))
}

/// The highest contiguous sequence number of `origin` applied here (0 if none).
pub(crate) async fn head(conn: &impl ConnectionTrait, origin: NodeId) -> Result<u64, DbErr> {
    let row = conn
        .query_one_raw(stmt(
            "SELECT seq FROM _wavesync_heads WHERE origin = ?",
            vec![origin.0.to_vec().into()],
        ))
        .await?;
    match row {
        None => Ok(0),
        Some(row) => {
            let seq: i64 = row.try_get_by_index(0)?;
            u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))
        }
    }
}

/// Records that every transaction of `origin` up to `seq` is applied here.
pub(crate) async fn set_head(
    conn: &impl ConnectionTrait,
    origin: NodeId,
    seq: u64,
) -> Result<(), DbErr> {
    conn.execute_raw(stmt(
        "INSERT INTO _wavesync_heads (origin, seq) VALUES (?, ?) \
         ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq",
        vec![origin.0.to_vec().into(), seq_value(seq)],
    ))
    .await
    .map(drop)
}

/// Stores cell versions, replacing what the log held for the same cells. Within one call a
/// later entry for the same cell replaces an earlier one.
pub(crate) async fn store(
    conn: &impl ConnectionTrait,
    entries: Vec<LogEntry>,
) -> Result<(), DbErr> {
    let mut latest: HashMap<(String, Vec<u8>, String), usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        latest.insert(
            (entry.table.clone(), entry.key.clone(), entry.column.clone()),
            index,
        );
    }
    let mut keep: Vec<usize> = latest.into_values().collect();
    keep.sort_unstable();
    for chunk in keep.chunks(MAX_PARAMS / 7) {
        let mut sql = String::from(
            "INSERT INTO _wavesync_log (tbl, pk, col, value, hlc, origin, seq) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 7);
        for (n, &index) in chunk.iter().enumerate() {
            let entry = &entries[index];
            sql.push_str(if n == 0 {
                "(?, ?, ?, ?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?, ?, ?, ?)"
            });
            values.extend([
                entry.table.as_str().into(),
                entry.key.clone().into(),
                entry.column.as_str().into(),
                entry.version.value.to_sea_value(),
                entry.version.hlc.to_bytes().to_vec().into(),
                entry.origin.0.to_vec().into(),
                seq_value(entry.seq),
            ]);
        }
        sql.push_str(
            " ON CONFLICT (tbl, pk, col) DO UPDATE SET value = excluded.value, \
             hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq",
        );
        conn.execute_raw(stmt(&sql, values)).await?;
    }
    Ok(())
}

/// Every cell version the log holds for one row.
pub(crate) async fn row_versions(
    conn: &impl ConnectionTrait,
    table: &str,
    key: &[u8],
) -> Result<HashMap<String, CellVersion>, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT col, value, hlc FROM _wavesync_log WHERE tbl = ? AND pk = ?",
            vec![table.into(), key.to_vec().into()],
        ))
        .await?;
    let mut versions = HashMap::with_capacity(rows.len());
    for row in rows {
        let column: String = row.try_get_by_index(0)?;
        let value = read_cell(&row, 1)?;
        let hlc = Hlc::from_bytes(&read_bytes(&row, 2, "hlc")?).ok_or_else(|| corrupt("hlc"))?;
        versions.insert(column, CellVersion { value, hlc });
    }
    Ok(versions)
}

/// The result of [`crate::WaveSyncDb::verify_log`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogReport {
    /// Rows of synced tables checked.
    pub rows_checked: u64,
    /// Every disagreement found between the tables and the log, in words.
    pub problems: Vec<String>,
}

impl LogReport {
    /// Whether the tables and the log agree.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks that every row of every synced table has its versions in the log, with equal
/// values, that every live complete row in the log is in its table, and that no entry of
/// this node is numbered past its head.
pub(crate) async fn verify(
    conn: &impl ConnectionTrait,
    tables: &[std::sync::Arc<crate::schema::TableMeta>],
    node: NodeId,
) -> Result<LogReport, DbErr> {
    use crate::schema::ROW_EXISTS_COLUMN;
    let mut report = LogReport::default();
    for meta in tables {
        let columns: Vec<&str> = meta
            .primary_key
            .iter()
            .map(String::as_str)
            .chain(meta.value_columns().map(|c| c.name.as_str()))
            .collect();
        let select = format!(
            "SELECT {} FROM {}",
            columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&meta.name)
        );
        let rows = conn.query_all_raw(stmt(&select, vec![])).await?;
        let key_len = meta.primary_key.len();
        for row in &rows {
            report.rows_checked += 1;
            let mut cells = Vec::with_capacity(columns.len());
            for index in 0..columns.len() {
                cells.push(read_cell(row, index)?);
            }
            let key = crate::value::encode_key(&cells[..key_len]);
            let held = row_versions(conn, &meta.name, &key).await?;
            let alive = held
                .get(ROW_EXISTS_COLUMN)
                .is_some_and(|v| v.value == CellValue::Integer(1));
            if !alive {
                report.problems.push(format!(
                    "{} row {:?} is in the table but not alive in the log",
                    meta.name,
                    &cells[..key_len]
                ));
                continue;
            }
            for (column, value) in columns.iter().zip(&cells).skip(key_len) {
                let logged = held.get(*column).map(|v| &v.value);
                if logged.is_some_and(|logged| logged != value) {
                    report.problems.push(format!(
                        "{} row {:?} column {column} holds {value:?}, the log {logged:?}",
                        meta.name,
                        &cells[..key_len]
                    ));
                }
            }
        }
        let required: Vec<String> = meta
            .value_columns()
            .filter(|c| !c.nullable)
            .map(|c| c.name.clone())
            .collect();
        let placeholders = vec!["?"; required.len()].join(", ");
        let mut values: Vec<Value> = vec![meta.name.as_str().into()];
        values.extend(required.iter().map(|c| Value::from(c.as_str())));
        values.push(Value::BigInt(Some(required.len() as i64)));
        let live_complete = conn
            .query_one_raw(stmt(
                &format!(
                    "SELECT count(*) FROM _wavesync_log e WHERE e.tbl = ? AND e.col = '' \
                     AND e.value = 1 AND (SELECT count(*) FROM _wavesync_log c \
                     WHERE c.tbl = e.tbl AND c.pk = e.pk AND c.col IN ({placeholders})) = ?",
                    placeholders = if required.is_empty() {
                        "NULL".to_owned()
                    } else {
                        placeholders
                    }
                ),
                values,
            ))
            .await?
            .map(|row| row.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0);
        if live_complete != rows.len() as i64 {
            report.problems.push(format!(
                "{}: the log has {live_complete} live rows, the table {}",
                meta.name,
                rows.len()
            ));
        }
    }
    let head = head(conn, node).await?;
    let max_seq = conn
        .query_one_raw(stmt(
            "SELECT coalesce(max(seq), 0) FROM _wavesync_log WHERE origin = ?",
            vec![node.0.to_vec().into()],
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    if max_seq > i64::try_from(head).unwrap_or(i64::MAX) {
        report.problems.push(format!(
            "log entries of this node are numbered up to {max_seq}, its head is {head}"
        ));
    }
    Ok(report)
}
