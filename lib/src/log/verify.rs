//! Checking that the synced tables and the sync log agree (`WaveSyncDb::verify_log`).
//!
//! Read-only: it runs on the connection it is handed and changes nothing.

use super::{head, read_cell, row_versions, stmt};
use crate::clock::NodeId;
use crate::value::CellValue;
use sea_orm::{ConnectionTrait, DbErr, Value};

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
        let (columns, select) = meta.select_all();
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
