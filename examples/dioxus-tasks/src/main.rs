//! `dioxus-tasks`: a desktop task list that syncs with every peer of its topic.
//!
//! ```sh
//! export WAVESYNC_SECRET=$(cargo run -q -p wavesync-tasks -- secret)   # a private group
//! cargo run -p wavesync-dioxus-tasks -- --db a.db --listen /ip4/127.0.0.1/tcp/4001 --no-mdns
//! cargo run -p wavesync-dioxus-tasks -- --db b.db --peer /ip4/127.0.0.1/tcp/4001 --no-mdns
//! ```
//!
//! Add a task in one window (type, press Enter): it appears in the other; so does ticking
//! it done or deleting it. Under the list, each peer: whether its connection is direct or
//! through a relay, and the catch-up from it while one runs. Logs go to
//! standard error, filtered by `RUST_LOG` (default `warn`, e.g. `RUST_LOG=wavesyncdb=debug`).
//!
//! It runs on the desktop renderer's tokio runtime (`wavesyncdb_dioxus`'s feature
//! `runtime-tokio`): one runtime in the process, no smol.

use clap::Parser;
use dioxus::desktop::{Config, LogicalSize, WindowBuilder};
use dioxus::prelude::*;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use wavesyncdb::{ConnectionKind, GroupSecret, Multiaddr, PeerInfo, WaveSyncDb, WaveSyncDbBuilder};
use wavesyncdb_dioxus::{launch_with, use_db, use_sync_status, use_synced_table};

mod task {
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

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A desktop task list that syncs with every peer of its topic"
)]
struct Cli {
    /// The SQLite database file.
    #[arg(long, env = "TASKS_DB", default_value = "dioxus-tasks.db")]
    db: std::path::PathBuf,
    /// The group topic: peers of the same topic sync.
    #[arg(long, env = "TASKS_TOPIC", default_value = "wavesync-dioxus-tasks")]
    topic: String,
    /// Address to listen on (repeatable), e.g. /ip4/127.0.0.1/tcp/4001.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Address of a peer to connect to (repeatable), e.g. /ip4/127.0.0.1/tcp/4001.
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// Do not discover peers on the LAN by mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// The group secret, 64 hex digits, which makes the group private: only peers with
    /// the same secret connect. `cargo run -p wavesync-tasks -- secret` prints one. Prefer
    /// the environment variable: other users of this machine can read a command line.
    #[arg(long, env = "WAVESYNC_SECRET", hide_env_values = true)]
    secret: Option<GroupSecret>,
    /// The window title.
    #[arg(long, default_value = "WaveSync tasks")]
    title: String,
}

fn main() {
    // RUST_LOG as usual; warnings (the open-group notice among them) show by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut builder =
        WaveSyncDbBuilder::new(format!("sqlite:{}?mode=rwc", cli.db.display()), &cli.topic)
            .mdns(!cli.no_mdns);
    if let Some(secret) = cli.secret {
        builder = builder.group_secret(secret);
    }
    for address in cli.listen {
        builder = builder.listen_on(address);
    }
    for address in cli.peer {
        builder = builder.bootstrap(address);
    }
    let window = WindowBuilder::new()
        .with_title(cli.title)
        .with_inner_size(LogicalSize::new(460.0, 420.0));
    let launcher =
        LaunchBuilder::desktop().with_cfg(Config::new().with_window(window).with_menu(None));
    launch_with(
        builder,
        launcher,
        |db| async move {
            db.schema().register::<task::Entity>().sync().await?;
            Ok(())
        },
        App,
    );
}

/// A fresh task id: the application chooses keys, so two peers never mint the same one.
/// Milliseconds first, so the list (ordered by key) shows tasks in the order they were
/// added; random bits after, so two peers adding at the same moment still differ.
fn new_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("{millis:013x}-{:08x}", rand::random::<u32>())
}

