//! What SQLite writes on its own around a captured delete: the child rows its foreign
//! keys' actions delete or change (`ON DELETE CASCADE / SET NULL / SET DEFAULT`).
//!
//! Glue for the plans of `capture::cascade`: before the delete, under the same write lock,
//! it reads the keys of the child rows the delete will reach; after it, it reads those
//! rows again and turns what happened to them into operations of the same transaction
//! (gone: a delete; still there: an update of the referencing columns). It runs on the
//! connection or transaction it is handed and never commits.

use crate::capture::{Capture, Cascade};
use crate::clock::Hlc;
use crate::log::{self, MAX_PARAMS};
use crate::protocol::{SyncOperation, WriteKind};
use crate::schema::{TableMeta, quote_ident};
use crate::value::{CellValue, encode_key};
use sea_orm::sea_query::Values;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use std::collections::HashMap;

/// The keys of the child rows each cascade of `capture` reaches, read before it runs.
pub(crate) async fn children_before(
    conn: &impl ConnectionTrait,
    capture: &Capture,
    values: &Option<Values>,
) -> Result<Vec<Vec<Vec<CellValue>>>, DbErr> {
    let mut all = Vec::with_capacity(capture.cascades.len());
    for cascade in &capture.cascades {
        let values = values.as_ref().map(|values| match cascade.params {
            Some(n) => Values(values.0.iter().take(n).cloned().collect()),
            None => values.clone(),
        });
        let rows = conn
            .query_all_raw(Statement {
                sql: cascade.select_keys.clone(),
                values,
                db_backend: DbBackend::Sqlite,
            })
            .await?;
        let width = cascade.table.primary_key.len();
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            keys.push(
                (0..width)
                    .map(|index| log::read_cell(row, index))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        all.push(keys);
    }
    Ok(all)
}

/// What the cascades did to the child rows found by [`children_before`], as operations
/// stamped `hlc`.
pub(crate) async fn children_after(
    conn: &impl ConnectionTrait,
    capture: &Capture,
    before: Vec<Vec<Vec<CellValue>>>,
    hlc: Hlc,
) -> Result<Vec<SyncOperation>, DbErr> {
    let mut operations = Vec::new();
    for (cascade, keys) in capture.cascades.iter().zip(before) {
        if keys.is_empty() {
            continue;
        }
        operations.extend(reread(conn, cascade, keys, hlc).await?);
    }
    if !operations.is_empty() {
        tracing::trace!(table = %capture.table.name, rows = operations.len(), "captured what foreign key actions did");
    }
    Ok(operations)
}

async fn reread(
    conn: &impl ConnectionTrait,
    cascade: &Cascade,
    keys: Vec<Vec<CellValue>>,
    hlc: Hlc,
) -> Result<Vec<SyncOperation>, DbErr> {
    let meta = &cascade.table;
    let columns: Vec<String> = cascade
        .columns
        .iter()
        .filter_map(|c| meta.column(c).filter(|c| !meta.is_key(&c.name)))
        .map(|c| c.name.clone())
        .collect();
    let mut remaining: HashMap<Vec<u8>, Vec<CellValue>> = HashMap::with_capacity(keys.len());
    let mut order = Vec::with_capacity(keys.len());
    for key in keys {
        let encoded = encode_key(&key);
        if remaining.insert(encoded.clone(), key).is_none() {
            order.push(encoded);
        }
    }
    let keys: Vec<&Vec<CellValue>> = order.iter().map(|k| &remaining[k]).collect();
    let mut still_there = current_rows(conn, meta, &columns, &keys).await?;
    let mut operations = Vec::with_capacity(order.len());
    for encoded in order {
        let key = remaining.remove(&encoded).unwrap_or_default();
        let primary_key: Vec<(String, CellValue)> =
            meta.primary_key.iter().cloned().zip(key).collect();
        let (kind, values) = match still_there.remove(&encoded) {
            None => (WriteKind::Delete, Vec::new()),
            Some(values) => (
                WriteKind::Update,
                columns.iter().cloned().zip(values).collect(),
            ),
        };
        operations.push(SyncOperation {
            table: meta.name.clone(),
            kind,
            hlc,
            primary_key,
            values,
        });
    }
    Ok(operations)
}

/// The values of `columns` (non-key, registered names) of the rows of `meta` under
/// `keys` that exist now, by encoded key.
pub(crate) async fn current_rows(
    conn: &impl ConnectionTrait,
    meta: &TableMeta,
    columns: &[String],
    keys: &[&Vec<CellValue>],
) -> Result<HashMap<Vec<u8>, Vec<CellValue>>, DbErr> {
    let width = meta.primary_key.len();
    let key_list = meta
        .primary_key
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let selected = meta
        .primary_key
        .iter()
        .chain(columns)
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let mut found: HashMap<Vec<u8>, Vec<CellValue>> = HashMap::new();
    for chunk in keys.chunks((MAX_PARAMS / width.max(1)).max(1)) {
        let values: Vec<sea_orm::Value> = chunk
            .iter()
            .flat_map(|key| key.iter().map(CellValue::to_sea_value))
            .collect();
        let sql = format!(
            "SELECT {selected} FROM main.{} WHERE ({key_list}) IN (VALUES {})",
            quote_ident(&meta.name),
            vec![tuple.as_str(); chunk.len()].join(", ")
        );
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                values,
            ))
            .await?;
        for row in &rows {
            let cells = (0..width + columns.len())
                .map(|index| log::read_cell(row, index))
                .collect::<Result<Vec<_>, _>>()?;
            found.insert(encode_key(&cells[..width]), cells[width..].to_vec());
        }
    }
    Ok(found)
}
