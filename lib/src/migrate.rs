//! Additive migration, and the remote values that wait for a column this peer lacks.
//!
//! Owns the `CREATE TABLE`/`ALTER TABLE .. ADD COLUMN` statements of
//! [`crate::SchemaBuilder::sync`], and what is done with the (table, column) pairs that
//! `log::pending` records: cell versions in `_wavesync_log` that arrived from peers on a
//! newer schema before this peer's table had the column. Those versions take part in
//! last-writer-wins like any cell (`apply` stores them); when `sync` registers the column,
//! [`apply_waiting_values`] validates them against the column's type and rewrites their
//! rows. A pair whose column is empty (the row-existence cell's name) marks a whole
//! table whose rows arrived before this peer registered it. So peers on different schema
//! versions, and peers that register late, lose nothing.
//!
//! It also backfills: rows a table held before it was first registered for sync (written
//! by plain SeaORM, a migration, an older version of the app) have no versions in the
//! log; [`backfill`] turns them into one local transaction, so they replicate and a
//! remote change never overwrites what it does not carry.
//!
//! It is glue: it runs on the transaction it is handed. It never drops, renames or retypes
//! a column, and never puts a name from the network into SQL text: pending column names
//! are only bound as parameters, and a table's rows are rewritten with its registered
//! names.

use crate::apply::rewrite_table;
use crate::clock::Hlc;
use crate::error::Error;
use crate::log;
use crate::protocol::{SyncOperation, WriteKind};
use crate::schema::{ForeignKey, OnDelete, ROW_EXISTS_COLUMN, TableMeta};
use crate::sql::stmt;
use crate::value::{CellValue, encode_key};
use sea_orm::sea_query::{ColumnDef, Table, TableCreateStatement};
use sea_orm::{ConnectionTrait, DbErr, StreamTrait};
use std::sync::Arc;

/// How a registered table takes part in sync.
pub(crate) enum Mode {
    /// Replicated, with the metadata capture and merge consult.
    Synced(TableMeta),
    /// Created and migrated here, never sent nor accepted.
    Local,
}

/// One column of an entity, as migration needs it.
pub(crate) struct ColumnPlan {
    pub name: String,
    pub nullable: bool,
    pub has_default: bool,
    pub unique: bool,
    pub key: bool,
    /// The column's definition, from SeaORM's schema builder.
    pub def: ColumnDef,
}

/// One registered entity: how to create its table and each of its columns.
pub(crate) struct TablePlan {
    pub table: String,
    pub create: TableCreateStatement,
    pub columns: Vec<ColumnPlan>,
    pub mode: Mode,
}

/// The column names of `table` as the database has them.
async fn existing_columns(conn: &impl ConnectionTrait, table: &str) -> Result<Vec<String>, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT name FROM pragma_table_info(?)",
            vec![table.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect()
}

/// Why SQLite, or sync, cannot take `column` as a new column of an existing table, and
/// what to declare instead.
fn refusal(plan: &TablePlan, column: &ColumnPlan) -> Option<String> {
    let name = &column.name;
    if column.key {
        return Some(format!(
            "the primary key column `{name}` is missing from the existing table, and SQLite \
             cannot add a key column; migrate the table by hand (create the new table, copy \
             the rows, rename it)"
        ));
    }
    if column.unique {
        return Some(format!(
            "SQLite cannot add the unique column `{name}` to an existing table; add it \
             without `unique` and create a unique index in a migration of your own"
        ));
    }
    if column.nullable {
        return None;
    }
    match plan.mode {
        Mode::Synced(_) => Some(format!(
            "a new column of a synced table must be nullable, because rows that peers still \
             on the old schema insert carry no value for it; declare the field `{name}` as \
             `Option<T>`"
        )),
        Mode::Local if !column.has_default => Some(format!(
            "SQLite cannot add the NOT NULL column `{name}` without a default to an existing \
             table; declare it `Option<T>` or give it `#[sea_orm(default_value = ..)]`"
        )),
        Mode::Local => None,
    }
}

