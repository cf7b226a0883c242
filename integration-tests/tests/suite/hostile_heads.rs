//! A peer of the group claims a head it cannot back: `(victim, 2^62)`, then an empty last
//! page. The puller must not take the claim as evidence: the victim's later writes still
//! reach it (live and through catch-up), and the false head spreads to nobody.

use std::time::Duration;
use wavesyncdb::testing::{ScriptedPeer, ScriptedRequest, ScriptedResponse};
use wavesyncdb::{NodeId, WaveSyncDb};
use wavesyncdb_integration_tests::{TestPeer, new_task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);
const CLAIM: u64 = 1 << 62;

async fn head_of(db: &WaveSyncDb, origin: NodeId) -> u64 {
    let status = db.sync_status().await.expect("status");
    status
        .heads
        .iter()
        .find(|(o, _)| *o == origin)
        .map_or(0, |(_, seq)| *seq)
}

#[test]
fn a_false_heads_claim_silences_no_origin() {
    smol::block_on(async {
        use sea_orm::ActiveModelTrait;
        let dir = tempfile::tempdir().unwrap();
        let victim = TestPeer::start(&dir.path().join("victim.db"), &[]).await;
        let v = victim.db.node_id();
        let hostile = ScriptedPeer::start("tests", move |request| match request {
            ScriptedRequest::Heads => ScriptedResponse::Heads(vec![(v, CLAIM)]),
            ScriptedRequest::Pull { .. } => ScriptedResponse::Page {
                operations: Vec::new(),
                last: true,
            },
        })
        .expect("scripted peer");
        let puller = TestPeer::start(
            &dir.path().join("puller.db"),
            std::slice::from_ref(&hostile.address),
        )
        .await;
        // The claim has been made and "served": the puller asked for heads and pulled.
        assert!(
            wait_until(TIMEOUT, || async { hostile.requests() >= 4 }).await,
            "the puller never talked to the hostile peer"
        );
        // The victim joins and writes.
        victim.db.dial(puller.address()).await.unwrap();
        new_task("after-claim", "written after the false claim")
            .insert(&victim.db)
            .await
            .unwrap();
        let arrived = wait_until(TIMEOUT, || async {
            puller.tasks().await.iter().any(|t| t.id == "after-claim")
        })
        .await;
        assert!(
            arrived,
            "the victim's write never reached the puller (its head: {})",
            head_of(&puller.db, v).await
        );
        // A third peer pulling from the puller does not learn the false head either.
        let third = TestPeer::start(&dir.path().join("third.db"), &[puller.address()]).await;
        assert!(
            wait_until(TIMEOUT, || async {
                third.tasks().await.iter().any(|t| t.id == "after-claim")
            })
            .await,
            "the third peer never caught up"
        );
        new_task("second", "a second write")
            .insert(&victim.db)
            .await
            .unwrap();
        assert!(
            wait_until(TIMEOUT, || async {
                third.tasks().await.iter().any(|t| t.id == "second")
                    && puller.tasks().await.iter().any(|t| t.id == "second")
            })
            .await,
            "a later write did not spread"
        );
        let real = head_of(&victim.db, v).await;
        assert!(
            head_of(&puller.db, v).await <= real,
            "the false head stuck on the puller"
        );
        assert!(head_of(&third.db, v).await <= real, "the false head spread");
        drop(hostile);
        for peer in [victim, puller, third] {
            peer.stop().await;
        }
    });
}

#[test]
fn a_head_poisoned_by_an_older_release_does_not_stop_live_writes() {
    smol::block_on(async {
        use sea_orm::ActiveModelTrait;
        let dir = tempfile::tempdir().unwrap();
        let victim = TestPeer::start(&dir.path().join("victim.db"), &[]).await;
        let puller = TestPeer::start(&dir.path().join("puller.db"), &[]).await;
        wavesyncdb::testing::poison_head(&puller.db, victim.db.node_id(), CLAIM)
            .await
            .unwrap();
        victim.db.dial(puller.address()).await.unwrap();
        assert!(
            wait_until(TIMEOUT, || async {
                victim.db.sync_status().await.unwrap().connected_peers == 1
            })
            .await
        );
        new_task("live", "written after the poison")
            .insert(&victim.db)
            .await
            .unwrap();
        assert!(
            wait_until(TIMEOUT, || async {
                puller.tasks().await.iter().any(|t| t.id == "live")
            })
            .await,
            "a poisoned head silenced the victim"
        );
        for peer in [victim, puller] {
            peer.stop().await;
        }
    });
}

#[test]
fn a_claim_never_served_does_not_hold_up_an_origins_catch_up() {
    smol::block_on(async {
        use sea_orm::ActiveModelTrait;
        let dir = tempfile::tempdir().unwrap();
        let victim = TestPeer::start(&dir.path().join("victim.db"), &[]).await;
        let v = victim.db.node_id();
        let hostile = ScriptedPeer::start("tests", move |request| match request {
            ScriptedRequest::Heads => ScriptedResponse::Heads(vec![(v, CLAIM)]),
            // Holds the pull open until the puller gives up (30 s).
            ScriptedRequest::Pull { .. } => ScriptedResponse::Silent,
        })
        .expect("scripted peer");
        let puller = TestPeer::start(
            &dir.path().join("puller.db"),
            std::slice::from_ref(&hostile.address),
        )
        .await;
        assert!(
            wait_until(TIMEOUT, || async { hostile.requests() >= 2 }).await,
            "the puller never pulled from the hostile peer"
        );
        // Written while the two are apart: only catch-up brings them.
        for n in 0..3 {
            new_task(&format!("offline-{n}"), "written apart")
                .insert(&victim.db)
                .await
                .unwrap();
        }
        victim.db.dial(puller.address()).await.unwrap();
        assert!(
            wait_until(TIMEOUT, || async { puller.tasks().await.len() == 3 }).await,
            "the victim's catch-up was held up: {} of 3 rows",
            puller.tasks().await.len()
        );
        drop(hostile);
        for peer in [victim, puller] {
            peer.stop().await;
        }
    });
}
