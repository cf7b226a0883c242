//! Where the log and this peer's tables disagree, and the statements that settle it.
//!
//! Owns `_wavesync_pending_columns`: which (table, column) pairs have cell versions in
//! the log that no column of this peer's tables holds yet (a peer on a newer schema wrote
//! them, or the whole table arrived before this peer registered it: the row-existence
//! cell's name stands for the table). `apply` marks them; `migrate` reads, renames and
//! forgets them when `sync` registers the column, and rewrites the table from its logged
//! cells. The other way round, a table with rows the log does not know (written around
//! WaveSyncDB) is found here for `migrate`'s backfill. Names from the network are only
//! ever bound as parameters.

use super::stmt;
use crate::schema::{ROW_EXISTS_COLUMN, quote_ident};
use sea_orm::{ConnectionTrait, DbErr, Value};

/// The statement that marks `column` of `table` as holding logged values no column holds.
pub(crate) fn mark_statement(table: &str, column: &str) -> (String, Vec<Value>) {
    (
        "INSERT OR IGNORE INTO _wavesync_pending_columns (tbl, col) VALUES (?, ?)".to_owned(),
        vec![table.into(), column.into()],
    )
}

/// The columns of `table` marked as waiting, as they were logged.
pub(crate) async fn waiting_columns(
    conn: &impl ConnectionTrait,
    table: &str,
) -> Result<Vec<String>, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT col FROM _wavesync_pending_columns WHERE tbl = ?",
            vec![table.into()],
        ))
        .await?;
    rows.iter().map(|row| row.try_get_by_index(0)).collect()
}

/// Files the versions of `table` logged under the column name `logged` under `registered`
/// (another spelling of it), except where a version under `registered` already exists for
/// the row (that one stays and wins).
pub(crate) async fn rename_logged_column(
    conn: &impl ConnectionTrait,
    table: &str,
    logged: &str,
    registered: &str,
) -> Result<(), DbErr> {
    conn.execute_raw(stmt(
        "UPDATE _wavesync_log SET col = ? WHERE tbl = ? AND col = ? AND NOT EXISTS \
         (SELECT 1 FROM _wavesync_log e WHERE e.tbl = _wavesync_log.tbl \
         AND e.pk = _wavesync_log.pk AND e.col = ?)",
        vec![
            registered.into(),
            table.into(),
            logged.into(),
            registered.into(),
        ],
    ))
    .await
    .map(drop)
}

/// Forgets that `column` of `table` waits.
pub(crate) async fn forget(
    conn: &impl ConnectionTrait,
    table: &str,
    column: &str,
) -> Result<(), DbErr> {
    conn.execute_raw(stmt(
        "DELETE FROM _wavesync_pending_columns WHERE tbl = ? AND col = ?",
        vec![table.into(), column.into()],
    ))
    .await
    .map(drop)
}

/// Whether `table` holds more rows than the log knows alive: rows inserted around
/// WaveSyncDB (a migration on a plain connection). Two counts, no row read. `table` is a
/// registered table's name (it is quoted into the SQL).
pub(crate) async fn has_unlogged_rows(
    conn: &impl ConnectionTrait,
    table: &str,
) -> Result<bool, DbErr> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM {}) > (SELECT count(*) FROM _wavesync_log \
         WHERE tbl = ? AND col = ? AND value = 1)",
        quote_ident(table)
    );
    let row = conn
        .query_one_raw(stmt(&sql, vec![table.into(), ROW_EXISTS_COLUMN.into()]))
        .await?;
    Ok(row
        .map(|row| row.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false))
}

/// The statement that reads every logged cell of `table` (key, column, value, HLC), in
/// key order.
pub(crate) fn cells_of_table(table: &str) -> sea_orm::Statement {
    stmt(
        "SELECT pk, col, value, hlc FROM _wavesync_log WHERE tbl = ? ORDER BY pk",
        vec![table.into()],
    )
}

/// The statement that drops the logged version of one cell.
pub(crate) fn drop_cell_statement(table: &str, key: &[u8], column: &str) -> (String, Vec<Value>) {
    (
        "DELETE FROM _wavesync_log WHERE tbl = ? AND pk = ? AND col = ?".to_owned(),
        vec![table.into(), key.to_vec().into(), column.into()],
    )
}
