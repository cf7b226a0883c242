//! Acting on the application's triggers: capture what they write to synced tables, and
//! never run them a second time for the changes that bring those writes to a peer.
//!
//! Glue for `schema::triggers` (what the triggers mean) and `capture::touch` (the notes).
//! Triggers created or dropped around WaveSyncDB (on another connection) are seen at the
//! next `sync()`.
//! It reads the main schema's triggers, adopts their plan (in the registry, and on the
//! engine's connection, whose triggers it switches off through `native` while some
//! trigger writes a synced table); it installs the touch triggers on a writing
//! transaction, and at commit turns the notes into the transaction's operations: every
//! noted row as it is now, its noted columns (all of them if it was inserted), or a
//! delete if it is gone. It runs on the transaction it is handed and never commits.
//!
//! An in-memory database has one connection, shared by the application and the engine:
//! triggers cannot be off for one and on for the other there, so it neither captures
//! trigger writes nor switches triggers off (a warning says so).

use crate::capture::touch::{self, CLEAR_NOTES, CREATE_NOTES, LIST_TRIGGERS, READ_NOTES};
use crate::clock::Hlc;
use crate::effects::current_rows;
use crate::log;
use crate::protocol::{SyncOperation, WriteKind};
use crate::replica::Shared;
use crate::schema::triggers::UserTrigger;
use crate::schema::{TableMeta, quote_ident};
use crate::value::{CellValue, encode_key};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The main schema's triggers.
pub(crate) async fn read(conn: &impl ConnectionTrait) -> Result<Vec<UserTrigger>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT name, tbl_name, sql FROM main.sqlite_master \
             WHERE type = 'trigger' AND sql IS NOT NULL",
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get_by_index(0)?;
        let table: String = row.try_get_by_index(1)?;
        let sql: String = row.try_get_by_index(2)?;
        out.push(UserTrigger::parse(&name, &table, &sql));
    }
    Ok(out)
}

/// Reads the triggers and prepares for them with `also_synced` (lower-cased) counted as
/// synced: the engine's triggers are switched before any change against the new plan is
/// applied. Returns the triggers, for [`crate::schema::Registry::set_triggers`] once the
/// tables are registered.
pub(crate) async fn prepare(
    shared: &Shared,
    also_synced: &[String],
) -> Result<Vec<UserTrigger>, DbErr> {
    let triggers = read(&shared.engine_conn).await?;
    let plan = shared.registry().trigger_plan_with(&triggers, also_synced);
    if plan.capture && !shared.engine_apart {
        tracing::warn!(
            "an in-memory database: writes that triggers make to synced tables are not captured, \
             and triggers run again on peers for the changes they receive"
        );
        return Ok(Vec::new());
    }
    if plan.capture && !plan.local_only.is_empty() {
        tracing::warn!(
            triggers = ?plan.local_only,
            "some trigger writes a synced table, so changes from peers are applied with triggers off: \
             these triggers write only tables that do not sync and will not run for changes from peers"
        );
    }
    for (trigger, table) in &plan.replacing {
        tracing::warn!(
            %trigger,
            %table,
            "this trigger writes a synced table with REPLACE: a row it removes because of another \
             UNIQUE column is removed on this peer only; write INSERT .. ON CONFLICT DO UPDATE instead"
        );
    }
    engine_triggers(shared, plan.capture).await?;
    Ok(triggers)
}

/// After the application's statement that may have created or dropped a trigger
/// committed: reads them again and adopts them. The statement itself succeeded, so a
/// failure here is logged, not returned (a retry would write twice); the next `sync()`
/// reads them again.
pub(crate) async fn refresh_after_commit(shared: &Shared) {
    if let Err(err) = refresh(shared).await {
        tracing::error!(%err, "reading the database's triggers after a schema change failed; call sync() to read them again");
    }
}

/// Whether the triggers `conn` sees (its transaction's uncommitted ones included) make
/// some trigger write a synced table.
pub(crate) async fn captures_in(
    shared: &Shared,
    conn: &impl ConnectionTrait,
) -> Result<bool, DbErr> {
    if !shared.engine_apart {
        return Ok(false);
    }
    let triggers = read(conn).await?;
    Ok(shared.registry().trigger_plan_with(&triggers, &[]).capture)
}

