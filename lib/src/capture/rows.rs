//! From a captured write's result rows to the operations it wrote, and to the rows its
//! caller gets.
//!
//! Pure: it reads rows SQLite returned and never executes anything. It finds each wanted
//! cell in the rows ([`Returning`]), or says which queries read the missing ones back by
//! key ([`Cells::ReadBack`]), which the glue (`transaction`, `autocommit`) runs on the
//! write's own connection. It must never hand the caller a row of the library's own.

use super::{Capture, CaptureKind, READ_BACK_KEYS, Returning, locate, read_back_sql};
use crate::clock::Hlc;
use crate::log;
use crate::protocol::{SyncOperation, WriteKind};
use sea_orm::sea_query::Values;
use sea_orm::{DbErr, QueryResult};
use sqlx::{Column as _, Row as _};

/// Where the cells a captured write wrote are to be read.
pub(crate) enum Cells {
    /// At these positions (one per [`Capture::returned_columns`]) of each of its rows.
    InRows(Vec<usize>),
    /// Partly missing from its rows (the caller's `RETURNING` does not return them): run
    /// these queries, which read them back by key; their columns are
    /// [`Capture::returned_columns`] in order.
    ReadBack(Vec<(String, Values)>),
}

/// Where the cells a captured write wrote are, given the rows it returned.
pub(crate) fn locate_cells(capture: &Capture, rows: &[QueryResult]) -> Result<Cells, DbErr> {
    let wanted = &capture.returned_columns;
    let Some(first) = rows.first() else {
        return Ok(Cells::InRows(Vec::new()));
    };
    let names: Vec<&str> = log::sqlite_row(first)?
        .columns()
        .iter()
        .map(|column| column.name())
        .collect();
    let items = match &capture.returning {
        Returning::Appended => {
            let start = names.len().checked_sub(wanted.len()).ok_or_else(|| {
                DbErr::from(crate::Error::NotCaptured {
                    reason: "RETURNING produced fewer columns than requested".into(),
                })
            })?;
            return Ok(Cells::InRows((start..names.len()).collect()));
        }
        Returning::Own(items) => items,
    };
    let located = locate(items, &names, wanted)
        .map_err(|reason| DbErr::from(crate::Error::NotCaptured { reason }))?;
    if let Some(positions) = located.iter().copied().collect::<Option<Vec<usize>>>() {
        return Ok(Cells::InRows(positions));
    }
    // Read the rest back by key: the plan made sure the key columns are returned.
    let key_positions = located[..capture.table.primary_key.len()]
        .iter()
        .copied()
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            DbErr::from(crate::Error::NotCaptured {
                reason: "RETURNING did not return the primary key".into(),
            })
        })?;
    let mut queries = Vec::new();
    for chunk in rows.chunks(READ_BACK_KEYS) {
        let mut values = Vec::with_capacity(chunk.len() * key_positions.len());
        for row in chunk {
            for &position in &key_positions {
                values.push(log::read_cell(row, position)?.to_sea_value());
            }
        }
        queries.push((
            read_back_sql(&capture.table, wanted, chunk.len()),
            Values(values),
        ));
    }
    Ok(Cells::ReadBack(queries))
}

/// The positions of the cells in the rows of [`Cells::ReadBack`]'s queries.
pub(crate) fn read_back_positions(capture: &Capture) -> Vec<usize> {
    (0..capture.returned_columns.len()).collect()
}

/// The rows of a captured write that the caller gets: those its own `RETURNING` asked for,
/// exactly; none if it had no `RETURNING` (the rows are the library's).
pub(crate) fn visible_rows(capture: &Capture, rows: Vec<QueryResult>) -> Vec<QueryResult> {
    match capture.returning {
        Returning::Appended => Vec::new(),
        Returning::Own(_) => rows,
    }
}

/// The operations that `rows` describe, their cells at `positions` (see [`Cells`]),
/// stamped `hlc`.
pub(crate) fn operations_from_rows(
    capture: &Capture,
    hlc: Hlc,
    rows: &[QueryResult],
    positions: &[usize],
) -> Result<Vec<SyncOperation>, DbErr> {
    let kind = match capture.kind {
        CaptureKind::Insert => WriteKind::Insert,
        CaptureKind::Update => WriteKind::Update,
        CaptureKind::Delete => WriteKind::Delete,
    };
    let key_len = capture.table.primary_key.len();
    let mut operations = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cells = Vec::with_capacity(capture.returned_columns.len());
        for (column, &position) in capture.returned_columns.iter().zip(positions) {
            let cell = log::read_cell(row, position)?;
            let bytes = cell.byte_len();
            if bytes > crate::MAX_CELL_BYTES {
                return Err(crate::Error::CellTooLarge {
                    table: capture.table.name.clone(),
                    column: column.clone(),
                    bytes,
                    max: crate::MAX_CELL_BYTES,
                }
                .into());
            }
            cells.push((column.clone(), cell));
        }
        let values = cells.split_off(key_len);
        operations.push(SyncOperation {
            table: capture.table.name.clone(),
            kind,
            hlc,
            primary_key: cells,
            values,
        });
    }
    tracing::trace!(table = %capture.table.name, rows = operations.len(), "captured write");
    Ok(operations)
}
