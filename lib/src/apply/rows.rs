//! User-table SQL of the inbound path: the statements that make a synced table's rows
//! match their merged cell versions, gathered into as few statements as the parameter
//! bound allows.
//!
//! Only registered names (from a [`TableMeta`]) are quoted into SQL text; every value is
//! bound. A row is written with exactly the columns it holds versions for (see
//! [`RowState`]): a column without one keeps what the table has.

use crate::log;
use crate::merge::{RowState, row_state};
use crate::schema::{TableMeta, quote_ident};
use crate::value::CellValue;
use futures::TryStreamExt;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, StreamTrait};
use std::collections::HashMap;
use std::sync::Arc;

/// Statements to run, each with its own parameters.
pub(crate) type Writes = Vec<(String, Vec<sea_orm::Value>)>;

/// What a batch of row writes does; rows of one batch share table and shape.
#[derive(PartialEq)]
enum Shape {
    Delete,
    /// Insert-or-replace of these value columns, in this order.
    Upsert(Vec<String>),
}

/// Consecutive row writes of the same table and shape, gathered into one statement
/// each: a catch-up page rewrites thousands of rows, and one statement per row would
/// cost a round trip to SQLite per row. Order across batches is kept.
#[derive(Default)]
pub(crate) struct RowWrites {
    batch: Option<(Arc<TableMeta>, Shape)>,
    /// Per row: its key values, then its value columns' values.
    rows: Vec<Vec<CellValue>>,
    params: usize,
    /// The statements made so far, in order.
    statements: Vec<(String, Vec<sea_orm::Value>)>,
}

impl RowWrites {
    pub(crate) fn push(
        &mut self,
        meta: Arc<TableMeta>,
        primary_key: Vec<(String, CellValue)>,
        state: RowState,
    ) {
        let (shape, values) = match state {
            RowState::Absent => (Shape::Delete, Vec::new()),
            RowState::Complete(values) => (
                Shape::Upsert(values.iter().map(|(name, _)| name.clone()).collect()),
                values,
            ),
            partial @ RowState::Partial(_) => {
                // Rare (a row whose insert is still on its way): written on its own.
                self.flush();
                if let Some(statement) = row_statement(&meta, &primary_key, partial) {
                    self.statements.push(split(statement));
                }
                return;
            }
        };
        let row: Vec<CellValue> = primary_key
            .into_iter()
            .chain(values)
            .map(|(_, value)| value)
            .collect();
        let same = self
            .batch
            .as_ref()
            .is_some_and(|(m, s)| m.name == meta.name && *s == shape);
        if !same || self.params + row.len() > log::MAX_PARAMS {
            self.flush();
            self.batch = Some((meta, shape));
        }
        self.params += row.len();
        self.rows.push(row);
    }

