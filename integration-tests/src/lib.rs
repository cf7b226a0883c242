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

    /// The address other peers can bootstrap to, ending in this peer's id: a dial to it
    /// reaches this peer or fails, never another test's peer that took the port after
    /// this one stopped (the tests of a suite share one process and one topic).
    pub fn address(&self) -> wavesyncdb::Multiaddr {
        let address = self
            .db
            .listening_addresses()
            .into_iter()
            .next()
            .expect("a listening address");
        match self.db.peer_id() {
            // `with_p2p` hands the address back if it already names a peer.
            Some(id) => address.with_p2p(id).unwrap_or_else(|named| named),
            None => address,
        }
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

    /// Stops the engine and closes every connection to the database file, waiting for
    /// it, so the file may be copied or replaced.
    pub async fn close(self) {
        self.db.close().await.expect("close the database");
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

pub mod post {
    //! A synced parent table: posts, whose comments reference them.
    use sea_orm::entity::prelude::*;

    /// One post.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        /// Application-chosen key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The post's title.
        pub title: String,
    }

    /// A post has many comments.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The post's comments.
        #[sea_orm(has_many = "super::comment::Entity")]
        Comment,
    }

    impl Related<super::comment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Comment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod comment {
    //! A synced child table: each comment belongs to a post (a FOREIGN KEY with
    //! `ON DELETE CASCADE`, emitted by SeaORM's schema builder from the relation).
    use sea_orm::entity::prelude::*;

    /// One comment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "comments")]
    pub struct Model {
        /// Application-chosen key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The post it belongs to.
        pub post_id: String,
        /// What it says.
        pub body: String,
    }

    /// A comment belongs to a post; deleting the post deletes its comments.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The post.
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id",
            on_delete = "Cascade"
        )]
        Post,
    }

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The builder [`TestPeer::start_with`] uses: a loopback listener, mDNS off, catch-up
/// every 300 ms.
pub fn test_builder(path: &std::path::Path) -> wavesyncdb::WaveSyncDbBuilder {
    wavesyncdb::WaveSyncDbBuilder::new(format!("sqlite:{}?mode=rwc", path.display()), "tests")
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .mdns(false)
        .catch_up_interval(std::time::Duration::from_millis(300))
}

impl TestPeer {
    /// Starts a peer like [`TestPeer::start`] whose engine runs (and connects to
    /// `bootstrap`) but which registers no table: the application calls
    /// `db.schema()...sync()` itself, later.
    pub async fn start_unregistered(
        path: &std::path::Path,
        bootstrap: &[wavesyncdb::Multiaddr],
    ) -> TestPeer {
        let mut builder = test_builder(path);
        for address in bootstrap {
            builder = builder.bootstrap(address.clone());
        }
        let db = builder.build().await.expect("start peer");
        TestPeer {
            db,
            path: path.to_owned(),
        }
    }

    /// Registers the `posts` and `comments` tables for sync.
    pub async fn register_posts(&self) {
        self.db
            .schema()
            .register::<post::Entity>()
            .register::<comment::Entity>()
            .sync()
            .await
            .expect("register posts and comments");
    }

    /// Every post, ordered by id.
    pub async fn posts(&self) -> Vec<post::Model> {
        rows::<post::Entity>(&self.db).await
    }

    /// Every comment, ordered by id.
    pub async fn comments(&self) -> Vec<comment::Model> {
        rows::<comment::Entity>(&self.db).await
    }

    /// Waits until this peer has at least `peers` connected peers.
    pub async fn wait_connected(&self, peers: usize, timeout: std::time::Duration) -> bool {
        wait_until(timeout, || async {
            self.db
                .sync_status()
                .await
                .is_ok_and(|status| status.connected_peers >= peers)
        })
        .await
    }
}

/// Every row of `E` in `db`, ordered by primary key.
pub async fn rows<E: sea_orm::EntityTrait>(db: &wavesyncdb::WaveSyncDb) -> Vec<E::Model> {
    use sea_orm::{Iterable, PrimaryKeyToColumn, QueryOrder};
    let mut query = E::find();
    for key in E::PrimaryKey::iter() {
        query = query.order_by_asc(key.into_column());
    }
    query.all(db).await.expect("read rows")
}

/// Panics unless `verify_log` finds the tables and the log in agreement on every peer.
pub async fn assert_logs_consistent(peers: &[&TestPeer]) {
    for (n, peer) in peers.iter().enumerate() {
        let report = peer.db.verify_log().await.expect("verify log");
        assert!(
            report.is_consistent(),
            "peer {n}: tables and log disagree: {:?}",
            report.problems
        );
    }
}