async fn refresh(shared: &Shared) -> Result<(), DbErr> {
    let triggers = prepare(shared, &[]).await?;
    shared.registry_mut().set_triggers(triggers);
    Ok(())
}

/// Whether `sql` may create or drop a trigger, or change what one writes (`DROP TABLE`
/// drops a table's triggers, `ALTER TABLE .. RENAME` rewrites their bodies). Checked
/// cheaply on every statement that passes through: a false alarm only costs a re-read.
pub(crate) fn may_change_triggers(sql: &str) -> bool {
    let contains = |word: &[u8]| {
        sql.as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    contains(b"trigger") || contains(b"drop") || contains(b"rename")
}

fn sqlx_err(err: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err)))
}

/// Switches the engine connection's triggers off (`off`) or on again.
async fn engine_triggers(shared: &Shared, off: bool) -> Result<(), DbErr> {
    if !shared.engine_apart || shared.engine_triggers_off.load(Ordering::Acquire) == off {
        return Ok(());
    }
    // A connection the pool opens from now on follows the flag (`after_connect`); the
    // one it holds is switched here, while no apply uses it. The flag is set once the
    // switch succeeded, so a failed one is tried again next time.
    let mut conn = shared
        .engine_conn
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .map_err(sqlx_err)?;
    crate::native::set_triggers(&mut conn, !off)
        .await
        .map_err(sqlx_err)?;
    shared.engine_triggers_off.store(off, Ordering::Release);
    tracing::info!(
        off,
        "changes from peers are applied with the database's triggers {}",
        if off { "off" } else { "on" }
    );
    Ok(())
}

/// Installs on `conn` (a new transaction's) the touch triggers the registry wants, and
/// drops ours it no longer wants (with their notes, once no trigger writes a synced table
/// any more). Returns whether the transaction's writes are noted.
pub(crate) async fn install(shared: &Shared, conn: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let wanted = touch::wanted(&shared.registry());
    if wanted.is_empty() && !shared.touch_triggers_ever.load(Ordering::Acquire) {
        return Ok(false);
    }
    shared.touch_triggers_ever.store(true, Ordering::Release);
    set_touch_triggers(conn, &wanted).await?;
    Ok(!wanted.is_empty())
}

/// Installs the touch triggers of every synced table on `conn` for the rest of its
/// transaction, which [`remove`]s them before it commits (a delete whose cascades go
/// deeper than `capture::cascade` follows).
pub(crate) async fn install_for_transaction(
    shared: &Shared,
    conn: &impl ConnectionTrait,
) -> Result<(), DbErr> {
    let all = touch::all(&shared.registry());
    set_touch_triggers(conn, &all).await
}

/// Drops every touch trigger of ours on `conn`.
pub(crate) async fn remove(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    set_touch_triggers(conn, &[]).await
}

/// Makes the touch triggers on `conn` exactly `wanted`; with none wanted, clears the notes.
async fn set_touch_triggers(
    conn: &impl ConnectionTrait,
    wanted: &[touch::TouchTrigger],
) -> Result<(), DbErr> {
    let have: HashSet<String> = conn
        .query_all_raw(Statement::from_string(DbBackend::Sqlite, LIST_TRIGGERS))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?;
    let want: HashSet<&str> = wanted.iter().map(|t| t.name.as_str()).collect();
    if have.len() == want.len() && have.iter().all(|name| want.contains(name.as_str())) {
        return Ok(());
    }
    let mut script = vec![CREATE_NOTES.to_owned()];
    for name in have.iter().filter(|name| !want.contains(name.as_str())) {
        script.push(format!("DROP TRIGGER IF EXISTS temp.{}", quote_ident(name)));
    }
    for trigger in wanted.iter().filter(|t| !have.contains(&t.name)) {
        script.push(trigger.create.clone());
    }
    if wanted.is_empty() {
        // Nothing reads them any more.
        script.push(CLEAR_NOTES.to_owned());
    }
    conn.execute_unprepared(&script.join(";\n")).await?;
    tracing::debug!(
        triggers = wanted.len(),
        had = have.len(),
        "touch triggers changed"
    );
    Ok(())
}

/// One noted row.
struct Noted {
    meta: Arc<TableMeta>,
    key: Vec<CellValue>,
    /// Inserted (or given a new key): every column.
    all: bool,
    columns: BTreeSet<String>,
}

