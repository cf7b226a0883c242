//! Additive migration, and the remote values that wait for a column this peer lacks.
//!
//! Owns the `CREATE TABLE`/`ALTER TABLE .. ADD COLUMN` statements of
//! [`crate::SchemaBuilder::sync`], and the `_wavesync_pending_columns` table: which
//! (table, column) pairs have cell versions in `_wavesync_log` that arrived from peers on a
//! newer schema before this peer's table had the column. Those versions take part in
//! last-writer-wins like any cell (`apply` stores them); when `sync` registers the column,
//! [`apply_waiting_values`] validates them against the column's type and rewrites their
//! rows. So peers on different schema versions lose nothing.
//!
//! It is glue: it runs on the transaction it is handed. It never drops, renames or retypes
//! a column, and never puts a name from the network into SQL text: pending column names
//! are only bound as parameters, and a table's rows are rewritten with its registered
//! names.

use crate::apply::write_row;
use crate::error::Error;
use crate::log;
use crate::merge::row_state;
use crate::schema::TableMeta;
use crate::schema::builder::Mode;
use crate::value::CellValue;
use sea_orm::sea_query::{ColumnDef, Table, TableCreateStatement};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

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

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Creates `_wavesync_pending_columns` if it is missing.
pub(crate) async fn create_pending_table(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    conn.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS _wavesync_pending_columns (
            tbl TEXT NOT NULL,
            col TEXT NOT NULL,
            PRIMARY KEY (tbl, col)
        ) WITHOUT ROWID",
    )
    .await
    .map(drop)
}

/// Records that `table` has logged versions for `columns`, which it does not have yet.
pub(crate) async fn record_pending(
    conn: &impl ConnectionTrait,
    table: &str,
    columns: &[String],
) -> Result<(), DbErr> {
    if columns.is_empty() {
        return Ok(());
    }
    create_pending_table(conn).await?;
    for column in columns {
        conn.execute_raw(stmt(
            "INSERT OR IGNORE INTO _wavesync_pending_columns (tbl, col) VALUES (?, ?)",
            vec![table.into(), column.as_str().into()],
        ))
        .await?;
    }
    Ok(())
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

/// Creates the table if it is missing, else adds the columns it lacks.
pub(crate) async fn create_or_extend(
    conn: &impl ConnectionTrait,
    plan: &TablePlan,
) -> Result<(), Error> {
    let existing = existing_columns(conn, &plan.table).await?;
    if existing.is_empty() {
        tracing::info!(table = %plan.table, "creating table");
        conn.execute(&plan.create).await?;
        return Ok(());
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
    Ok(())
}

/// Writes into `meta`'s table the logged remote values of columns it has now, and forgets
/// them as pending. A value that does not fit its column's type is dropped from the log and
/// not written. Returns how many were dropped.
pub(crate) async fn apply_waiting_values(
    conn: &impl ConnectionTrait,
    meta: &TableMeta,
) -> Result<usize, DbErr> {
    let pending = conn
        .query_all_raw(stmt(
            "SELECT col FROM _wavesync_pending_columns WHERE tbl = ?",
            vec![meta.name.as_str().into()],
        ))
        .await?;
    let mut dropped = 0;
    for row in pending {
        let logged_name: String = row.try_get_by_index(0)?;
        let Some(column) = meta.column(&logged_name).filter(|c| !meta.is_key(&c.name)) else {
            continue;
        };
        let column = column.name.clone();
        if logged_name != column {
            // Logged under another spelling: store it under the registered one, unless a
            // version under that one is already there (which then wins).
            conn.execute_raw(stmt(
                "UPDATE _wavesync_log SET col = ? WHERE tbl = ? AND col = ? AND NOT EXISTS \
                 (SELECT 1 FROM _wavesync_log e WHERE e.tbl = _wavesync_log.tbl \
                 AND e.pk = _wavesync_log.pk AND e.col = ?)",
                vec![
                    column.as_str().into(),
                    meta.name.as_str().into(),
                    logged_name.as_str().into(),
                    column.as_str().into(),
                ],
            ))
            .await?;
        }
        let keys = conn
            .query_all_raw(stmt(
                "SELECT pk FROM _wavesync_log WHERE tbl = ? AND col = ?",
                vec![meta.name.as_str().into(), column.as_str().into()],
            ))
            .await?;
        for key_row in keys {
            let key = match log::read_cell(&key_row, 0)? {
                CellValue::Blob(key) => key,
                _ => continue,
            };
            dropped += rewrite_row(conn, meta, &column, &key).await?;
        }
        conn.execute_raw(stmt(
            "DELETE FROM _wavesync_pending_columns WHERE tbl = ? AND col = ?",
            vec![meta.name.as_str().into(), logged_name.as_str().into()],
        ))
        .await?;
    }
    Ok(dropped)
}

/// Validates the logged version of `column` for one row and rewrites the row from its
/// versions. Returns 1 if the version did not fit and was dropped.
async fn rewrite_row(
    conn: &impl ConnectionTrait,
    meta: &TableMeta,
    column: &str,
    key: &[u8],
) -> Result<usize, DbErr> {
    let Some(key_values) =
        crate::value::decode_key(key).filter(|k| k.len() == meta.primary_key.len())
    else {
        tracing::warn!(table = %meta.name, "a logged row key does not fit the table's key");
        return Ok(0);
    };
    let mut held = log::row_versions(conn, &meta.name, key).await?;
    let mut dropped = 0;
    if let Some(version) = held.get_mut(column) {
        match meta.admit(column, version.value.clone()) {
            Ok((_, canonical)) => {
                if canonical != version.value {
                    version.value = canonical;
                    conn.execute_raw(stmt(
                        "UPDATE _wavesync_log SET value = ? WHERE tbl = ? AND pk = ? AND col = ?",
                        vec![
                            version.value.to_sea_value(),
                            meta.name.as_str().into(),
                            key.to_vec().into(),
                            column.into(),
                        ],
                    ))
                    .await?;
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, "dropping a logged remote value that does not fit its new column");
                held.remove(column);
                conn.execute_raw(stmt(
                    "DELETE FROM _wavesync_log WHERE tbl = ? AND pk = ? AND col = ?",
                    vec![
                        meta.name.as_str().into(),
                        key.to_vec().into(),
                        column.into(),
                    ],
                ))
                .await?;
                dropped = 1;
            }
        }
    }
    let primary_key: Vec<(String, CellValue)> =
        meta.primary_key.iter().cloned().zip(key_values).collect();
    write_row(conn, meta, &primary_key, row_state(meta, &held)).await?;
    Ok(dropped)
}
