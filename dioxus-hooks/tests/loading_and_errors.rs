//! The data hooks' loading and error state, in a headless `VirtualDom`: `loading` before
//! the first load, an error (not an empty list) when a load fails, and recovery on the
//! next change of the table.

mod common;

use common::*;
use dioxus::prelude::*;
use sea_orm::{ActiveModelTrait, Set};
use wavesyncdb::WaveSyncDb;
use wavesyncdb_dioxus::{use_synced_row, use_synced_table};

/// An entity whose table does not exist until the test registers it.
mod later {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "later")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub label: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Clone)]
struct Db(WaveSyncDb);

#[allow(non_snake_case)]
fn TaskState() -> Element {
    let Db(db) = use_context::<Db>();
    let tasks = use_synced_table::<task::Entity>(&db);
    let row = use_synced_row::<task::Entity>(&db, "a".to_owned());
    let (tasks, row) = (tasks.read(), row.read());
    let table = if tasks.loading() {
        "table=loading".to_owned()
    } else {
        format!("table=ready count={}", tasks.len())
    };
    let row = match (row.loading(), row.as_ref()) {
        (true, _) => "row=loading".to_owned(),
        (false, Some(task)) => format!("row=({})", task.title),
        (false, None) => "row=none".to_owned(),
    };
    rsx! { p { "{table} {row}" } }
}

#[allow(non_snake_case)]
fn LaterState() -> Element {
    let Db(db) = use_context::<Db>();
    let rows = use_synced_table::<later::Entity>(&db);
    let rows = rows.read();
    let error = rows
        .error()
        .map_or("error=none".to_owned(), |e| format!("error=({e})"));
    rsx! {
        p { "loading={rows.loading()} {error} count={rows.len()}" }
        for row in rows.iter() { span { "[{row.label}]" } }
    }
}

#[test]
fn loading_until_the_first_load_then_the_rows_or_none() {
    smol::block_on(async {
        let peer = Peer::open().await;
        peer.add_task("b", "Buy").await;
        let mut dom = dom_with(TaskState, Db(peer.db.clone()));
        // The first render comes before the first load: loading, not an empty list.
        let first = dioxus_ssr::render(&dom);
        assert!(
            first.contains("table=loading row=loading"),
            "first render: {first}"
        );
        // Loaded: one row in the table, row `a` does not exist (and is not loading).
        render_until(&mut dom, "the loaded state", |h| {
            h.contains("table=ready count=1 row=none")
        })
        .await;
        peer.add_task("a", "Ask").await;
        render_until(&mut dom, "the new row", |h| {
            h.contains("table=ready count=2 row=(Ask)")
        })
        .await;
    });
}

#[test]
fn a_failed_load_is_an_error_and_the_next_change_recovers() {
    smol::block_on(async {
        let peer = Peer::open().await;
        let mut dom = dom_with(LaterState, Db(peer.db.clone()));
        // The table does not exist: the hook says so instead of showing an empty list.
        let html = render_until(&mut dom, "the load error", |h| {
            h.contains("loading=false error=(")
        })
        .await;
        assert!(html.contains("no such table"), "{html}");
        assert!(html.contains("count=0"), "{html}");

        // The table appears and gets a row: the change retries the load, the error goes.
        peer.db
            .schema()
            .register::<later::Entity>()
            .sync()
            .await
            .expect("register");
        later::ActiveModel {
            id: Set("x".into()),
            label: Set("arrived".into()),
        }
        .insert(&peer.db)
        .await
        .expect("insert");
        render_until(&mut dom, "the recovered rows", |h| {
            h.contains("loading=false error=none count=1") && h.contains("[arrived]")
        })
        .await;
    });
}