/// Replaces the operations of every row the notes on `conn` name by that row as it is
/// now (stamped by `tick`), and clears the notes.
pub(crate) async fn collect(
    shared: &Shared,
    conn: &impl ConnectionTrait,
    operations: &mut Vec<SyncOperation>,
) -> Result<(), DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(DbBackend::Sqlite, READ_NOTES))
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    conn.execute_unprepared(CLEAR_NOTES).await?;
    let mut noted: HashMap<(String, Vec<u8>), Noted> = HashMap::new();
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    for row in &rows {
        let table: String = row.try_get_by_index(0)?;
        let column: String = row.try_get_by_index(1)?;
        let Some(meta) = shared.registry().synced(&table) else {
            continue;
        };
        let width = meta.primary_key.len();
        let key = (0..width)
            .map(|i| log::read_cell(row, 2 + i))
            .collect::<Result<Vec<_>, _>>()?;
        let id = (meta.name.to_ascii_lowercase(), encode_key(&key));
        let entry = noted.entry(id.clone()).or_insert_with(|| {
            order.push(id);
            Noted {
                meta: Arc::clone(&meta),
                key,
                all: false,
                columns: BTreeSet::new(),
            }
        });
        match column.as_str() {
            "*" => entry.all = true,
            "-" => {}
            name => {
                entry.columns.insert(name.to_owned());
            }
        }
    }
    // A statement's own capture of a noted row gives way to the row as it is now; the
    // columns it wrote stay written.
    operations.retain(|op| {
        let key: Vec<CellValue> = op.primary_key.iter().map(|(_, v)| v.clone()).collect();
        let id = (op.table.to_ascii_lowercase(), encode_key(&key));
        let Some(entry) = noted.get_mut(&id) else {
            return true;
        };
        match op.kind {
            WriteKind::Insert => entry.all = true,
            WriteKind::Update => entry
                .columns
                .extend(op.values.iter().map(|(c, _)| c.clone())),
            WriteKind::Delete => {}
        }
        false
    });
    let hlc = shared.tick();
    // Tables in the order they were first noted, rows in the order they were.
    let mut by_table: Vec<(String, Vec<&Noted>)> = Vec::new();
    for id in &order {
        match by_table.iter_mut().find(|(table, _)| *table == id.0) {
            Some((_, rows)) => rows.push(&noted[id]),
            None => by_table.push((id.0.clone(), vec![&noted[id]])),
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for (_, rows) in &by_table {
        let meta = &rows[0].meta;
        let columns: Vec<String> = meta.value_columns().map(|c| c.name.clone()).collect();
        let keys: Vec<&Vec<CellValue>> = rows.iter().map(|n| &n.key).collect();
        let mut now = current_rows(conn, meta, &columns, &keys).await?;
        for row in rows {
            out.push(operation(
                row,
                &columns,
                now.remove(&encode_key(&row.key)),
                hlc,
            )?);
        }
    }
    operations.extend(out.into_iter().flatten());
    Ok(())
}

fn operation(
    row: &Noted,
    columns: &[String],
    now: Option<Vec<CellValue>>,
    hlc: Hlc,
) -> Result<Option<SyncOperation>, DbErr> {
    let meta = &row.meta;
    let primary_key: Vec<(String, CellValue)> = meta
        .primary_key
        .iter()
        .cloned()
        .zip(row.key.clone())
        .collect();
    let Some(values) = now else {
        return Ok(Some(SyncOperation {
            table: meta.name.clone(),
            kind: WriteKind::Delete,
            hlc,
            primary_key,
            values: Vec::new(),
        }));
    };
    let mut written = Vec::new();
    for (column, value) in columns.iter().zip(values) {
        if !row.all && !row.columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
            continue;
        }
        let bytes = value.byte_len();
        if bytes > crate::MAX_CELL_BYTES {
            return Err(crate::Error::CellTooLarge {
                table: meta.name.clone(),
                column: column.clone(),
                bytes,
                max: crate::MAX_CELL_BYTES,
            }
            .into());
        }
        written.push((column.clone(), value));
    }
    if !row.all && written.is_empty() {
        // Noted only as gone under a key it holds again: nothing changed.
        return Ok(None);
    }
    Ok(Some(SyncOperation {
        table: meta.name.clone(),
        kind: if row.all {
            WriteKind::Insert
        } else {
            WriteKind::Update
        },
        hlc,
        primary_key,
        values: written,
    }))
}
