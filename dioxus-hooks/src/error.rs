//! What can stop [`try_launch`](crate::try_launch) before the window opens.

/// The error a `setup` function returns: anything that converts with `?`
/// (`wavesyncdb::Error`, `sea_orm::DbErr`, `std::io::Error`, a `String`...).
pub type SetupError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The database could not be opened (or the network engine not started).
    #[error(
        "could not open the WaveSyncDB database: {0}. Check the URL (e.g. \
         `sqlite:./app.db?mode=rwc`), that its directory exists and is writable, and that \
         the listen address is free"
    )]
    Open(#[source] wavesyncdb::Error),

    /// The tokio runtime the database is opened on (feature `runtime-tokio`) could not
    /// be started.
    #[error(
        "could not start the tokio runtime to open the database on: {0}. The system may be \
         out of threads or memory"
    )]
    Runtime(#[source] std::io::Error),

    /// The app's `setup` function failed.
    #[error(
        "the setup function passed to launch() failed: {0}. It usually registers the \
         entities (`db.schema().register::<E>().sync()`); fix what it reports"
    )]
    Setup(#[source] SetupError),
}