/// Creates the table if it is missing, else adds the columns it lacks. Returns whether
/// the table existed before.
pub(crate) async fn create_or_extend(
    conn: &impl ConnectionTrait,
    plan: &TablePlan,
) -> Result<bool, Error> {
    let existing = existing_columns(conn, &plan.table).await?;
    if existing.is_empty() {
        tracing::info!(table = %plan.table, "creating table");
        conn.execute(&plan.create).await?;
        return Ok(false);
    }
    for column in &plan.columns {
        if existing
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&column.name))
        {
            continue;
        }
        if let Some(reason) = refusal(plan, column) {
            return Err(Error::Refused {
                table: plan.table.clone(),
                reason,
            });
        }
        tracing::info!(table = %plan.table, column = %column.name, "adding column");
        let mut alter = Table::alter();
        alter
            .table(sea_orm::sea_query::Alias::new(plan.table.as_str()))
            .add_column(column.def.clone());
        conn.execute(&alter).await?;
    }
    Ok(true)
}

/// Writes into `meta`'s table the rows and values the log holds for it that were kept
/// while this peer did not sync the table or lacked some of its columns, and forgets them
/// as pending. A value that does not fit its column's type is dropped from the log and not
/// written. Returns how many were dropped.
pub(crate) async fn apply_waiting_values<C>(conn: &C, meta: &Arc<TableMeta>) -> Result<usize, DbErr>
where
    C: ConnectionTrait + StreamTrait,
{
    let mut waiting = false;
    for logged_name in log::pending::waiting_columns(conn, &meta.name).await? {
        if logged_name == ROW_EXISTS_COLUMN {
            // The whole table arrived before this peer registered it.
            waiting = true;
            log::pending::forget(conn, &meta.name, &logged_name).await?;
            continue;
        }
        let Some(column) = meta.column(&logged_name).filter(|c| !meta.is_key(&c.name)) else {
            continue;
        };
        waiting = true;
        let column = column.name.clone();
        if logged_name != column {
            // Logged under another spelling: store it under the registered one, unless a
            // version under that one is already there (which then wins).
            log::pending::rename_logged_column(conn, &meta.name, &logged_name, &column).await?;
        }
        log::pending::forget(conn, &meta.name, &logged_name).await?;
    }
    if !waiting {
        return Ok(0);
    }
    tracing::info!(table = %meta.name, "writing rows and values that waited for this registration");
    rewrite_table(conn, meta).await
}

/// What the log lacks of the rows `meta`'s table holds, as operations to commit as one
/// local transaction, so they replicate:
/// - a row without any version, and a value without one, are stamped `floor` (time 0 on
///   this node's clock): whatever any peer really wrote wins over them, and two peers that
///   adopt the same seeded row settle it by node id;
/// - a row the log says is deleted (re-inserted around the library) is an insert stamped
///   `now`.
pub(crate) async fn backfill(
    conn: &impl ConnectionTrait,
    meta: &TableMeta,
    floor: Hlc,
    now: Hlc,
) -> Result<Vec<SyncOperation>, DbErr> {
    let (columns, select) = meta.select_all();
    let rows = conn.query_all_raw(stmt(&select, vec![])).await?;
    let key_len = meta.primary_key.len();
    let named = |cells: Vec<CellValue>, names: &[&str]| -> Vec<(String, CellValue)> {
        names.iter().map(|c| (*c).to_owned()).zip(cells).collect()
    };
    let mut operations = Vec::new();
    for chunk in rows.chunks(1_000) {
        let mut cells_of_rows = Vec::with_capacity(chunk.len());
        let mut keys = Vec::with_capacity(chunk.len());
        for row in chunk {
            let mut cells = Vec::with_capacity(columns.len());
            for index in 0..columns.len() {
                cells.push(log::read_cell(row, index)?);
            }
            keys.push(encode_key(&cells[..key_len]));
            cells_of_rows.push(cells);
        }
        let held = log::versions_of_rows(conn, &meta.name, &keys).await?;
        for (key, mut cells) in keys.iter().zip(cells_of_rows) {
            let values = cells.split_off(key_len);
            let primary_key = named(cells, &columns[..key_len]);
            let values = named(values, &columns[key_len..]);
            let versions = held.get(key);
            let deleted = versions
                .and_then(|v| v.get(ROW_EXISTS_COLUMN))
                .is_some_and(|v| v.value == CellValue::Integer(0));
            let (kind, hlc, values) = match versions {
                None => (WriteKind::Insert, floor, values),
                Some(_) if deleted => (WriteKind::Insert, now, values),
                Some(versions) => {
                    let missing: Vec<_> = values
                        .into_iter()
                        .filter(|(name, _)| !versions.contains_key(name))
                        .collect();
                    if missing.is_empty() && versions.contains_key(ROW_EXISTS_COLUMN) {
                        continue;
                    }
                    (WriteKind::Update, floor, missing)
                }
            };
            operations.push(SyncOperation {
                table: meta.name.clone(),
                kind,
                hlc,
                primary_key,
                values,
            });
        }
    }
    if !operations.is_empty() {
        tracing::info!(table = %meta.name, rows = operations.len(), "rows the sync log had not seen now replicate");
    }
    Ok(operations)
}

