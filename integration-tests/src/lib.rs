//! Shared pieces of the end-to-end tests: the entities the test programs write.

pub mod task {
    //! A synced task list.
    use sea_orm::entity::prelude::*;
    use wavesyncdb_derive::SyncEntity;

    /// One task.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, SyncEntity)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        /// Application-chosen key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// What to do.
        pub title: String,
        /// Done or not.
        pub completed: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Opens the database at `path`, without network, with the test entities registered.
pub async fn open(path: &std::path::Path) -> Result<wavesyncdb::WaveSyncDb, wavesyncdb::Error> {
    let db =
        wavesyncdb::WaveSyncDbBuilder::new(format!("sqlite:{}?mode=rwc", path.display()), "tests")
            .without_network()
            .build()
            .await?;
    db.schema().register::<task::Entity>().sync().await?;
    Ok(db)
}

/// A peer of a test group: a real database file and a real swarm on 127.0.0.1.
pub struct TestPeer {
    /// The peer's database handle.
    pub db: wavesyncdb::WaveSyncDb,
    /// Its database file.
    pub path: std::path::PathBuf,
}

impl TestPeer {
    /// Starts a peer on the database at `path` (created if missing), listening on a free
    /// loopback port, with mDNS off, connecting to `bootstrap`.
    pub async fn start(path: &std::path::Path, bootstrap: &[wavesyncdb::Multiaddr]) -> TestPeer {
        Self::start_with(path, bootstrap, |builder| builder).await
    }

    /// Like [`TestPeer::start`], with more builder settings.
    pub async fn start_with(
        path: &std::path::Path,
        bootstrap: &[wavesyncdb::Multiaddr],
        configure: impl FnOnce(wavesyncdb::WaveSyncDbBuilder) -> wavesyncdb::WaveSyncDbBuilder,
    ) -> TestPeer {
        let builder = wavesyncdb::WaveSyncDbBuilder::new(
            format!("sqlite:{}?mode=rwc", path.display()),
            "tests",
        )
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .mdns(false)
        .catch_up_interval(std::time::Duration::from_millis(300));
        let mut builder = configure(builder);
        for address in bootstrap {
            builder = builder.bootstrap(address.clone());
        }
        let db = builder.build().await.expect("start peer");
        db.schema()
            .register::<task::Entity>()
            .sync()
            .await
            .expect("register entities");
        TestPeer {
            db,
            path: path.to_owned(),
        }
    }

    /// The address other peers can bootstrap to.
    pub fn address(&self) -> wavesyncdb::Multiaddr {
        self.db
            .listening_addresses()
            .into_iter()
            .next()
            .expect("a listening address")
    }

    /// Every task, ordered by id.
    pub async fn tasks(&self) -> Vec<task::Model> {
        use sea_orm::{EntityTrait, QueryOrder};
        task::Entity::find()
            .order_by_asc(task::Column::Id)
            .all(&self.db)
            .await
            .expect("read tasks")
    }

    /// Stops the engine and closes the database.
    pub async fn stop(self) {
        self.db.shutdown().await;
    }
}

/// Polls `check` every 50 ms until it holds; false if `timeout` passes first.
pub async fn wait_until<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        smol::Timer::after(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until every peer holds the same tasks as the first; panics with both tables
/// after `timeout`.
pub async fn assert_converge(peers: &[&TestPeer], timeout: std::time::Duration) {
    let converged = wait_until(timeout, || async {
        let first = peers[0].tasks().await;
        for peer in &peers[1..] {
            if peer.tasks().await != first {
                return false;
            }
        }
        true
    })
    .await;
    if !converged {
        let mut tables = Vec::new();
        for peer in peers {
            tables.push(peer.tasks().await.len());
        }
        panic!("peers did not converge within {timeout:?}; row counts {tables:?}");
    }
    for peer in peers {
        let report = peer.db.verify_log().await.expect("verify log");
        assert!(report.is_consistent(), "{:?}", report.problems);
    }
}

/// A task to insert.
pub fn new_task(id: &str, title: &str) -> task::ActiveModel {
    use sea_orm::Set;
    task::ActiveModel {
        id: Set(id.to_owned()),
        title: Set(title.to_owned()),
        completed: Set(false),
    }
}
