//! Large values (issue 12, defect 4): a 5 MB blob reaches a peer live and through
//! catch-up, and one transaction with several multi-megabyte blobs reaches a peer that
//! catches up; no page may grow past what a peer accepts.

use sea_orm::{ActiveModelTrait, EntityTrait, Set, TransactionTrait};
use std::time::Duration;
use wavesyncdb_integration_tests::{TestPeer, assert_logs_consistent, rows, wait_until};

const TIMEOUT: Duration = Duration::from_secs(30);
const MB: usize = 1_000_000;

/// A table of attachments.
mod attachment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attachments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub data: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// The id and size only: a failing test must not print megabytes.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} ({} bytes)", self.id, self.data.len())
        }
    }
}

/// A peer with attachments registered before it meets anyone.
async fn start(path: &std::path::Path) -> TestPeer {
    let peer = TestPeer::start(path, &[]).await;
    peer.db
        .schema()
        .register::<attachment::Entity>()
        .sync()
        .await
        .expect("register attachments");
    peer
}

/// `len` bytes that differ from row to row.
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn insert(db: &impl sea_orm::ConnectionTrait, id: &str, len: usize, seed: u8) {
    attachment::ActiveModel {
        id: Set(id.to_owned()),
        data: Set(blob(len, seed)),
    }
    .insert(db)
    .await
    .unwrap();
}

/// One transaction with blobs of 4, 5 and 3 MB.
async fn write_three_blobs(db: &wavesyncdb::WaveSyncDb) {
    let txn = db.begin().await.unwrap();
    insert(&txn, "first", 4 * MB, 3).await;
    insert(&txn, "second", 5 * MB, 4).await;
    insert(&txn, "third", 3 * MB, 5).await;
    txn.commit().await.unwrap();
}

/// How many rows, and the sizes of those over 1 MB.
fn summary(rows: &[attachment::Model]) -> String {
    let large: Vec<String> = rows
        .iter()
        .filter(|row| row.data.len() > MB)
        .map(|row| format!("{row:?}"))
        .collect();
    format!("{} rows, large ones: {large:?}", rows.len())
}

/// Waits until `peer` holds exactly `origin`'s attachments; panics with what it holds.
async fn assert_same_attachments(origin: &TestPeer, peer: &TestPeer) {
    let expected = rows::<attachment::Entity>(&origin.db).await;
    let arrived = wait_until(TIMEOUT, || async {
        rows::<attachment::Entity>(&peer.db).await == expected
    })
    .await;
    assert!(
        arrived,
        "after {TIMEOUT:?} the peer holds {}; the origin holds {}",
        summary(&rows::<attachment::Entity>(&peer.db).await),
        summary(&expected)
    );
    assert_logs_consistent(&[origin, peer]).await;
}

#[test]
fn a_five_megabyte_blob_reaches_a_peer_that_catches_up() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = start(&dir.path().join("a.db")).await;
        insert(&a.db, "big", 5 * MB, 1).await;
        let b = start(&dir.path().join("b.db")).await;
        b.db.dial(a.address()).await.unwrap();
        assert_same_attachments(&a, &b).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_five_megabyte_blob_reaches_a_connected_peer_live() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = start(&dir.path().join("a.db")).await;
        let b = start(&dir.path().join("b.db")).await;
        b.db.dial(a.address()).await.unwrap();
        assert!(b.wait_connected(1, TIMEOUT).await, "b never connected");
        insert(&a.db, "big", 5 * MB, 2).await;
        assert_same_attachments(&a, &b).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn one_transaction_with_three_large_blobs_reaches_a_peer_that_catches_up() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = start(&dir.path().join("a.db")).await;
        write_three_blobs(&a.db).await;
        let b = start(&dir.path().join("b.db")).await;
        b.db.dial(a.address()).await.unwrap();
        assert_same_attachments(&a, &b).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn one_transaction_with_three_large_blobs_reaches_a_connected_peer_live() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = start(&dir.path().join("a.db")).await;
        let b = start(&dir.path().join("b.db")).await;
        b.db.dial(a.address()).await.unwrap();
        assert!(b.wait_connected(1, TIMEOUT).await, "b never connected");
        write_three_blobs(&a.db).await;
        assert_same_attachments(&a, &b).await;
        a.stop().await;
        b.stop().await;
    });
}

/// 2,000 attachments keyed by 500-character paths, then a transaction with blobs of 3.9
/// and 5 MB: a page must be bounded by everything it carries, keys included, or it grows
/// past what the puller accepts.
#[test]
fn long_keys_then_large_blobs_reach_a_peer_that_catches_up() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = start(&dir.path().join("a.db")).await;
        let prefix = "/home/user/documents/".to_owned() + &"deep/".repeat(95);
        attachment::Entity::insert_many((0..2_000).map(|i| attachment::ActiveModel {
            id: Set(format!("{prefix}{i:04}.txt")),
            data: Set(vec![1]),
        }))
        .exec(&a.db)
        .await
        .unwrap();
        let txn = a.db.begin().await.unwrap();
        insert(&txn, "~first", 3_900_000, 6).await;
        insert(&txn, "~second", 5 * MB, 7).await;
        txn.commit().await.unwrap();
        let b = start(&dir.path().join("b.db")).await;
        b.db.dial(a.address()).await.unwrap();
        assert_same_attachments(&a, &b).await;
        a.stop().await;
        b.stop().await;
    });
}
