//! Two groups on one network: a peer of topic `beta` connected to a peer of topic `alpha`
//! (as mDNS would connect them) receives nothing of `alpha`, serves nothing to it, and
//! neither counts the other among its peers.

use sea_orm::ActiveModelTrait;
use std::time::Duration;
use wavesyncdb::{Multiaddr, WaveSyncDb, WaveSyncDbBuilder};
use wavesyncdb_integration_tests::{new_task, task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn start(path: &std::path::Path, topic: &str, bootstrap: &[Multiaddr]) -> WaveSyncDb {
    let mut builder = WaveSyncDbBuilder::new(format!("sqlite:{}?mode=rwc", path.display()), topic)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .mdns(false)
        .catch_up_interval(Duration::from_millis(300));
    for address in bootstrap {
        builder = builder.bootstrap(address.clone());
    }
    let db = builder.build().await.expect("start peer");
    db.schema()
        .register::<task::Entity>()
        .sync()
        .await
        .expect("register");
    db
}

async fn count(db: &WaveSyncDb) -> usize {
    use sea_orm::EntityTrait;
    task::Entity::find().all(db).await.unwrap().len()
}

#[test]
fn a_peer_of_another_topic_gets_nothing_and_is_not_counted() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let alpha = start(&dir.path().join("alpha.db"), "alpha", &[]).await;
        let address = alpha.listening_addresses()[0].clone();
        let beta = start(
            &dir.path().join("beta.db"),
            "beta",
            std::slice::from_ref(&address),
        )
        .await;
        let alpha2 = start(&dir.path().join("alpha2.db"), "alpha", &[address]).await;
        for n in 0..5 {
            new_task(&format!("alpha-{n}"), "alpha only")
                .insert(&alpha)
                .await
                .unwrap();
        }
        new_task("beta-0", "beta only").insert(&beta).await.unwrap();
        // The group works: alpha's second peer gets alpha's rows.
        assert!(
            wait_until(TIMEOUT, || async { count(&alpha2).await == 5 }).await,
            "alpha2 never caught up"
        );
        // Give beta many catch-up rounds (300 ms each) to (wrongly) pull alpha's rows.
        smol::Timer::after(Duration::from_secs(3)).await;
        assert_eq!(count(&beta).await, 1, "beta received another group's rows");
        assert_eq!(
            count(&alpha).await,
            5,
            "alpha received another group's rows"
        );
        let beta_id = beta.peer_id().unwrap();
        assert!(
            alpha.peers().iter().all(|p| p.peer_id != beta_id),
            "alpha counts beta: {:?}",
            alpha.peers()
        );
        assert!(
            beta.peers().is_empty(),
            "beta counts a peer of alpha: {:?}",
            beta.peers()
        );
        let status = alpha.sync_status().await.unwrap();
        assert_eq!(status.connected_peers, 1, "{:?}", status.peers);
        for db in [alpha, beta, alpha2] {
            db.shutdown().await;
        }
    });
}
