use crate::watch::next_change;
use dioxus::prelude::*;
use sea_orm::{DbErr, EntityTrait, Iterable, PrimaryKeyToColumn, QueryOrder};
use wavesyncdb::WaveSyncDb;

/// A signal of every row of the synced table of `E`, ordered by primary key, kept up to
/// date with local writes and with changes applied from peers.
///
/// The hook subscribes to the change bus *before* its first load, so no change can fall
/// between the load and the subscription. It reloads only when a notification names this
/// table, and coalesces bursts: a thousand remote writes in a row cost a handful of
/// reloads, not a thousand. A reload that finds the same rows does not touch the signal,
/// so it re-renders nothing. The signal starts empty and fills after the first load.
///
/// A failed load is logged (`tracing`, at `warn`) and the last rows stay shown; the next
/// change retries.
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
///     let tasks = use_synced_table::<task::Entity>(db);
///     rsx! {
///         for task in tasks.read().iter() {
///             p { key: "{task.id}", "{task.title}" }
///         }
///     }
/// }
/// ```
#[track_caller]
pub fn use_synced_table<E>(db: &'static WaveSyncDb) -> ReadSignal<Vec<E::Model>>
where
    E: EntityTrait,
    E::Model: PartialEq + 'static,
{
    let mut rows = use_signal(Vec::new);
    use_hook(move || {
        let table = E::default().table_name().to_owned();
        // Subscribe first, here in the hook, before the load task even exists: every
        // change committed after this line wakes the task, so none is lost.
        let mut changes = db.subscribe();
        spawn(async move {
            loop {
                match load_all::<E>(db).await {
                    Ok(loaded) => {
                        if *rows.peek() != loaded {
                            rows.set(loaded);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%table, %error, "could not load the synced table; keeping the last rows");
                    }
                }
                next_change(&mut changes, |change| change.table == table).await;
            }
        });
        ReadSignal::from(rows)
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
