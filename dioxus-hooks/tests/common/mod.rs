//! Test support: real databases in temp dirs, a second peer without network, and a
//! headless `VirtualDom` driven until its HTML says what the test waits for.
#![allow(dead_code)]

use dioxus::dioxus_core::NoOpMutations;
use dioxus::prelude::*;
use sea_orm::{ActiveModelTrait, Set};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use wavesyncdb::{ChangeSet, WaveSyncDb, WaveSyncDbBuilder};

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

/// A database file in its own temp dir, opened without network, with both entities.
pub struct Peer {
    pub db: WaveSyncDb,
    pub change_sets: async_channel::Receiver<ChangeSet>,
    _dir: TempDir,
}

impl Peer {
    pub async fn open() -> Peer {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("app.db").display());
        let db = WaveSyncDbBuilder::new(url, "dioxus-tests")
            .without_network()
            .build()
            .await
            .expect("open database");
        db.schema()
            .register::<task::Entity>()
            .register::<note::Entity>()
            .sync()
            .await
            .expect("register entities");
        let change_sets = db.change_set_receiver();
        Peer {
            db,
            change_sets,
            _dir: dir,
        }
    }

    /// Every change set committed since the last call.
    pub fn take_change_sets(&self) -> Vec<ChangeSet> {
        std::iter::from_fn(|| self.change_sets.try_recv().ok()).collect()
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