#[allow(non_snake_case)]
fn App() -> Element {
    // A handle of this component's own: each event handler below takes a clone.
    let db = use_db();
    let tasks = use_synced_table::<task::Entity>(&db);
    let status = use_sync_status(&db);
    // What the input holds, as its `oninput` reports it. The input is not bound to it
    // (no `value: "{draft}"`): writing each keystroke back while the next is on its way
    // from the webview would drop that one when typing fast on a busy machine.
    let draft = use_signal(String::new);

    let peers = status.read().as_ref().map_or("starting…".to_owned(), |s| {
        format!(
            "{} peer(s) connected, {} behind",
            s.connected_peers, s.behind
        )
    });
    // One line per known peer: how it is connected, and a catch-up while one runs.
    let peer_lines: Vec<(String, String)> = status
        .read()
        .as_ref()
        .map(|s| s.peers.iter().map(peer_line).collect())
        .unwrap_or_default();
    let count = tasks.read().len();
    let error = tasks
        .read()
        .error()
        .map(|error| format!("could not load the tasks: {error}"));

    rsx! {
        style { {STYLE} }
        div { class: "bar",
            input {
                id: "new-task",
                autofocus: true,
                placeholder: "What needs doing? (Enter adds)",
                oninput: move |event| { let mut draft = draft; draft.set(event.value()) },
                onkeydown: {
                    let db = db.clone();
                    move |event: KeyboardEvent| {
                        let db = db.clone();
                        async move {
                            if event.key() == Key::Enter {
                                add(db, draft).await;
                            }
                        }
                    }
                },
            }
            button {
                onclick: {
                    let db = db.clone();
                    move |_| add(db.clone(), draft)
                },
                "Add"
            }
        }
        p { id: "status", class: "status", "{peers} · {count} task(s)" }
        if let Some(error) = error { p { class: "error", "{error}" } }
        ul {
            for task in tasks.read().iter().cloned() {
                li { key: "{task.id}", class: if task.completed { "done" } else { "" },
                    input {
                        r#type: "checkbox",
                        checked: task.completed,
                        onchange: {
                            let (task, db) = (task.clone(), db.clone());
                            move |_| {
                                let (task, db) = (task.clone(), db.clone());
                                async move {
                                    let toggled = task::ActiveModel {
                                        id: Set(task.id.clone()),
                                        completed: Set(!task.completed),
                                        ..Default::default()
                                    };
                                    if let Err(error) = toggled.update(&db).await {
                                        tracing::error!(%error, "could not toggle the task");
                                    }
                                }
                            }
                        },
                    }
                    span { class: "title",
                        "{task.title}"
                        // A word, not only the tick: screen readers and e2e.sh's OCR read it.
                        if task.completed { span { class: "mark", "done" } }
                    }
                    button {
                        class: "delete",
                        onclick: {
                            let (id, db) = (task.id.clone(), db.clone());
                            move |_| {
                                let (id, db) = (id.clone(), db.clone());
                                async move {
                                    if let Err(error) = task::Entity::delete_by_id(id).exec(&db).await {
                                        tracing::error!(%error, "could not delete the task");
                                    }
                                }
                            }
                        },
                        "✕"
                    }
                }
            }
        }
        // Under the list, each peer of the group this node knows.
        ul { class: "peers",
            for (id, line) in peer_lines {
                li { key: "{id}", "{line}" }
            }
        }
    }
}

/// What the peer list says of `peer`: the end of its id, direct or relayed (or offline),
/// how far behind it this node is, and the catch-up from it while one runs.
fn peer_line(peer: &PeerInfo) -> (String, String) {
    let id = peer.peer_id.to_string();
    // Peer ids are ASCII (base58); `get` keeps this panic-free all the same.
    let short = id.get(id.len().saturating_sub(6)..).unwrap_or(&id);
    let mut line = format!(
        "peer …{short}: {}",
        match peer.connection {
            Some(ConnectionKind::Direct) => "direct",
            Some(ConnectionKind::Relayed) => "relayed",
            None if peer.connected => "connected",
            None => "offline",
        }
    );
    if peer.behind > 0 {
        line.push_str(&format!(", {} behind", peer.behind));
    }
    if let Some(progress) = peer.catch_up {
        line.push_str(&format!(
            ", catching up {}/{}",
            progress.done, progress.total
        ));
    }
    (id, line)
}

/// Adds the task typed in `draft`, and empties the input.
async fn add(db: WaveSyncDb, mut draft: Signal<String>) {
    let title = draft.peek().trim().to_owned();
    if title.is_empty() {
        return;
    }
    draft.set(String::new());
    // The input is not bound to `draft` (see `App`): empty it in the page.
    let script = "document.getElementById('new-task').value = '';";
    if let Err(error) = dioxus::desktop::window().webview.evaluate_script(script) {
        tracing::warn!(%error, "could not empty the input");
    }
    let task = task::ActiveModel {
        id: Set(new_id()),
        title: Set(title),
        completed: Set(false),
    };
    if let Err(error) = task.insert(&db).await {
        tracing::error!(%error, "could not add the task");
    }
}

const STYLE: &str = r#"
body { font-family: sans-serif; margin: 16px; background: #fafafa; }
.bar { display: flex; gap: 8px; }
.bar input { flex: 1; font-size: 18px; padding: 6px; }
.bar button { font-size: 18px; }
.status { color: #555; font-size: 14px; }
ul { list-style: none; padding: 0; }
li { font-size: 20px; padding: 6px 0; border-bottom: 1px solid #ddd; display: flex; gap: 8px; align-items: center; }
li .title { flex: 1; }
li.done .title { color: #888; }
.mark { font-size: 15px; color: #186; margin-left: 10px; }
.error { color: #c33; font-size: 14px; }
.delete { border: none; background: none; color: #c33; font-size: 18px; }
.peers li { font-size: 14px; color: #555; border: none; padding: 2px 0; }
"#;
