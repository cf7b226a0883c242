//! [`Synced`]: what a synced hook shows, and the loop that keeps it current.
//!
//! Owns the state every data hook shares (the value, whether the first load is done, the
//! error of the last load) and [`watch`], the task that loads, waits for a relevant change
//! and loads again. It subscribes to the change bus *before* it spawns the task, so no
//! change can fall between a load and the subscription. It never decides what is relevant
//! (each hook passes that in) and never writes to the database.

use crate::watch::next_change;
use dioxus::core::Task;
use dioxus::prelude::*;
use sea_orm::DbErr;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use wavesyncdb::{ChangeNotification, WaveSyncDb};

/// The value a synced hook shows, with its loading and error state, as Dioxus's
/// `Resource` tells them apart: [`loading`](Self::loading) until the first load finished,
/// [`error`](Self::error) when the last load failed (the last good value stays shown, and
/// the next relevant change retries).
///
/// It dereferences to the value, so `rows.read().iter()` and `row.read().as_ref()` read
/// the rows or the row directly.
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
///     let tasks = use_synced_table::<task::Entity>(use_db());
///     let tasks = tasks.read();
///     if tasks.loading() {
///         return rsx! { p { "loading…" } };
///     }
///     rsx! {
///         if let Some(error) = tasks.error() { p { class: "error", "{error}" } }
///         for task in tasks.iter() { p { key: "{task.id}", "{task.title}" } }
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Synced<T> {
    value: T,
    loaded: bool,
    error: Option<Arc<DbErr>>,
}

impl<T> Synced<T> {
    /// The state before the first load: `value` (empty), loading, no error.
    pub(crate) fn loading_with(value: T) -> Self {
        Synced {
            value,
            loaded: false,
            error: None,
        }
    }

    /// Whether the first load has not finished yet. Later reloads do not set it again:
    /// the value shown meanwhile is the last one loaded.
    pub fn loading(&self) -> bool {
        !self.loaded
    }

    /// The error of the last load, if it failed; `None` once a load succeeds again.
    pub fn error(&self) -> Option<&DbErr> {
        self.error.as_deref()
    }

    /// The value: the last one loaded successfully (empty before).
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, owned.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> Deref for Synced<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// Records the outcome of a load, touching the signal (and so re-rendering) only when
/// what it shows changes.
fn record<T: PartialEq + 'static>(
    state: &mut Signal<Synced<T>>,
    what: &str,
    outcome: Result<T, DbErr>,
) {
    match outcome {
        Ok(value) => {
            let unchanged = {
                let current = state.peek();
                current.loaded && current.error.is_none() && current.value == value
            };
            if !unchanged {
                state.set(Synced {
                    value,
                    loaded: true,
                    error: None,
                });
            }
        }
        Err(error) => {
            tracing::warn!(%what, %error, "could not load; keeping the last value, the next change retries");
            let mut current = state.write();
            current.loaded = true;
            current.error = Some(Arc::new(error));
        }
    }
}

/// Spawns the task that loads with `load`, records the outcome in `state`, waits for a
/// change that `relevant` accepts, and loads again, for as long as the component lives
/// (or until the returned task is cancelled). `what` names the data in logs.
pub(crate) fn watch<T, L, Fut>(
    db: WaveSyncDb,
    mut state: Signal<Synced<T>>,
    what: String,
    relevant: impl Fn(&ChangeNotification) -> bool + 'static,
    load: L,
) -> Task
where
    T: PartialEq + 'static,
    L: Fn(WaveSyncDb) -> Fut + 'static,
    Fut: Future<Output = Result<T, DbErr>>,
{
    // Subscribe first, before the task even exists: every change committed after this
    // line wakes the task, so none falls between the load and the subscription.
    let mut changes = db.subscribe();
    spawn(async move {
        loop {
            let outcome = load(db.clone()).await;
            record(&mut state, &what, outcome);
            next_change(&mut changes, &relevant).await;
        }
    })
}
