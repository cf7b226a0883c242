//! The one place that calls SQLite's C API itself: switching the main schema's triggers
//! on or off for one connection (`SQLITE_DBCONFIG_ENABLE_TRIGGER`).
//!
//! The engine applies remote changes with triggers off once some trigger of the
//! application writes a synced table (see `schema::triggers`): the trigger's effects
//! arrive as data from the node that wrote them. Temporary triggers are not affected
//! (SQLite >= 3.35). Changing the setting expires the connection's prepared statements,
//! so cached statements are compiled again with or without the triggers.
//!
//! It must never touch a connection another task is using: sqlx's `lock_handle` hands
//! over the handle only while the connection's worker is idle.

use sqlx::SqliteConnection;
use std::ffi::c_int;

/// Turns the main schema's triggers on (`enabled`) or off for `conn`.
pub(crate) async fn set_triggers(
    conn: &mut SqliteConnection,
    enabled: bool,
) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut now: c_int = -1;
    // SAFETY: `db` is a live connection handle, locked for this call by `lock_handle`;
    // this option takes an int and an int pointer (SQLite's documented signature), and
    // `now` outlives the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_TRIGGER,
            c_int::from(enabled),
            &mut now as *mut c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK || now != c_int::from(enabled) {
        return Err(sqlx::Error::Protocol(format!(
            "SQLite did not switch triggers {} (code {rc})",
            if enabled { "on" } else { "off" }
        )));
    }
    Ok(())
}