    /// Turns the gathered rows into a statement.
    pub(crate) fn flush(&mut self) {
        let rows = std::mem::take(&mut self.rows);
        self.params = 0;
        let Some((meta, shape)) = self.batch.take() else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        let table = quote_ident(&meta.name);
        let keys: Vec<String> = meta.primary_key.iter().map(|k| quote_ident(k)).collect();
        let tuple = |width: usize| format!("({})", vec!["?"; width].join(", "));
        let values = rows.iter().flatten().map(CellValue::to_sea_value);
        let statement = match &shape {
            Shape::Delete => format!(
                "DELETE FROM {table} WHERE ({}) IN (VALUES {})",
                keys.join(", "),
                vec![tuple(keys.len()); rows.len()].join(", ")
            ),
            Shape::Upsert(columns) => {
                let on_conflict = if columns.is_empty() {
                    "DO NOTHING".to_owned()
                } else {
                    let set = columns
                        .iter()
                        .map(|name| format!("{0} = excluded.{0}", quote_ident(name)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("DO UPDATE SET {set}")
                };
                let all_columns: Vec<String> = keys
                    .iter()
                    .cloned()
                    .chain(columns.iter().map(|c| quote_ident(c)))
                    .collect();
                format!(
                    "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) {on_conflict}",
                    all_columns.join(", "),
                    vec![tuple(all_columns.len()); rows.len()].join(", "),
                    keys.join(", ")
                )
            }
        };
        self.statements.push((statement, values.collect()));
    }

    /// Every statement, in order.
    pub(crate) fn finish(mut self) -> Vec<(String, Vec<sea_orm::Value>)> {
        self.flush();
        self.statements
    }
}

fn split(statement: Statement) -> (String, Vec<sea_orm::Value>) {
    (
        statement.sql,
        statement.values.map(|values| values.0).unwrap_or_default(),
    )
}

/// The statement that makes the user table's row match its state (`None`: nothing to do).
pub(crate) fn row_statement(
    meta: &TableMeta,
    primary_key: &[(String, CellValue)],
    state: RowState,
) -> Option<Statement> {
    let table = quote_ident(&meta.name);
    let key_match = primary_key
        .iter()
        .map(|(name, _)| format!("{} = ?", quote_ident(name)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let key_values = primary_key.iter().map(|(_, v)| v.to_sea_value());
    let statement = match state {
        RowState::Absent => Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("DELETE FROM {table} WHERE {key_match}"),
            key_values,
        ),
        RowState::Partial(values) if values.is_empty() => return None,
        RowState::Partial(values) => {
            let set = values
                .iter()
                .map(|(name, _)| format!("{} = ?", quote_ident(name)))
                .collect::<Vec<_>>()
                .join(", ");
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("UPDATE {table} SET {set} WHERE {key_match}"),
                values
                    .iter()
                    .map(|(_, v)| v.to_sea_value())
                    .chain(key_values),
            )
        }
        RowState::Complete(values) => {
            let columns: Vec<String> = primary_key
                .iter()
                .chain(&values)
                .map(|(name, _)| quote_ident(name))
                .collect();
            let keys: Vec<String> = primary_key
                .iter()
                .map(|(name, _)| quote_ident(name))
                .collect();
            let placeholders = vec!["?"; columns.len()].join(", ");
            let on_conflict = if values.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                let set = values
                    .iter()
                    .map(|(name, _)| format!("{0} = excluded.{0}", quote_ident(name)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("DO UPDATE SET {set}")
            };
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!(
                    "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT ({}) {on_conflict}",
                    columns.join(", "),
                    keys.join(", ")
                ),
                key_values.chain(values.iter().map(|(_, v)| v.to_sea_value())),
            )
        }
    };
    Some(statement)
}

/// Rewrites every row of `meta`'s table from the versions the log holds: after a
/// registration, for rows that arrived while this peer did not sync the table (or lacked
/// some of its columns). Values that do not fit their column are dropped from the log and
/// counted in the result; keys that do not fit the table's key are left alone (logged).
pub(crate) async fn rewrite_table<C>(conn: &C, meta: &Arc<TableMeta>) -> Result<usize, DbErr>
where
    C: ConnectionTrait + StreamTrait,
{
    let mut dropped: Vec<(Vec<u8>, String)> = Vec::new();
    let mut writes = RowWrites::default();
    let mut current: Option<(Vec<u8>, HashMap<String, crate::merge::CellVersion>)> = None;
    let mut statements: Writes = Vec::new();
    {
        let rows = conn
            .stream_raw(log::pending::cells_of_table(&meta.name))
            .await?;
        futures::pin_mut!(rows);
        while let Some(row) = rows.try_next().await? {
            let key = match log::read_cell(&row, 0)? {
                CellValue::Blob(key) => key,
                _ => continue,
            };
            let column: String = row.try_get_by_index(1)?;
            let value = log::read_cell(&row, 2)?;
            let hlc = match log::read_cell(&row, 3)? {
                CellValue::Blob(bytes) => crate::clock::Hlc::from_bytes(&bytes),
                _ => None,
            };
            let Some(hlc) = hlc else { continue };
            if current.as_ref().is_none_or(|(k, _)| *k != key) {
                if let Some((key, held)) = current.take() {
                    push_row(&mut writes, meta, &key, &held);
                }
                current = Some((key.clone(), HashMap::new()));
            }
            let (column, value) = if column == crate::schema::ROW_EXISTS_COLUMN {
                (column, value)
            } else if meta.column(&column).is_none_or(|c| meta.is_key(&c.name)) {
                // A column of a newer schema: it stays in the log, unwritten.
                continue;
            } else {
                match meta.admit(&column, value) {
                    Ok((registered, canonical)) => (registered.name.clone(), canonical),
                    Err(reason) => {
                        tracing::warn!(%reason, "dropping a logged remote value that does not fit its column");
                        dropped.push((key.clone(), column));
                        continue;
                    }
                }
            };
            if let Some((_, held)) = current.as_mut() {
                held.insert(column, crate::merge::CellVersion { value, hlc });
            }
        }
    }
    if let Some((key, held)) = current.take() {
        push_row(&mut writes, meta, &key, &held);
    }
    for (key, column) in &dropped {
        statements.push(log::pending::drop_cell_statement(&meta.name, key, column));
    }
    statements.extend(writes.finish());
    for chunk in statements.chunks(64) {
        log::execute_all(conn, chunk.to_vec()).await?;
    }
    Ok(dropped.len())
}

/// Queues the write of one logged row of `meta`.
fn push_row(
    writes: &mut RowWrites,
    meta: &Arc<TableMeta>,
    key: &[u8],
    held: &HashMap<String, crate::merge::CellVersion>,
) {
    let Some(key_values) =
        crate::value::decode_key(key).filter(|k| k.len() == meta.primary_key.len())
    else {
        tracing::warn!(table = %meta.name, "a logged row key does not fit the table's key");
        return;
    };
    let primary_key = meta.primary_key.iter().cloned().zip(key_values).collect();
    writes.push(Arc::clone(meta), primary_key, row_state(meta, held));
}
