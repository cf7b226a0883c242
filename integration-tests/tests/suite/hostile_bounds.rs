//! A peer of the group answers heads with 100,000 origins and never answers a pull. The
//! puller keeps a bounded share of that claim, opens a bounded number of pulls to that
//! peer at once, and keeps syncing with its honest peers meanwhile.

use sea_orm::ActiveModelTrait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wavesyncdb::NodeId;
use wavesyncdb::testing::{ScriptedPeer, ScriptedRequest, ScriptedResponse};
use wavesyncdb_integration_tests::{TestPeer, new_task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_heads_reply_of_100k_origins_is_bounded() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pulls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&pulls);
        let heads: Vec<(NodeId, u64)> = (0..100_000u32)
            .map(|n| {
                let mut id = [9; 16];
                id[..4].copy_from_slice(&n.to_be_bytes());
                (NodeId(id), 5)
            })
            .collect();
        let hostile = ScriptedPeer::start("tests", move |request| match request {
            ScriptedRequest::Heads => ScriptedResponse::Heads(heads.clone()),
            ScriptedRequest::Pull { .. } => {
                counted.fetch_add(1, Ordering::Relaxed);
                ScriptedResponse::Silent
            }
        })
        .expect("scripted peer");
        let honest = TestPeer::start(&dir.path().join("honest.db"), &[]).await;
        let puller = TestPeer::start(
            &dir.path().join("puller.db"),
            &[hostile.address.clone(), honest.address()],
        )
        .await;
        assert!(
            wait_until(TIMEOUT, || async { pulls.load(Ordering::Relaxed) > 0 }).await,
            "the puller never pulled from the hostile peer"
        );
        // The group keeps syncing meanwhile.
        new_task("honest", "still syncing")
            .insert(&honest.db)
            .await
            .unwrap();
        assert!(
            wait_until(TIMEOUT, || async {
                puller.tasks().await.iter().any(|t| t.id == "honest")
            })
            .await,
            "an honest write never arrived"
        );
        // Every heads round has had its chance to open more pulls.
        smol::Timer::after(Duration::from_secs(2)).await;
        let open = pulls.load(Ordering::Relaxed);
        assert!(open <= 16, "{open} pulls open at once to one peer");
        let claimed = puller
            .db
            .peers()
            .into_iter()
            .find(|p| p.peer_id == hostile.peer_id)
            .map(|p| p.heads.len())
            .expect("the hostile peer is known");
        assert!(claimed <= 20_000, "{claimed} claimed heads kept");
        drop(hostile);
        for peer in [puller, honest] {
            peer.stop().await;
        }
    });
}
