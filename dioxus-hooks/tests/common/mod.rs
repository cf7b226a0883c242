//! Test support: real databases in temp dirs (without network, or with a real engine on
//! 127.0.0.1), and a headless `VirtualDom` driven until its HTML says what the test
//! waits for.
#![allow(dead_code)]

use dioxus::dioxus_core::NoOpMutations;
use dioxus::prelude::*;
use sea_orm::{ActiveModelTrait, Set};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use wavesyncdb::{ChangeSet, GroupSecret, Multiaddr, WaveSyncDb, WaveSyncDbBuilder};

pub mod task {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
        pub completed: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod note {
    use sea_orm::entity::prelude::*;

    /// Another synced table: its changes must not wake hooks of `tasks`.
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

/// How long a test waits for the UI to show a change before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A database file in its own temp dir, with both entities.
pub struct Peer {
    pub db: WaveSyncDb,
    /// The committed change sets (`None` with network: the engine takes them).
    pub change_sets: Option<async_channel::Receiver<ChangeSet>>,
    _dir: TempDir,
}

impl Peer {
    /// A peer without network; the test carries its change sets by hand.
    pub async fn open() -> Peer {
        let mut peer = Peer::build("dioxus-tests", |builder| builder.without_network()).await;
        peer.change_sets = Some(peer.db.change_set_receiver());
        peer
    }

    /// A peer with a real engine of the private group (`topic`, `secret`), listening on
    /// 127.0.0.1 and dialling `bootstrap`; no mDNS, so only the test's peers meet.
    pub async fn start(topic: &str, secret: &GroupSecret, bootstrap: &[Multiaddr]) -> Peer {
        let secret = secret.clone();
        let bootstrap = bootstrap.to_vec();
        Peer::build(topic, move |builder| {
            let mut builder = builder
                .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
                .mdns(false)
                .group_secret(secret);
            for address in bootstrap {
                builder = builder.bootstrap(address);
            }
            builder
        })
        .await
    }

    async fn build(
        topic: &str,
        configure: impl FnOnce(WaveSyncDbBuilder) -> WaveSyncDbBuilder,
    ) -> Peer {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("app.db").display());
        let db = configure(WaveSyncDbBuilder::new(url, topic))
            .build()
            .await
            .expect("open database");
        db.schema()
            .register::<task::Entity>()
            .register::<note::Entity>()
            .sync()
            .await
            .expect("register entities");
        Peer {
            db,
            change_sets: None,
            _dir: dir,
        }
    }

    /// The first address this peer listens on (a networked peer).
    pub fn address(&self) -> Multiaddr {
        self.db
            .listening_addresses()
            .into_iter()
            .next()
            .expect("a listening address")
    }

    /// Every change set committed since the last call (none with network).
    pub fn take_change_sets(&self) -> Vec<ChangeSet> {
        let Some(change_sets) = &self.change_sets else {
            return Vec::new();
        };
        std::iter::from_fn(|| change_sets.try_recv().ok()).collect()
    }

    pub async fn add_task(&self, id: &str, title: &str) {
        task::ActiveModel {
            id: Set(id.into()),
            title: Set(title.into()),
            completed: Set(false),
        }
        .insert(&self.db)
        .await
        .expect("insert task");
    }

    pub async fn add_note(&self, id: &str, body: &str) {
        note::ActiveModel {
            id: Set(id.into()),
            body: Set(body.into()),
        }
        .insert(&self.db)
        .await
        .expect("insert note");
    }
}

/// Drives `dom` (its tasks, then a render whenever a component is dirty) until its HTML
/// satisfies `done`; returns the HTML, or panics with the last HTML after [`DEADLINE`].
pub async fn render_until(dom: &mut VirtualDom, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let html = dioxus_ssr::render(dom);
        if done(&html) {
            return html;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            panic!("the UI did not show {what} within {DEADLINE:?}; it shows: {html}");
        };
        step(dom, left).await;
    }
}

/// Drives `dom` for `period`, rendering whenever there is work.
pub async fn render_for(dom: &mut VirtualDom, period: Duration) {
    let deadline = Instant::now() + period;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        step(dom, left).await;
    }
}

/// Waits (at most `limit`) for work, then renders what is dirty.
async fn step(dom: &mut VirtualDom, limit: Duration) {
    let worked = smol::future::or(
        async {
            dom.wait_for_work().await;
            true
        },
        async {
            smol::Timer::after(limit).await;
            false
        },
    )
    .await;
    if worked {
        dom.render_immediate(&mut NoOpMutations);
    }
}

/// A fresh `VirtualDom` of `app` with `context` at its root, first render done.
pub fn dom_with<T: Clone + 'static>(app: fn() -> Element, context: T) -> VirtualDom {
    let mut dom = VirtualDom::new(app).with_root_context(context);
    dom.rebuild_in_place();
    dom
}
