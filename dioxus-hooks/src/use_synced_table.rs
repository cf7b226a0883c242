//! [`use_synced_table`]: every row of one synced table, as a signal.

use crate::synced::{Synced, watch};
use dioxus::prelude::*;
use sea_orm::{DbErr, EntityTrait, Iterable, PrimaryKeyToColumn, QueryOrder};
use std::borrow::Borrow;
use wavesyncdb::WaveSyncDb;

/// A signal of every row of the synced table of `E`, ordered by primary key, kept up to
/// date with local writes and with changes applied from peers.
///
/// The value is a [`Synced`]: it dereferences to the rows (`tasks.read().iter()`), says
/// whether the first load is still [`loading`](Synced::loading), and holds the
/// [`error`](Synced::error) of the last load if it failed (the last rows stay shown, and
/// the next change of the table retries). `db` is the database from
/// [`use_db`](crate::use_db), by value or by reference.
///
/// The hook subscribes to the change bus *before* its first load, so no change can fall
/// between the load and the subscription. It reloads only when a notification names this
/// table, and coalesces bursts: a thousand remote writes in a row cost a handful of
/// reloads, not a thousand. A reload that finds the same rows does not touch the signal,
/// so it re-renders nothing.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::{use_db, use_synced_table};
/// # mod task {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// #     #[sea_orm(table_name = "tasks")]
/// #     pub struct Model {
/// #         #[sea_orm(primary_key, auto_increment = false)]
/// #         pub id: String,
/// #         pub title: String,
/// #     }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// #     impl ActiveModelBehavior for ActiveModel {}
/// # }
///
/// #[component]
/// fn TaskList() -> Element {
///     let db = use_db();
///     let tasks = use_synced_table::<task::Entity>(&db);
///     rsx! {
///         if tasks.read().loading() { p { "loading…" } }
///         for task in tasks.read().iter() {
///             p { key: "{task.id}", "{task.title}" }
///         }
///     }
/// }
/// ```
#[track_caller]
pub fn use_synced_table<E>(db: impl Borrow<WaveSyncDb>) -> ReadSignal<Synced<Vec<E::Model>>>
where
    E: EntityTrait,
    E::Model: PartialEq + 'static,
{
    let state = use_signal(|| Synced::loading_with(Vec::new()));
    let db = db.borrow();
    use_hook(|| {
        let table = E::default().table_name().to_owned();
        let relevant = table.clone();
        watch(
            db.clone(),
            state,
            format!("table {table}"),
            move |change| change.table == relevant,
            |db| async move { load_all::<E>(&db).await },
        );
        ReadSignal::from(state)
    })
}

/// Every row of `E`, ordered by primary key (a stable order for lists).
pub(crate) async fn load_all<E: EntityTrait>(db: &WaveSyncDb) -> Result<Vec<E::Model>, DbErr> {
    let mut query = E::find();
    for key in E::PrimaryKey::iter() {
        query = query.order_by_asc(key.into_column());
    }
    query.all(db).await
}
