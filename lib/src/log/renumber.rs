//! Issuing this node's transactions again under new numbers, and stamping a repeated
//! version with the number its origin gave it last (`protocol::recovery` decides when).
//!
//! Glue like the rest of `log`: it runs on the connection or transaction it is handed.
//! It never changes a value or a timestamp, only the sequence number entries are filed
//! under, so no merge outcome changes.

use super::{MAX_PARAMS, seq_value, stmt};
use crate::clock::{Hlc, NodeId};
use crate::protocol::recovery::reissue_plan;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value};

/// Files every entry of `origin` numbered in `(floor, max(head, top)]` under a new number
/// above both the origin's head and `top` (see [`reissue_plan`]), in one IMMEDIATE
/// transaction, and moves the head past them. Returns the new head.
pub(crate) async fn reissue(
    conn: &DatabaseConnection,
    origin: NodeId,
    floor: u64,
    top: u64,
) -> Result<u64, DbErr> {
    let txn = crate::sql::begin_immediate(conn).await?;
    let head = super::head(&txn, origin).await?;
    let (shift, new_head) = reissue_plan(floor, top, head);
    txn.execute_raw(stmt(
        "UPDATE _wavesync_log SET seq = seq + ? WHERE origin = ? AND seq > ? AND seq <= ?",
        vec![
            seq_value(shift),
            origin.0.to_vec().into(),
            seq_value(floor),
            seq_value(head.max(top)),
        ],
    ))
    .await?;
    super::set_head(&txn, origin, new_head).await?;
    super::set_confirmed(&txn, new_head).await?;
    txn.commit().await?;
    Ok(new_head)
}

/// A version a peer sent again that the log already holds (same cell, same timestamp,
/// so the same write of the same origin).
pub(crate) struct Repeat {
    pub table: String,
    pub key: Vec<u8>,
    pub column: String,
    pub hlc: Hlc,
    pub seq: u64,
}

/// Statements that file each repeated version under the higher of the number the log
/// holds and the one it came with: an origin that issued its transactions again
/// (`reissue`) is followed by every peer's log, so a peer that pulls the new numbers from
/// any of them finds the entries there. Run after the heads of the batch advanced: an
/// entry moves only up to its origin's head here, so no peer can file a version beyond
/// what pulls from this node serve.
pub(crate) fn repeat_statements(repeats: &[Repeat]) -> Vec<(String, Vec<Value>)> {
    repeats
        .chunks(MAX_PARAMS / 5)
        .map(|chunk| {
            let mut sql = String::from(
                "UPDATE _wavesync_log SET seq = v.column5 FROM (VALUES ",
            );
            let mut values = Vec::with_capacity(chunk.len() * 5);
            for (n, repeat) in chunk.iter().enumerate() {
                sql.push_str(if n == 0 {
                    "(?, ?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?, ?)"
                });
                values.extend([
                    repeat.table.as_str().into(),
                    repeat.key.clone().into(),
                    repeat.column.as_str().into(),
                    repeat.hlc.to_bytes().to_vec().into(),
                    seq_value(repeat.seq),
                ]);
            }
            sql.push_str(
                ") AS v WHERE _wavesync_log.tbl = v.column1 AND _wavesync_log.pk = v.column2 \
                 AND _wavesync_log.col = v.column3 AND _wavesync_log.hlc = v.column4 \
                 AND _wavesync_log.seq < v.column5 AND v.column5 <= COALESCE( \
                 (SELECT h.seq FROM _wavesync_heads AS h WHERE h.origin = _wavesync_log.origin), 0)",
            );
            (sql, values)
        })
        .collect()
}
