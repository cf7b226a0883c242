//! The always-on member (`--store`): a `WaveSyncDb` that registers no table.
//!
//! WaveSyncDB keeps and serves the operations of tables a node does not register, so this
//! member needs none of the app's entities: it holds the group's log and answers
//! catch-up, and members that are never online together sync through it. It reaches the
//! relay in the same process over loopback and registers under the group's namespace like
//! any member. It must never register a table or write a row of its own.

use libp2p::Multiaddr;
use std::path::Path;
use std::time::Duration;
use wavesyncdb::{GroupSecret, WaveSyncDb, WaveSyncDbBuilder};

/// Errors of the always-on member.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("opening the store {path}: {source}; check that the directory exists and is writable")]
    Open {
        /// The file.
        path: String,
        /// The cause.
        source: wavesyncdb::Error,
    },
}

/// Opens the store and starts its engine.
pub async fn open(
    path: &Path,
    topic: &str,
    secret: Option<GroupSecret>,
    relay: Multiaddr,
) -> Result<WaveSyncDb, StoreError> {
    let mut builder = WaveSyncDbBuilder::new(format!("sqlite:{}?mode=rwc", path.display()), topic)
        .mdns(false)
        .listen_on(
            "/ip4/0.0.0.0/tcp/0"
                .parse()
                .expect("valid multiaddr literal"),
        )
        .catch_up_interval(Duration::from_secs(2))
        .relay(relay);
    if let Some(secret) = secret {
        builder = builder.group_secret(secret);
    }
    let db = builder.build().await.map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })?;
    tracing::info!(store = %path.display(), "always-on member started: keeping the group's log");
    Ok(db)
}
