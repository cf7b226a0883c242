//! The Prometheus exporter (feature `prometheus`): two real peers on 127.0.0.1 sync one
//! row, and each one's `encode_metrics()` tells it in OpenMetrics text — the sync counters
//! and libp2p's connection and gossipsub metrics — ending in exactly one `# EOF`.
#![cfg(feature = "prometheus")]

use sea_orm::{EntityTrait, PaginatorTrait, Set};
use std::time::{Duration, Instant};
use wavesyncdb::{WaveSyncDb, WaveSyncDbBuilder};

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn peer(
    dir: &std::path::Path,
    name: &str,
    bootstrap: Option<wavesyncdb::Multiaddr>,
) -> WaveSyncDb {
    let mut builder = WaveSyncDbBuilder::new(
        format!("sqlite:{}?mode=rwc", dir.join(name).display()),
        "prometheus-test",
    )
    .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
    .mdns(false)
    .catch_up_interval(Duration::from_millis(300));
    if let Some(address) = bootstrap {
        builder = builder.bootstrap(address);
    }
    let db = builder.build().await.expect("build");
    db.schema()
        .register::<note::Entity>()
        .sync()
        .await
        .expect("sync");
    db
}

/// The value of the sample line that starts with `name ` (no labels).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn counters_and_libp2p_metrics_are_exported() {
    smol::block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = peer(dir.path(), "a.db", None).await;
        let address = a.listening_addresses().into_iter().next().expect("address");
        let b = peer(dir.path(), "b.db", Some(address)).await;
        note::Entity::insert(note::ActiveModel {
            id: Set("n1".into()),
            body: Set("exported".into()),
        })
        .exec(&a)
        .await
        .expect("insert");
        let deadline = Instant::now() + Duration::from_secs(20);
        while note::Entity::find().count(&b).await.expect("count") == 0 {
            assert!(Instant::now() < deadline, "B never got the row");
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        let text = a.encode_metrics();
        assert_eq!(
            sample(&text, "wavesync_local_change_sets_total"),
            Some(1.0),
            "{text}"
        );
        assert!(
            text.contains("# TYPE libp2p_swarm_connections_established counter"),
            "{text}"
        );
        assert!(text.contains("libp2p_gossipsub"), "{text}");
        assert!(
            text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1,
            "{text}"
        );
        let received = b.encode_metrics();
        let applied = sample(&received, "wavesync_remote_change_sets_applied_total");
        assert!(applied.is_some_and(|n| n >= 1.0), "{received}");

        // Without network: the sync counters alone, still one EOF.
        let offline = WaveSyncDbBuilder::new(
            format!("sqlite:{}?mode=rwc", dir.path().join("c.db").display()),
            "prometheus-test",
        )
        .without_network()
        .build()
        .await
        .expect("build");
        let text = offline.encode_metrics();
        assert_eq!(
            sample(&text, "wavesync_local_change_sets_total"),
            Some(0.0),
            "{text}"
        );
        assert!(
            !text.contains("libp2p_") && text.matches("# EOF").count() == 1,
            "{text}"
        );
    });
}