/// Everything in which `meta`'s table and the log disagree, as operations stamped `now`
/// to commit as one local transaction: rows the log lacks or holds deleted (inserts),
/// values it lacks or holds otherwise (updates), rows it holds alive that are gone
/// (deletes). For a write that ran uncaptured because its table was being registered at
/// that moment (see `connection`): the write is newer than anything the log holds, so
/// it is stamped now, unlike what [`backfill`] adopts.
pub(crate) async fn reconcile(
    conn: &impl ConnectionTrait,
    meta: &TableMeta,
    now: Hlc,
) -> Result<Vec<SyncOperation>, DbErr> {
    let (columns, select) = meta.select_all();
    let rows = conn.query_all_raw(stmt(&select, vec![])).await?;
    let key_len = meta.primary_key.len();
    let named = |cells: Vec<CellValue>, names: &[&str]| -> Vec<(String, CellValue)> {
        names.iter().map(|c| (*c).to_owned()).zip(cells).collect()
    };
    let mut operations = Vec::new();
    let mut present = std::collections::HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(1_000) {
        let mut cells_of_rows = Vec::with_capacity(chunk.len());
        let mut keys = Vec::with_capacity(chunk.len());
        for row in chunk {
            let cells = (0..columns.len())
                .map(|index| log::read_cell(row, index))
                .collect::<Result<Vec<_>, _>>()?;
            keys.push(encode_key(&cells[..key_len]));
            cells_of_rows.push(cells);
        }
        let held = log::versions_of_rows(conn, &meta.name, &keys).await?;
        for (key, mut cells) in keys.into_iter().zip(cells_of_rows) {
            let values = named(cells.split_off(key_len), &columns[key_len..]);
            let primary_key = named(cells, &columns[..key_len]);
            let versions = held.get(&key);
            let alive = versions
                .and_then(|v| v.get(ROW_EXISTS_COLUMN))
                .is_some_and(|v| v.value == CellValue::Integer(1));
            present.insert(key);
            let (kind, values) = match versions {
                Some(versions) if alive => {
                    let differing: Vec<_> = values
                        .into_iter()
                        .filter(|(name, value)| versions.get(name).map(|v| &v.value) != Some(value))
                        .collect();
                    if differing.is_empty() {
                        continue;
                    }
                    (WriteKind::Update, differing)
                }
                _ => (WriteKind::Insert, values),
            };
            operations.push(SyncOperation {
                table: meta.name.clone(),
                kind,
                hlc: now,
                primary_key,
                values,
            });
        }
    }
    // A row the log holds alive but without every required value is waiting for the
    // rest (it never was in the table): only complete ones were deleted.
    let gone: Vec<Vec<u8>> = log::alive_keys(conn, &meta.name)
        .await?
        .into_iter()
        .filter(|key| !present.contains(key))
        .collect();
    let required: Vec<&str> = meta
        .value_columns()
        .filter(|c| !c.nullable)
        .map(|c| c.name.as_str())
        .collect();
    let mut complete = std::collections::HashSet::new();
    for chunk in gone.chunks(1_000) {
        for (key, versions) in log::versions_of_rows(conn, &meta.name, chunk).await? {
            if required.iter().all(|c| versions.contains_key(*c)) {
                complete.insert(key);
            }
        }
    }
    for key in gone {
        if !complete.contains(&key) {
            continue;
        }
        let Some(cells) = crate::value::decode_key(&key) else {
            continue;
        };
        if cells.len() != key_len {
            continue;
        }
        operations.push(SyncOperation {
            table: meta.name.clone(),
            kind: WriteKind::Delete,
            hlc: now,
            primary_key: named(cells, &columns[..key_len]),
            values: Vec::new(),
        });
    }
    if !operations.is_empty() {
        tracing::info!(table = %meta.name, rows = operations.len(), "a write that raced with registration now replicates");
    }
    Ok(operations)
}

