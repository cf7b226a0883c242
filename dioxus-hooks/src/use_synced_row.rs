//! [`use_synced_row`]: one row of a synced table, by primary key, as a signal.

use crate::synced::{Synced, watch};
use dioxus::core::Task;
use dioxus::prelude::*;
use sea_orm::{EntityTrait, PrimaryKeyTrait, sea_query::IntoValueTuple};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::rc::Rc;
use wavesyncdb::{CellValue, WaveSyncDb};
/// The primary-key type of entity `E` (`String` for a `String` key, a tuple for a
/// composite key).
pub type PrimaryKeyOf<E> = <<E as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

/// A signal of the row of `E` whose primary key is `key`: `Some(row)` while it exists,
/// `None` before it is created or after it is deleted, here or on a peer.
///
/// The value is a [`Synced`]: it dereferences to the `Option` (`task.read().as_ref()`),
/// and tells [`loading`](Synced::loading) (the first load is not done: `None` does not
/// mean deleted yet) and [`error`](Synced::error) (the last load failed) apart.
///
/// Like [`use_synced_table`](crate::use_synced_table) it subscribes before it loads and
/// coalesces bursts, and it reloads only when a notification touches this row. When the
/// component renders with another `key`, the hook follows the new row.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::{use_db, use_synced_row};
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
/// fn TaskTitle(id: String) -> Element {
///     let task = use_synced_row::<task::Entity>(use_db(), id);
///     let task = task.read();
///     match task.as_ref() {
///         Some(task) => rsx! { h2 { "{task.title}" } },
///         None if task.loading() => rsx! { h2 { "…" } },
///         None => rsx! { h2 { "(deleted)" } },
///     }
/// }
/// ```
#[track_caller]
pub fn use_synced_row<E>(
    db: impl Borrow<WaveSyncDb>,
    key: PrimaryKeyOf<E>,
) -> ReadSignal<Synced<Option<E::Model>>>
where
    E: EntityTrait,
    E::Model: PartialEq + 'static,
    PrimaryKeyOf<E>: Clone + 'static,
{
    let state = use_signal(|| Synced::loading_with(None));
    let watching: Watching<PrimaryKeyOf<E>> = use_hook(|| Rc::new(RefCell::new(None)));
    let mut watching = watching.borrow_mut();
    let same_key = watching
        .as_ref()
        .is_some_and(|(current, _)| *current == key);
    if !same_key {
        if let Some((_, task)) = watching.take() {
            task.cancel();
        }
        let table = E::default().table_name().to_owned();
        let cells = key_cells(&key);
        let task_key = key.clone();
        let task = watch(
            db.borrow().clone(),
            state,
            format!("row {task_key:?} of {table}"),
            move |change| {
                change.table == table && cells.as_ref().is_none_or(|cells| change.touches(cells))
            },
            move |db| {
                let key = task_key.clone();
                async move { E::find_by_id(key).one(&db).await }
            },
        );
        *watching = Some((key, task));
    }
    use_hook(|| ReadSignal::from(state))
}

/// The key the hook's task follows, and that task: replaced when the key changes.
type Watching<K> = Rc<RefCell<Option<(K, Task)>>>;

/// The key as the cells notifications carry; `None` when a key type has no unambiguous
/// SQLite form, and the hook then reloads on every change of the table.
fn key_cells<K: IntoValueTuple + Clone>(key: &K) -> Option<Vec<CellValue>> {
    key.clone()
        .into_value_tuple()
        .into_iter()
        .map(|value| CellValue::from_value(&value))
        .collect()
}
