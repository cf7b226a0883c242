//! The sync bookkeeping tables: node identity, the clock, per-origin heads, and the log of
//! cell versions.
//!
//! Owns the `_wavesync_*` tables of the database file and every statement that reads or
//! writes them (`pending` holds those of the values that wait for a column or a table).
//! The connection-local scratch tables in `temp` are not the log's: `capture::touch` owns
//! `_wavesync_touched`, `transaction::write` owns `_wavesync_row_counter`. It is glue:
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
use crate::sql::stmt;
use crate::value::CellValue;
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use std::collections::HashMap;

/// SQLite allows 32766 parameters per statement; stay well below.
pub(crate) const MAX_PARAMS: usize = 7_000;

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
CREATE INDEX IF NOT EXISTS _wavesync_log_by_origin ON _wavesync_log (origin, seq, tbl, pk, col);
CREATE TABLE IF NOT EXISTS _wavesync_heads (
    origin BLOB PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _wavesync_tables (
    tbl TEXT PRIMARY KEY NOT NULL,
    key_columns BLOB NOT NULL,
    registered INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _wavesync_pending_columns (
    tbl TEXT NOT NULL,
    col TEXT NOT NULL,
    PRIMARY KEY (tbl, col)
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

pub(crate) fn corrupt(what: &str) -> DbErr {
    crate::Error::Bookkeeping {
        what: what.to_owned(),
    }
    .into()
}

pub(crate) fn sqlite_row(row: &QueryResult) -> Result<&sqlx::sqlite::SqliteRow, DbErr> {
    row.try_as_sqlite_row()
        .ok_or_else(|| DbErr::from(crate::Error::NotSqlite))
}

pub(crate) fn read_cell(row: &QueryResult, index: usize) -> Result<CellValue, DbErr> {
    CellValue::read(sqlite_row(row)?, index)
        .map_err(|e| DbErr::Type(format!("reading column {index}: {e}")))
}

fn read_bytes(row: &QueryResult, index: usize, what: &str) -> Result<Vec<u8>, DbErr> {
    match read_cell(row, index)? {
        CellValue::Blob(bytes) => Ok(bytes),
        _ => Err(corrupt(what)),
    }
}

/// The sequence number in column `index` of `row`.
fn read_seq(row: &QueryResult, index: usize) -> Result<u64, DbErr> {
    let seq: i64 = row.try_get_by_index(index)?;
    u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))
}

fn seq_value(seq: u64) -> Value {
    // Sequence numbers start at 1 and grow by one per transaction: far below i64::MAX.
    Value::BigInt(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
}

/// The log entries of a local transaction's operations (numbered at commit).
pub(crate) fn local_entries(
    origin: NodeId,
    operations: &[crate::protocol::SyncOperation],
) -> Vec<LogEntry> {
    let mut entries = Vec::new();
    for op in operations {
        let key: Vec<_> = op.primary_key.iter().map(|(_, v)| v.clone()).collect();
        let key = crate::value::encode_key(&key);
        for (column, version) in crate::merge::written_cells(op) {
            entries.push(LogEntry {
                table: op.table.clone(),
                key: key.clone(),
                column,
                version,
                origin,
                // Numbered by the commit's bookkeeping statement.
                seq: 0,
            });
        }
    }
    entries
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

const META_SET: &str = "INSERT INTO _wavesync_meta (key, value) VALUES (?, ?) \
                        ON CONFLICT (key) DO UPDATE SET value = excluded.value";

async fn meta_set(conn: &impl ConnectionTrait, key: &str, value: Vec<u8>) -> Result<(), DbErr> {
    conn.execute_raw(stmt(META_SET, vec![key.into(), value.into()]))
        .await
        .map(drop)
}

/// Records an origin's head as this node's confirmed number (an integer value).
const CONFIRM_HEAD: &str = "INSERT INTO _wavesync_meta (key, value) \
    SELECT 'confirmed', seq FROM _wavesync_heads WHERE origin = ? \
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Up to which number this node's own transactions were confirmed its alone
/// (`protocol::recovery`); `None` for a database from before the record existed.
pub(crate) async fn confirmed(conn: &impl ConnectionTrait) -> Result<Option<u64>, DbErr> {
    let row = conn
        .query_one_raw(stmt(
            "SELECT value FROM _wavesync_meta WHERE key = 'confirmed'",
            vec![],
        ))
        .await?;
    row.map(|row| match read_cell(&row, 0)? {
        CellValue::Integer(seq) => u64::try_from(seq).map_err(|_| corrupt("confirmed")),
        _ => Err(corrupt("confirmed")),
    })
    .transpose()
}

/// Records that this node's own transactions up to `seq` are confirmed its alone.
pub(crate) async fn set_confirmed(conn: &impl ConnectionTrait, seq: u64) -> Result<(), DbErr> {
    conn.execute_raw(stmt(META_SET, vec!["confirmed".into(), seq_value(seq)]))
        .await
        .map(drop)
}

/// The last persisted clock reading.
pub(crate) async fn load_clock(conn: &impl ConnectionTrait) -> Result<Option<Hlc>, DbErr> {
    meta_get(conn, "hlc")
        .await?
        .map(|bytes| Hlc::from_bytes(&bytes).ok_or_else(|| corrupt("hlc")))
        .transpose()
}

/// The statement that records `origin`'s transaction `seq` as applied if it is the next
/// one expected (the head is `seq - 1`, or there is none and `seq` is 1); else it changes
/// nothing. Run in order, such statements advance a head over a run without gaps.
pub(crate) fn advance_head_statement(origin: NodeId, seq: u64) -> (String, Vec<Value>) {
    (
        // The SELECT yields a row only when there is a head to update (then the upsert
        // decides) or when `seq` starts the origin's history.
        "INSERT INTO _wavesync_heads (origin, seq) SELECT ?, ? \
         WHERE ? = 1 OR EXISTS (SELECT 1 FROM _wavesync_heads WHERE origin = ?) \
         ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq \
         WHERE _wavesync_heads.seq + 1 = excluded.seq"
            .to_owned(),
        vec![
            origin.0.to_vec().into(),
            seq_value(seq),
            seq_value(seq),
            origin.0.to_vec().into(),
        ],
    )
}

/// The statement that persists a clock bound, run in the committing transaction: every
/// timestamp this node has issued or observed up to now is at most it, so after a
/// restart the clock resumes above it.
pub(crate) fn save_clock_statement(hlc: Hlc) -> (String, Vec<Value>) {
    (
        META_SET.to_owned(),
        vec!["hlc".into(), hlc.to_bytes().to_vec().into()],
    )
}

/// Runs `statements` in order, in one round trip to SQLite (each binds its own share of
/// the parameters).
pub(crate) async fn execute_all(
    conn: &impl ConnectionTrait,
    statements: Vec<(String, Vec<Value>)>,
) -> Result<(), DbErr> {
    if statements.is_empty() {
        return Ok(());
    }
    let mut sql = String::with_capacity(statements.iter().map(|(s, _)| s.len() + 2).sum());
    let mut values = Vec::with_capacity(statements.iter().map(|(_, v)| v.len()).sum());
    for (statement, statement_values) in statements {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement);
        values.extend(statement_values);
    }
    conn.execute_raw(stmt(&sql, values)).await.map(drop)
}

/// The highest contiguous sequence number of `origin` applied here (0 if none).
pub(crate) async fn head(conn: &impl ConnectionTrait, origin: NodeId) -> Result<u64, DbErr> {
    let row = conn
        .query_one_raw(stmt(
            "SELECT seq FROM _wavesync_heads WHERE origin = ?",
            vec![origin.0.to_vec().into()],
        ))
        .await?;
    row.map_or(Ok(0), |row| read_seq(&row, 0))
}

/// Every origin's head.
pub(crate) async fn heads(conn: &impl ConnectionTrait) -> Result<Vec<(NodeId, u64)>, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT origin, seq FROM _wavesync_heads ORDER BY origin",
            vec![],
        ))
        .await?;
    let mut heads = Vec::with_capacity(rows.len());
    for row in rows {
        let origin =
            NodeId::from_slice(&read_bytes(&row, 0, "origin")?).ok_or_else(|| corrupt("origin"))?;
        heads.push((origin, read_seq(&row, 1)?));
    }
    Ok(heads)
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

