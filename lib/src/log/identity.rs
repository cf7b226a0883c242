//! This node's identity (its libp2p keypair, from which its node id comes) and the check
//! that the database file holding it is the file it was created in.
//!
//! A database file copied to a second place (another machine, another path, a backup put
//! back as a new file) carries the keypair: two nodes would then write as one origin,
//! number their transactions alike and diverge for good. So the identity is bound to the
//! file it was made in: its device and inode number are stored next to the keypair, and
//! a node that opens a file whose numbers differ takes a new identity, loudly, before it
//! writes anything. The transactions of the old identity stay in the log and reach peers
//! as any origin's do; the node pulls that origin's later ones like any other.
//!
//! What it cannot see: a copy that keeps the inode and creation time (a block-level copy of
//! a whole disk or VM image), a copy made before this check existed (both copies record
//! their file on first open), and systems other than Unix, where there is no check. The
//! old keypair is not kept: nobody signs heads statements for the old identity again.
//!
//! Glue: it runs on the connection it is handed and reads the file's metadata; it never
//! touches a user table.

use super::{corrupt, meta_get, meta_set};
use libp2p::identity::Keypair;
use sea_orm::{ConnectionTrait, DbErr};

/// The device and inode of the main database file of `conn`, if it is a file (not an
/// in-memory database) on a system that has them.
async fn file_fingerprint(conn: &impl ConnectionTrait) -> Result<Option<Vec<u8>>, DbErr> {
    let row = conn
        .query_one_raw(super::stmt(
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
            vec![],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let file: Option<String> = row.try_get_by_index(0)?;
    Ok(file
        .filter(|file| !file.is_empty())
        .and_then(|file| fingerprint_of(std::path::Path::new(&file))))
}

/// The inode number and, where the file system keeps it, the creation time: both stay
/// with the file through restarts, renames, remounts and reboots, and a copy gets new
/// ones. (The device number does not: some file systems hand it out at mount time.)
#[cfg(unix)]
fn fingerprint_of(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&metadata.ino().to_be_bytes());
    if let Ok(created) = metadata.created()
        && let Ok(since) = created.duration_since(std::time::UNIX_EPOCH)
    {
        bytes.extend_from_slice(&since.as_nanos().to_be_bytes());
    }
    Some(bytes)
}

#[cfg(not(unix))]
fn fingerprint_of(_path: &std::path::Path) -> Option<Vec<u8>> {
    None
}

fn new_keypair() -> Result<(Keypair, Vec<u8>), DbErr> {
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair.to_protobuf_encoding().map_err(|e| {
        DbErr::from(crate::Error::Identity {
            reason: e.to_string(),
        })
    })?;
    Ok((keypair, bytes))
}

/// This node's libp2p identity, created and persisted on first use, so the node keeps
/// its peer id (and with it its node id) across restarts, as long as its database stays
/// the same file (see the module docs).
pub(crate) async fn keypair(conn: &impl ConnectionTrait) -> Result<Keypair, DbErr> {
    let fingerprint = file_fingerprint(conn).await?;
    let stored_fingerprint = meta_get(conn, "file").await?;
    if let Some(bytes) = meta_get(conn, "keypair").await? {
        let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|_| corrupt("keypair"))?;
        match (&fingerprint, &stored_fingerprint) {
            (Some(now), Some(then)) if now != then => {
                let (renewed, bytes) = new_keypair()?;
                tracing::warn!(
                    old = %keypair.public().to_peer_id(),
                    new = %renewed.public().to_peer_id(),
                    "this database file is a copy of another node's (copied, moved to \
                     another file system, or restored from a backup as a new file): \
                     taking a new identity so two nodes never write as one; the old \
                     identity's data stays and syncs as any peer's"
                );
                meta_set(conn, "keypair", bytes).await?;
                meta_set(conn, "file", now.clone()).await?;
                super::set_confirmed(conn, 0).await?;
                return Ok(renewed);
            }
            (Some(now), None) => meta_set(conn, "file", now.clone()).await?,
            _ => {}
        }
        return Ok(keypair);
    }
    let (keypair, bytes) = new_keypair()?;
    meta_set(conn, "keypair", bytes).await?;
    // A new node has issued nothing: every number it issues waits for a peer's word
    // until the engine confirms (`protocol::recovery`), even numbers issued offline.
    super::set_confirmed(conn, 0).await?;
    if let Some(now) = fingerprint {
        meta_set(conn, "file", now).await?;
    }
    Ok(keypair)
}
