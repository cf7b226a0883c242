//! Starting a Dioxus desktop app on a WaveSyncDB database (feature `desktop`).
//!
//! Owns opening the database and running the app's setup before the window exists, and
//! handing the database to the app as context. It never keeps a handle of its own beyond
//! the context: the database shuts down when the app's last handle goes.

use crate::error::{LaunchError, SetupError};
use dioxus::prelude::*;
use std::future::Future;
use wavesyncdb::{WaveSyncDb, WaveSyncDbBuilder};

/// Opens the database at `url`, syncing with the peers of `topic`, runs `setup` (register
/// your entities there; it gets a handle of its own), provides the database to every
/// component ([`use_db`]) and opens the desktop window. The app needs no async runtime of
/// its own: the database is opened on the calling thread before the window exists (with
/// the feature `runtime-tokio`, on the tokio runtime the window then runs on).
///
/// If the database cannot be opened or `setup` fails, the error is logged and printed to
/// standard error, and the process exits with status 1; use [`try_launch`] to handle it.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::{launch, use_db, use_sync_status, use_synced_table};
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
/// fn main() {
///     // Opens the database (no async runtime needed), runs the setup, provides the
///     // database as context, opens the window. Needs the crate feature `desktop`.
///     launch("sqlite:./app.db?mode=rwc", "my-topic", |db| async move {
///         db.schema().register::<task::Entity>().sync().await?;
///         Ok(())
///     }, App);
/// }
///
/// #[allow(non_snake_case)]
/// fn App() -> Element {
///     let db = use_db();
///     let tasks = use_synced_table::<task::Entity>(&db); // every row, ordered by key
///     let status = use_sync_status(&db);                 // connected peers, how far behind
///     rsx! {
///         if let Some(s) = status.read().as_ref() { p { "{s.connected_peers} peers" } }
///         if let Some(error) = tasks.read().error() { p { "could not load: {error}" } }
///         for task in tasks.read().iter() {
///             p { key: "{task.id}", "{task.title}" }
///         }
///     }
/// }
/// ```
///
/// [`use_db`]: crate::use_db
pub fn launch<F, Fut>(url: &str, topic: &str, setup: F, app: fn() -> Element)
where
    F: FnOnce(WaveSyncDb) -> Fut,
    Fut: Future<Output = Result<(), SetupError>>,
{
    let result = try_launch_with(
        WaveSyncDbBuilder::new(url, topic),
        dioxus::LaunchBuilder::desktop(),
        setup,
        app,
    );
    exit_on_error(result);
}

/// Like [`launch`], with a configured database builder (listen and bootstrap addresses,
/// mDNS...) and a configured Dioxus launcher (window title and size with
/// `with_cfg(dioxus::desktop::Config::new()...)`, more context...).
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb::WaveSyncDbBuilder;
/// use wavesyncdb_dioxus::launch_with;
///
/// fn main() {
///     let db = WaveSyncDbBuilder::new("sqlite:./app.db?mode=rwc", "my-topic").mdns(false);
///     let window = dioxus::desktop::Config::new()
///         .with_window(dioxus::desktop::WindowBuilder::new().with_title("My app"));
///     launch_with(db, LaunchBuilder::desktop().with_cfg(window), |_db| async { Ok(()) }, App);
/// }
///
/// #[allow(non_snake_case)]
/// fn App() -> Element {
///     rsx! { "hello" }
/// }
/// ```
pub fn launch_with<F, Fut>(
    builder: WaveSyncDbBuilder,
    launcher: LaunchBuilder,
    setup: F,
    app: fn() -> Element,
) where
    F: FnOnce(WaveSyncDb) -> Fut,
    Fut: Future<Output = Result<(), SetupError>>,
{
    exit_on_error(try_launch_with(builder, launcher, setup, app));
}

/// Like [`launch`], returning the error instead of exiting.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
///
/// fn main() {
///     if let Err(error) = wavesyncdb_dioxus::try_launch(
///         "sqlite:./app.db?mode=rwc", "my-topic", |_db| async { Ok(()) }, App,
///     ) {
///         eprintln!("{error}");
///     }
/// }
///
/// #[allow(non_snake_case)]
/// fn App() -> Element {
///     rsx! { "hello" }
/// }
/// ```
pub fn try_launch<F, Fut>(
    url: &str,
    topic: &str,
    setup: F,
    app: fn() -> Element,
) -> Result<(), LaunchError>
where
    F: FnOnce(WaveSyncDb) -> Fut,
    Fut: Future<Output = Result<(), SetupError>>,
{
    try_launch_with(
        WaveSyncDbBuilder::new(url, topic),
        dioxus::LaunchBuilder::desktop(),
        setup,
        app,
    )
}

/// Like [`launch_with`], returning the error instead of exiting.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb::WaveSyncDbBuilder;
///
/// fn main() -> Result<(), wavesyncdb_dioxus::LaunchError> {
///     let db = WaveSyncDbBuilder::new("sqlite:./app.db?mode=rwc", "my-topic");
///     wavesyncdb_dioxus::try_launch_with(db, LaunchBuilder::desktop(), |_db| async { Ok(()) }, App)
/// }
///
/// #[allow(non_snake_case)]
/// fn App() -> Element {
///     rsx! { "hello" }
/// }
/// ```
pub fn try_launch_with<F, Fut>(
    builder: WaveSyncDbBuilder,
    launcher: LaunchBuilder,
    setup: F,
    app: fn() -> Element,
) -> Result<(), LaunchError>
where
    F: FnOnce(WaveSyncDb) -> Fut,
    Fut: Future<Output = Result<(), SetupError>>,
{
    let opener = Opener::new().map_err(LaunchError::Runtime)?;
    // With `runtime-tokio` the runtime stays entered while the window runs, so the
    // desktop renderer adopts it instead of starting a second one, and the database's
    // driver finds it on every call.
    #[cfg(feature = "runtime-tokio")]
    let _entered = opener.enter();
    let db = opener
        .block_on(builder.build())
        .map_err(LaunchError::Open)?;
    opener
        .block_on(setup(db.clone()))
        .map_err(LaunchError::Setup)?;
    tracing::info!(node_id = %db.node_id(), "WaveSyncDB open; launching the Dioxus app");
    launcher
        .with_context_provider(move || Box::new(crate::context::DbContext(db.clone())))
        .launch(app);
    Ok(())
}

/// What the database is opened on: a multi-thread tokio runtime with `runtime-tokio`
/// (sqlx's tokio driver needs one for every call).
#[cfg(feature = "runtime-tokio")]
type Opener = tokio::runtime::Runtime;

/// What the database is opened on: the calling thread, as any executor would (the core
/// needs no runtime of its own).
#[cfg(not(feature = "runtime-tokio"))]
struct Opener;

#[cfg(not(feature = "runtime-tokio"))]
impl Opener {
    fn new() -> std::io::Result<Opener> {
        Ok(Opener)
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        futures::executor::block_on(future)
    }
}

fn exit_on_error(result: Result<(), LaunchError>) {
    if let Err(error) = result {
        tracing::error!(%error, "the app could not start");
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
