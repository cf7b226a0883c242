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
use crate::schema::quote_ident;
use crate::value::CellValue;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
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

const META_SET: &str = "INSERT INTO _wavesync_meta (key, value) VALUES (?, ?) \
                        ON CONFLICT (key) DO UPDATE SET value = excluded.value";

async fn meta_set(conn: &impl ConnectionTrait, key: &str, value: Vec<u8>) -> Result<(), DbErr> {
    conn.execute_raw(stmt(META_SET, vec![key.into(), value.into()]))
        .await
        .map(drop)
}

/// This node's libp2p identity, created and persisted on first use, so the node keeps
/// its peer id (and with it its node id) across restarts.
pub(crate) async fn keypair(
    conn: &impl ConnectionTrait,
) -> Result<libp2p::identity::Keypair, DbErr> {
    if let Some(bytes) = meta_get(conn, "keypair").await? {
        return libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
            .map_err(|_| corrupt("keypair"));
    }
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| DbErr::Custom(format!("encoding the node keypair: {e}")))?;
    meta_set(conn, "keypair", bytes).await?;
    Ok(keypair)
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
    match row {
        None => Ok(0),
        Some(row) => {
            let seq: i64 = row.try_get_by_index(0)?;
            u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))
        }
    }
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
        let seq: i64 = row.try_get_by_index(1)?;
        heads.push((
            origin,
            u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))?,
        ));
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
) -> Result<u64, DbErr> {
    let (sql, values) = local_commit_statements(origin, entries, clock_bound);
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
/// first returns a row, the sequence number (read it with [`local_seq`]).
pub(crate) fn local_commit_statements(
    origin: NodeId,
    entries: &[LogEntry],
    clock_bound: Option<Hlc>,
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
    (sql, values)
}

/// The sequence number in the row [`local_commit_statements`] returns.
pub(crate) fn local_seq(row: &QueryResult) -> Result<u64, DbErr> {
    let seq: i64 = row.try_get_by_index(0)?;
    u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))
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
            sql.push_str(
                " ON CONFLICT (tbl, pk, col) DO UPDATE SET value = excluded.value, \
                 hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq",
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
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", "),
            quote_ident(&meta.name)
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

/// The bound on one catch-up page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageLimit {
    /// Log entries (cells).
    pub entries: u64,
    /// Bytes of values, roughly.
    pub bytes: usize,
}

/// One page of `origin`'s log entries with seq in (after, through], after `cursor`, as
/// operations tagged with their sequence numbers, and where the next page starts.
/// Entries of tables this peer does not sync are left out: their keys cannot be named.
pub(crate) async fn page(
    conn: &impl ConnectionTrait,
    synced: &dyn Fn(&str) -> Option<std::sync::Arc<crate::schema::TableMeta>>,
    origin: NodeId,
    after: u64,
    through: u64,
    cursor: Option<&crate::protocol::Cursor>,
    limit: PageLimit,
) -> Result<
    (
        Vec<(u64, crate::protocol::SyncOperation)>,
        Option<crate::protocol::Cursor>,
    ),
    DbErr,
> {
    use crate::protocol::{Cursor, SyncOperation, WriteKind};
    use crate::schema::ROW_EXISTS_COLUMN;
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
    let rows = conn.query_all_raw(stmt(&sql, values)).await?;
    let full = rows.len() as u64 >= limit.entries;

    let mut operations: Vec<(u64, SyncOperation)> = Vec::new();
    let mut last: Option<Cursor> = None;
    let mut bytes = 0usize;
    for row in &rows {
        let seq = u64::try_from(row.try_get_by_index::<i64>(0)?)
            .map_err(|_| corrupt("negative sequence number"))?;
        let table: String = row.try_get_by_index(1)?;
        let key = read_bytes(row, 2, "pk")?;
        let column: String = row.try_get_by_index(3)?;
        let value = read_cell(row, 4)?;
        let hlc = Hlc::from_bytes(&read_bytes(row, 5, "hlc")?).ok_or_else(|| corrupt("hlc"))?;
        if bytes >= limit.bytes && last.is_some() {
            // Over the byte bound: stop here; the next page starts after `last`.
            return Ok((operations, last));
        }
        bytes += 64
            + match &value {
                CellValue::Text(text) => text.len(),
                CellValue::Blob(blob) => blob.len(),
                _ => 8,
            };
        last = Some(Cursor {
            seq,
            table: table.clone(),
            key: key.clone(),
            column: column.clone(),
        });
        let Some(meta) = synced(&table) else {
            continue;
        };
        let Some(key_values) = crate::value::decode_key(&key) else {
            return Err(corrupt("primary key encoding"));
        };
        if key_values.len() != meta.primary_key.len() {
            continue;
        }
        let same_operation = matches!(
            operations.last(),
            Some((s, op)) if *s == seq && op.table == meta.name && op.hlc == hlc
                && op.primary_key.iter().map(|(_, v)| v).eq(key_values.iter())
        );
        if !same_operation {
            operations.push((
                seq,
                SyncOperation {
                    table: meta.name.clone(),
                    kind: WriteKind::Update,
                    hlc,
                    primary_key: meta.primary_key.iter().cloned().zip(key_values).collect(),
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
        } else if let Some(registered) = meta.column(&column) {
            op.values.push((registered.name.clone(), value));
        }
    }
    // An "insert" that does not carry every column is reported as an update.
    for (_, op) in &mut operations {
        if let (WriteKind::Insert, Some(meta)) = (op.kind, synced(&op.table))
            && op.values.len() < meta.value_columns().count()
        {
            op.kind = WriteKind::Update;
        }
    }
    Ok((operations, if full { last } else { None }))
}
