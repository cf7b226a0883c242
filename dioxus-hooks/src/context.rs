//! The database as Dioxus context: provided once at the root, read by every hook.
//!
//! Owns [`provide_db`], [`use_db`] and [`try_use_db`]. The context holds a [`WaveSyncDb`]
//! handle (an `Arc` inside, cheap to clone): components get their own clone, so nothing is
//! leaked and the database shuts down when the app drops its last handle. It never opens
//! a database itself.

use dioxus::prelude::*;
use wavesyncdb::WaveSyncDb;

/// The database as Dioxus context holds it.
#[derive(Clone)]
pub(crate) struct DbContext(pub(crate) WaveSyncDb);

/// Provides `db` to this component and its descendants, for [`use_db`], and returns it.
/// [`launch`] (feature `desktop`) does it for you; call this yourself with another
/// renderer or in tests, from the root component (inside `use_hook`, so it runs once).
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb::WaveSyncDb;
/// use wavesyncdb_dioxus::{provide_db, use_db};
///
/// /// Any renderer: hand the opened database to the root as root context.
/// fn app(db: WaveSyncDb) -> VirtualDom {
///     VirtualDom::new(Root).with_root_context(db)
/// }
///
/// #[component]
/// fn Root() -> Element {
///     use_hook(|| provide_db(consume_context::<WaveSyncDb>()));
///     rsx! { Child {} }
/// }
///
/// #[component]
/// fn Child() -> Element {
///     let db = use_db();
///     rsx! { "node {db.node_id()}" }
/// }
/// ```
///
/// [`launch`]: crate#launching-a-desktop-app
pub fn provide_db(db: WaveSyncDb) -> WaveSyncDb {
    provide_context(DbContext(db)).0
}

/// The database provided by [`launch`](crate#launching-a-desktop-app) or
/// [`provide_db`]: a handle of its own (a cheap clone) that the component may move into
/// event handlers and tasks.
///
/// # Panics
///
/// When no ancestor provided a database: that is a wiring mistake in the app, found at
/// the first render. Use [`try_use_db`] to handle it yourself.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::use_db;
///
/// #[component]
/// fn NodeId() -> Element {
///     let db = use_db();
///     rsx! { "node {db.node_id()}" }
/// }
/// ```
#[track_caller]
pub fn use_db() -> WaveSyncDb {
    match try_use_db() {
        Some(db) => db,
        None => panic!(
            "use_db() found no WaveSyncDb: start the app with wavesyncdb_dioxus::launch, \
             or call provide_db(db) in a root component"
        ),
    }
}

/// The database provided by [`launch`](crate#launching-a-desktop-app) or
/// [`provide_db`], or `None` when there is none.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::try_use_db;
///
/// #[component]
/// fn Maybe() -> Element {
///     match try_use_db() {
///         Some(db) => rsx! { "node {db.node_id()}" },
///         None => rsx! { "no database" },
///     }
/// }
/// ```
#[track_caller]
pub fn try_use_db() -> Option<WaveSyncDb> {
    use_hook(|| try_consume_context::<DbContext>().map(|context| context.0))
}
