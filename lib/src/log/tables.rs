//! `_wavesync_tables`: the primary key columns of every table the log holds rows of.
//!
//! The log addresses a row by the encoded values of its key, without names. To serve a
//! table's rows to a peer (catch-up), a node needs the names of the key columns even when
//! it does not register the table itself (yet, or ever): it learnt them from the change
//! that brought the rows, or from its own registration. Names are data here: they are
//! bound as parameters, never spliced into SQL.
//!
//! `registered` says whether this node has ever registered the table for sync: the first
//! registration backfills rows that were written before it (see `registration`).

use super::stmt;
use crate::value::{CellValue, decode_key, encode_key};
use sea_orm::{ConnectionTrait, DbErr, Value};
use std::collections::HashMap;

/// Per table (as the log spells it), its key column names in key order.
pub(crate) type TableKeys = HashMap<String, Vec<String>>;

fn encode_names(names: &[String]) -> Vec<u8> {
    let values: Vec<CellValue> = names.iter().map(|n| CellValue::Text(n.clone())).collect();
    encode_key(&values)
}

fn decode_names(bytes: &[u8]) -> Option<Vec<String>> {
    decode_key(bytes)?
        .into_iter()
        .map(|value| match value {
            CellValue::Text(name) => Some(name),
            _ => None,
        })
        .collect()
}

/// Records `table`'s key columns as this node registers it for sync. Returns whether the
/// table had been registered for sync on this database before.
pub(crate) async fn record_table_keys(
    conn: &impl ConnectionTrait,
    table: &str,
    keys: &[String],
) -> Result<bool, DbErr> {
    let before = conn
        .query_one_raw(stmt(
            "SELECT registered FROM _wavesync_tables WHERE tbl = ?",
            vec![table.into()],
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    conn.execute_raw(stmt(
        "INSERT INTO _wavesync_tables (tbl, key_columns, registered) VALUES (?, ?, 1) \
         ON CONFLICT (tbl) DO UPDATE SET key_columns = excluded.key_columns, registered = 1",
        vec![table.into(), encode_names(keys).into()],
    ))
    .await?;
    Ok(before == 1)
}

/// The statements that remember a table this node does not sync (its key names, as the
/// change that brought it named them) and mark the whole table as waiting for a
/// registration (a pending column named like the row-existence cell).
pub(crate) fn unknown_table_statement(table: &str, keys: &[String]) -> Vec<(String, Vec<Value>)> {
    vec![
        (
            "INSERT INTO _wavesync_tables (tbl, key_columns, registered) VALUES (?, ?, 0) \
             ON CONFLICT (tbl) DO NOTHING"
                .to_owned(),
            vec![table.into(), encode_names(keys).into()],
        ),
        super::pending::mark_statement(table, crate::schema::ROW_EXISTS_COLUMN),
    ]
}

/// The key columns of every table the log knows.
pub(crate) async fn table_keys(conn: &impl ConnectionTrait) -> Result<TableKeys, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT tbl, key_columns FROM _wavesync_tables",
            vec![],
        ))
        .await?;
    let mut keys = TableKeys::with_capacity(rows.len());
    for row in rows {
        let table: String = row.try_get_by_index(0)?;
        let bytes: Vec<u8> = row.try_get_by_index(1)?;
        match decode_names(&bytes) {
            Some(names) => {
                keys.insert(table, names);
            }
            None => tracing::warn!(%table, "unreadable key column names in _wavesync_tables"),
        }
    }
    Ok(keys)
}