/// The synced tables `sql` writes, as planned against `registry` now; for a statement
/// the planner refuses, every synced table it names.
pub(crate) fn tables_written(sql: &str, registry: &crate::schema::Registry) -> Vec<Arc<TableMeta>> {
    match crate::capture::plan_script(sql, sea_orm::DbBackend::Sqlite, registry) {
        Ok(steps) => {
            let mut tables: Vec<Arc<TableMeta>> = Vec::new();
            for step in steps.into_iter().flatten() {
                if let crate::capture::Step::Capture(capture) = step
                    && !tables.iter().any(|t| t.name == capture.table.name)
                {
                    tables.push(capture.table);
                }
            }
            tables
        }
        Err(_) => {
            let lower = sql.to_ascii_lowercase();
            registry
                .synced_tables()
                .filter(|t| lower.contains(&t.name.to_ascii_lowercase()))
                .cloned()
                .collect()
        }
    }
}

/// The foreign keys between synced tables whose parent deletes SQLite turns into writes
/// of the child (`ON DELETE CASCADE / SET NULL / SET DEFAULT`), as (parent, key) pairs.
pub(crate) async fn foreign_keys(
    conn: &impl ConnectionTrait,
    synced: &[Arc<TableMeta>],
) -> Result<Vec<(String, ForeignKey)>, DbErr> {
    let registered = |name: &str| synced.iter().find(|t| t.name.eq_ignore_ascii_case(name));
    let mut keys = Vec::new();
    for child in synced {
        let rows = conn
            .query_all_raw(stmt(
                "SELECT id, \"table\", \"from\", \"to\", on_delete \
                 FROM pragma_foreign_key_list(?) ORDER BY id, seq",
                vec![child.name.as_str().into()],
            ))
            .await?;
        let mut current: Option<(i64, String, ForeignKey)> = None;
        let mut finished = Vec::new();
        for row in rows {
            let id: i64 = row.try_get_by_index(0)?;
            let parent: String = row.try_get_by_index(1)?;
            let from: String = row.try_get_by_index(2)?;
            let to: Option<String> = row.try_get_by_index(3)?;
            let on_delete: String = row.try_get_by_index(4)?;
            let action = match on_delete.to_ascii_uppercase().as_str() {
                "CASCADE" => Some(OnDelete::Cascade),
                "SET NULL" | "SET DEFAULT" => Some(OnDelete::SetNullOrDefault),
                _ => None,
            };
            let (Some(action), Some(parent_meta)) = (action, registered(&parent)) else {
                continue;
            };
            if current
                .as_ref()
                .is_none_or(|(current_id, ..)| *current_id != id)
            {
                finished.extend(current.take());
                current = Some((
                    id,
                    parent_meta.name.clone(),
                    ForeignKey {
                        child: child.name.clone(),
                        child_columns: Vec::new(),
                        parent_columns: Vec::new(),
                        on_delete: action,
                    },
                ));
            }
            if let Some((_, _, key)) = current.as_mut() {
                let index = key.child_columns.len();
                key.child_columns.push(from);
                // A missing `to` names the parent's primary key, column by column.
                key.parent_columns.push(to.unwrap_or_else(|| {
                    parent_meta
                        .primary_key
                        .get(index)
                        .cloned()
                        .unwrap_or_default()
                }));
            }
        }
        finished.extend(current.take());
        keys.extend(
            finished
                .into_iter()
                .filter(|(_, _, key)| key.parent_columns.iter().all(|c| !c.is_empty()))
                .map(|(_, parent, key)| (parent, key)),
        );
    }
    Ok(keys)
}
