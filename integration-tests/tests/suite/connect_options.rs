//! Two peers opened from SeaORM `ConnectOptions` (a pool of three, no statement logging)
//! sync live over 127.0.0.1, like peers opened from a URL.

use sea_orm::{ActiveModelTrait, ConnectOptions};
use std::time::Duration;
use wavesyncdb::WaveSyncDbBuilder;
use wavesyncdb_integration_tests::{TestPeer, assert_converge, new_task, task, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn start(path: &std::path::Path, bootstrap: &[wavesyncdb::Multiaddr]) -> TestPeer {
    let mut options = ConnectOptions::new(format!("sqlite:{}?mode=rwc", path.display()));
    options.max_connections(3).sqlx_logging(false);
    let mut builder = WaveSyncDbBuilder::from_connect_options(options, "tests")
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
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
    TestPeer {
        db,
        path: path.to_owned(),
    }
}

#[test]
fn peers_opened_from_connect_options_sync() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = start(&dir.path().join("a.db"), &[]).await;
        let b = start(&dir.path().join("b.db"), &[a.address()]).await;
        assert!(
            wait_until(TIMEOUT, || async {
                b.db.sync_status().await.unwrap().connected_peers == 1
            })
            .await,
            "b never connected to a"
        );
        new_task("1", "from options").insert(&a.db).await.unwrap();
        new_task("2", "the other way").insert(&b.db).await.unwrap();
        assert_converge(&[&a, &b], TIMEOUT).await;
        assert_eq!(a.tasks().await.len(), 2);
        a.stop().await;
        b.stop().await;
    });
}