/// The bookkeeping of a local commit, in one round trip to SQLite: takes `origin`'s next
/// sequence number, stores `entries` under it (their own `origin` and `seq` are not
/// used), and persists `clock_bound` if given. Returns the sequence number.
///
/// The number comes from the database, not from memory, so that two processes writing
/// one file (a CLI next to a running app) never hand out the same number.
pub(crate) async fn record_local_commit(
    conn: &impl ConnectionTrait,
    origin: NodeId,
    entries: &[LogEntry],
    clock_bound: Option<Hlc>,
    confirmed: bool,
) -> Result<u64, DbErr> {
    let (sql, values) = local_commit_statements(origin, entries, clock_bound, confirmed);
    let row = conn
        .query_all_raw(stmt(&sql, values))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| corrupt("no sequence number returned"))?;
    local_seq(&row)
}

/// The statements of [`record_local_commit`], as one text: several statements in one,
/// which SQLite runs in order, each binding its own share of the parameters; only the
/// first returns a row, the sequence number (read it with [`local_seq`]). With
/// `confirmed` (this node's numbering is confirmed its alone, `protocol::recovery`), the
/// number is recorded as confirmed in the same transaction.
pub(crate) fn local_commit_statements(
    origin: NodeId,
    entries: &[LogEntry],
    clock_bound: Option<Hlc>,
    confirmed: bool,
) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "INSERT INTO _wavesync_heads (origin, seq) VALUES (?, 1) \
         ON CONFLICT (origin) DO UPDATE SET seq = seq + 1 RETURNING seq",
    );
    let mut values: Vec<Value> = vec![origin.0.to_vec().into()];
    for (statement, statement_values) in store_statements(entries, Some(origin)) {
        sql.push_str(";\n");
        sql.push_str(&statement);
        values.extend(statement_values);
    }
    if let Some(bound) = clock_bound {
        let (statement, statement_values) = save_clock_statement(bound);
        sql.push_str(";\n");
        sql.push_str(&statement);
        values.extend(statement_values);
    }
    if confirmed {
        sql.push_str(";\n");
        sql.push_str(CONFIRM_HEAD);
        values.push(origin.0.to_vec().into());
    }
    (sql, values)
}

