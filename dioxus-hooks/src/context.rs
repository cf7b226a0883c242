use dioxus::prelude::*;
use wavesyncdb::WaveSyncDb;

/// The database as Dioxus context holds it.
#[derive(Clone, Copy)]
pub(crate) struct DbContext(pub(crate) &'static WaveSyncDb);

/// Provides `db` to this component and its descendants, for [`use_db`]. [`launch`]
/// (feature `desktop`) does it for you; call this yourself with another renderer or in
/// tests, from the root component.
///
/// A `&'static` handle makes hooks and event handlers free to copy it into tasks; make
/// one with `Box::leak(Box::new(db))` once per process (the database lives as long as
/// the app).
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use std::sync::OnceLock;
/// use wavesyncdb::WaveSyncDb;
/// use wavesyncdb_dioxus::{provide_db, use_db};
///
/// /// Opened in `main` before the renderer starts.
/// static DB: OnceLock<WaveSyncDb> = OnceLock::new();
///
/// #[component]
/// fn Root() -> Element {
///     let opened = use_hook(|| DB.get().map(provide_db).is_some());
///     if opened {
///         rsx! { Child {} }
///     } else {
///         rsx! { "the database is not open" }
///     }
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
pub fn provide_db(db: &'static WaveSyncDb) -> &'static WaveSyncDb {
    provide_context(DbContext(db)).0
}

/// The database provided by [`launch`](crate#launching-a-desktop-app) or
/// [`provide_db`].
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
pub fn use_db() -> &'static WaveSyncDb {
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
pub fn try_use_db() -> Option<&'static WaveSyncDb> {
    use_hook(|| try_consume_context::<DbContext>().map(|context| context.0))
}
