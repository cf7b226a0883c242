//! Hooks for WaveSyncDB's own tests and fuzz targets: not a stable API.
//!
//! It exposes the wire encoding and the inbound checks so a test peer can send crafted
//! messages over a real swarm and a fuzzer can drive the decoder and the validation. It
//! must never offer a way around validation: everything here goes through the same code
//! as real traffic.

use crate::protocol::codec;
use crate::protocol::{ChangeSet, Gossip, GossipV1};

/// The gossip bytes of a whole change set, as a peer publishes it.
pub fn encode_live(change_set: &ChangeSet) -> Vec<u8> {
    codec::encode_gossip(&Gossip::V1(GossipV1::ChangeSet(change_set.clone())))
}

/// Runs the wire decoders on arbitrary bytes (gossip, catch-up request and response);
/// returns how many of them accepted the bytes. Never panics.
pub fn decode_any(bytes: &[u8]) -> usize {
    let max = 1 << 20;
    usize::from(codec::decode_gossip(bytes, max).is_ok())
        + usize::from(codec::decode_request(bytes, max).is_ok())
        + usize::from(codec::decode_response(bytes, max).is_ok())
}

/// A database without network, with one synced table `t` (`id` TEXT key, `n` INTEGER NOT
/// NULL, `note` TEXT, `data` BLOB, `r` REAL), into which arbitrary gossip bytes are fed
/// exactly as the engine feeds received messages: decode, validate, merge, apply.
pub struct ApplyHarness {
    db: crate::WaveSyncDb,
}

impl ApplyHarness {
    /// Opens the in-memory database and registers `t`.
    pub fn new() -> Result<ApplyHarness, crate::Error> {
        use crate::schema::{ColumnMeta, TableMeta, ValueKind};
        use sea_orm::ConnectionTrait;
        futures::executor::block_on(async {
            let db = crate::WaveSyncDbBuilder::new("sqlite::memory:", "fuzz")
                .without_network()
                .build()
                .await?;
            db.shared
                .conn
                .execute_unprepared(
                    "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL, \
                     note TEXT, data BLOB, r REAL NOT NULL)",
                )
                .await?;
            let column = |name: &str, kind, nullable| ColumnMeta {
                name: name.into(),
                kind,
                nullable,
            };
            let meta = TableMeta::new(
                "t",
                vec!["id".into()],
                vec![
                    column("id", ValueKind::Text, false),
                    column("n", ValueKind::Integer, false),
                    column("note", ValueKind::Text, true),
                    column("data", ValueKind::Blob, true),
                    column("r", ValueKind::Real, false),
                ],
            )?;
            db.shared
                .registry
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert_synced(meta);
            Ok(ApplyHarness { db })
        })
    }

    /// Feeds `bytes` as a received gossip message; `true` if it was applied.
    pub fn apply_gossip(&self, bytes: &[u8]) -> bool {
        let Ok(Gossip::V1(GossipV1::ChangeSet(change_set))) = codec::decode_gossip(bytes, 1 << 20)
        else {
            return false;
        };
        futures::executor::block_on(self.db.apply_remote(change_set)).is_ok()
    }
}

/// Applies change sets as catch-up applies one page: all in one database transaction.
pub async fn apply_remote_batch(
    db: &crate::WaveSyncDb,
    change_sets: Vec<ChangeSet>,
) -> Result<usize, crate::Error> {
    crate::apply::apply_remote_batch(&db.shared, change_sets).await
}