/// The sequence number in the row [`local_commit_statements`] returns.
pub(crate) fn local_seq(row: &QueryResult) -> Result<u64, DbErr> {
    read_seq(row, 0)
}

/// The INSERT statements that store `entries` (the latest entry per cell), each within
/// the parameter bound. With `local_origin`, every entry is stored as that origin's
/// with the sequence number its head holds at that moment.
///
/// Entries that share table, origin and sequence number (a transaction's cells of one
/// table: nearly all of them) go into one statement that binds those three once: a
/// catch-up page stores thousands of cells, and every bound value costs an allocation
/// here and a copy in SQLite.
pub(crate) fn store_statements(
    entries: &[LogEntry],
    local_origin: Option<NodeId>,
) -> Vec<(String, Vec<Value>)> {
    let mut latest: HashMap<(&str, &[u8], &str), usize> = HashMap::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        latest.insert(
            (
                entry.table.as_str(),
                entry.key.as_slice(),
                entry.column.as_str(),
            ),
            index,
        );
    }
    let mut keep: Vec<usize> = latest.into_values().collect();
    keep.sort_unstable();
    let same_group = |a: &LogEntry, b: &LogEntry| {
        a.table == b.table && (local_origin.is_some() || (a.origin == b.origin && a.seq == b.seq))
    };
    let mut statements = Vec::new();
    for group in keep.chunk_by(|&a, &b| same_group(&entries[a], &entries[b])) {
        for chunk in group.chunks(MAX_PARAMS / 4) {
            let first = &entries[chunk[0]];
            let mut sql = String::with_capacity(200 + chunk.len() * 14);
            let mut values = Vec::with_capacity(chunk.len() * 4 + 3);
            sql.push_str(
                "INSERT INTO _wavesync_log (tbl, pk, col, value, hlc, origin, seq) \
                 SELECT ?, v.column1, v.column2, v.column3, v.column4, ",
            );
            values.push(first.table.as_str().into());
            if local_origin.is_some() {
                sql.push_str("h.origin, h.seq FROM (VALUES ");
            } else {
                sql.push_str("?, ? FROM (VALUES ");
                values.extend([first.origin.0.to_vec().into(), seq_value(first.seq)]);
            }
            for (n, &index) in chunk.iter().enumerate() {
                let entry = &entries[index];
                sql.push_str(if n == 0 {
                    "(?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?)"
                });
                values.extend([
                    entry.key.clone().into(),
                    entry.column.as_str().into(),
                    entry.version.value.to_sea_value(),
                    entry.version.hlc.to_bytes().to_vec().into(),
                ]);
            }
            // The `WHERE` also keeps SQLite from reading `ON CONFLICT` as part of the
            // `FROM` clause.
            match local_origin {
                Some(origin) => {
                    sql.push_str(") AS v, _wavesync_heads AS h WHERE h.origin = ?");
                    values.push(origin.0.to_vec().into());
                }
                None => sql.push_str(") AS v WHERE true"),
            }
            // A cell's version only ever grows (timestamps compare as their bytes).
            sql.push_str(
                " ON CONFLICT (tbl, pk, col) DO UPDATE SET value = excluded.value, \
                 hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq \
                 WHERE excluded.hlc > _wavesync_log.hlc",
            );
            statements.push((sql, values));
        }
    }
    statements
}

