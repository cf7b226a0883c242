//! The SQL plumbing every module that talks to SQLite shares: a statement for SQLite's
//! backend, and a transaction that takes the write lock at once.
//!
//! It owns no table, writes no SQL of its own and decides nothing; it never opens a
//! connection (it is handed one).

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait, Value,
};

/// `sql` with its `?` parameters bound to `values`, for SQLite.
pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Begins a `BEGIN IMMEDIATE` transaction on `conn`: it takes SQLite's write lock when it
/// begins, so a write inside it never fails to upgrade a read lock (`SQLITE_BUSY` with no
/// retry) and whatever it stamps is stamped under the lock.
pub(crate) async fn begin_immediate(
    conn: &DatabaseConnection,
) -> Result<DatabaseTransaction, DbErr> {
    conn.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}
