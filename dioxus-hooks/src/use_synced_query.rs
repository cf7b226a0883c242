//! [`use_synced_query`]: the rows of a SeaORM query (filtered, ordered, joined), as a
//! signal that re-runs the query when a table it reads changes.

use crate::synced::{Synced, watch};
use dioxus::core::Task;
use dioxus::prelude::*;
use sea_orm::sea_query::audit::AuditTrait;
use sea_orm::{DbBackend, EntityTrait, QueryTrait, Select, Statement};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use wavesyncdb::WaveSyncDb;

/// A signal of the rows `query` returns, re-run whenever a table the query reads changes,
/// here or on a peer, and whenever a signal the `query` closure reads changes (a search
/// box, a filter toggle), like Dioxus's `use_memo`.
///
/// `query` builds a SeaORM [`Select`] of `E` with any `filter`, `order_by`, `limit` or
/// join. As with `use_memo`, the closure of the first render is the one kept: what may
/// change belongs in signals (or props read as signals) that the closure reads. The tables it reads are taken from the query itself (SeaORM's query audit): a
/// change to any of them re-runs it, a change elsewhere does not. A query the audit cannot
/// read (one that embeds raw SQL as a table, say) re-runs on every change instead.
///
/// The value is a [`Synced`], as for [`use_synced_table`](crate::use_synced_table): the
/// rows, whether the first load is still [`loading`](Synced::loading), and the
/// [`error`](Synced::error) of the last run. Bursts of changes are coalesced the same way.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
/// use wavesyncdb_dioxus::{use_db, use_synced_query};
/// # mod task {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// #     #[sea_orm(table_name = "tasks")]
/// #     pub struct Model {
/// #         #[sea_orm(primary_key, auto_increment = false)]
/// #         pub id: String,
/// #         pub title: String,
/// #         pub completed: bool,
/// #     }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// #     impl ActiveModelBehavior for ActiveModel {}
/// # }
///
/// #[component]
/// fn OpenTasks() -> Element {
///     let mut search = use_signal(String::new);
///     // Re-runs when `tasks` changes, and when `search` does.
///     let open = use_synced_query(use_db(), move || {
///         task::Entity::find()
///             .filter(task::Column::Completed.eq(false))
///             .filter(task::Column::Title.contains(search()))
///             .order_by_asc(task::Column::Title)
///     });
///     rsx! {
///         input { value: "{search}", oninput: move |e| search.set(e.value()) }
///         for task in open.read().iter() {
///             p { key: "{task.id}", "{task.title}" }
///         }
///     }
/// }
/// ```
#[track_caller]
pub fn use_synced_query<E>(
    db: impl Borrow<WaveSyncDb>,
    query: impl Fn() -> Select<E> + 'static,
) -> ReadSignal<Synced<Vec<E::Model>>>
where
    E: EntityTrait,
    E::Model: PartialEq + 'static,
{
    let state = use_signal(|| Synced::loading_with(Vec::new()));
    // The query as SQL and the tables it reads, recomputed when a signal the closure
    // reads changes; reading it here re-renders this component when it does.
    let built = use_memo(move || Built::of(query()));
    let built = built.read().clone();
    let watching: Rc<RefCell<Option<(Built, Task)>>> = use_hook(|| Rc::new(RefCell::new(None)));
    let mut watching = watching.borrow_mut();
    if watching
        .as_ref()
        .is_none_or(|(current, _)| *current != built)
    {
        if let Some((_, task)) = watching.take() {
            task.cancel();
        }
        let tables = built.tables.clone();
        let statement = built.statement.clone();
        let what = match &tables {
            Some(tables) => format!(
                "query on {}",
                Vec::from_iter(tables.iter().cloned()).join(", ")
            ),
            None => "query".to_owned(),
        };
        let task = watch(
            db.borrow().clone(),
            state,
            what,
            move |change| {
                tables
                    .as_ref()
                    .is_none_or(|tables| tables.contains(&change.table.to_ascii_lowercase()))
            },
            move |db| {
                let statement = statement.clone();
                async move { E::find().from_raw_sql(statement).all(&db).await }
            },
        );
        *watching = Some((built, task));
    }
    use_hook(|| ReadSignal::from(state))
}

/// A query as the hook runs it, and the tables it reads.
#[derive(Clone, Debug, PartialEq)]
struct Built {
    statement: Statement,
    /// Lower-cased names; `None` when the audit could not tell (reload on any change).
    tables: Option<BTreeSet<String>>,
}

impl Built {
    fn of<E: EntityTrait>(query: Select<E>) -> Built {
        let tables = match query.as_query().audit() {
            Ok(audit) => Some(
                audit
                    .selects()
                    .into_iter()
                    .map(|table| table.1.to_string().to_ascii_lowercase())
                    .collect(),
            ),
            Err(error) => {
                tracing::debug!(
                    ?error,
                    "cannot tell the tables of a synced query; it re-runs on every change"
                );
                None
            }
        };
        Built {
            statement: query.build(DbBackend::Sqlite),
            tables,
        }
    }
}