/// Every cell version the log holds for one row.
pub(crate) async fn row_versions(
    conn: &impl ConnectionTrait,
    table: &str,
    key: &[u8],
) -> Result<HashMap<String, CellVersion>, DbErr> {
    let mut rows = versions_of_rows(conn, table, std::slice::from_ref(&key.to_vec())).await?;
    Ok(rows.remove(key).unwrap_or_default())
}

/// The cell versions the log holds for each of `keys` of `table`, in as few statements
/// as the parameter limit allows (a row without versions is missing from the map).
/// The encoded keys of `table`'s rows that the log holds alive.
pub(crate) async fn alive_keys(
    conn: &impl ConnectionTrait,
    table: &str,
) -> Result<Vec<Vec<u8>>, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT pk FROM _wavesync_log WHERE tbl = ? AND col = ? AND value = 1",
            vec![table.into(), crate::schema::ROW_EXISTS_COLUMN.into()],
        ))
        .await?;
    rows.iter().map(|row| read_bytes(row, 0, "pk")).collect()
}

pub(crate) async fn versions_of_rows(
    conn: &impl ConnectionTrait,
    table: &str,
    keys: &[Vec<u8>],
) -> Result<HashMap<Vec<u8>, HashMap<String, CellVersion>>, DbErr> {
    let mut versions: HashMap<Vec<u8>, HashMap<String, CellVersion>> =
        HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_PARAMS) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() + 1);
        values.push(table.into());
        values.extend(chunk.iter().map(|key| Value::from(key.clone())));
        let sql = format!(
            "SELECT pk, col, value, hlc FROM _wavesync_log WHERE tbl = ? AND pk IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        for row in conn.query_all_raw(stmt(&sql, values)).await? {
            let key = read_bytes(&row, 0, "pk")?;
            let column: String = row.try_get_by_index(1)?;
            let value = read_cell(&row, 2)?;
            let hlc =
                Hlc::from_bytes(&read_bytes(&row, 3, "hlc")?).ok_or_else(|| corrupt("hlc"))?;
            versions
                .entry(key)
                .or_default()
                .insert(column, CellVersion { value, hlc });
        }
    }
    Ok(versions)
}

mod identity;
mod page;
pub(crate) mod pending;
mod renumber;
mod tables;
mod verify;

pub(crate) use identity::keypair;
pub(crate) use page::{PageLimit, last_seq_with_entries, page};
pub(crate) use renumber::{Repeat, reissue, repeat_statements};
pub(crate) use tables::{record_table_keys, table_keys, unknown_table_statement};
pub use verify::LogReport;
pub(crate) use verify::verify;
