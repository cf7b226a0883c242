//! `tasks`: a task list that syncs with every peer of its topic, on the LAN by mDNS,
//! through bootstrap addresses, or beyond the LAN through a `wavesync-server` relay
//! (`--relay`).
//!
//! - `tasks add "Buy milk"` adds a task and waits until a peer has it;
//! - `tasks list` prints the tasks (after catching up with the peers it finds);
//! - `tasks watch` prints the list whenever it changes, here or on a peer, and reads
//!   commands (`add <title>`, `done <id>`, `rm <id>`, `list`, `quit`) from standard input;
//! - `tasks demo` starts two peers as two processes on loopback and shows them converge.

mod demo;

use clap::{Parser, Subcommand};
use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use std::time::{Duration, Instant};
use wavesyncdb::{Multiaddr, WaveSyncDb, WaveSyncDbBuilder};

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
#[command(version, about = "A task list that syncs with every peer of its topic")]
struct Cli {
    /// The SQLite database file.
    #[arg(long, default_value = "tasks.db")]
    db: std::path::PathBuf,
    /// The group topic: peers of the same topic sync.
    #[arg(long, default_value = "wavesync-tasks")]
    topic: String,
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Address of a peer to connect to (repeatable), e.g. /ip4/192.168.1.7/tcp/4001.
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// A relay and rendezvous server (repeatable), as `wavesync-server` prints it, e.g.
    /// /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...: reach members behind other NATs.
    #[arg(long)]
    relay: Vec<Multiaddr>,
    /// Do not discover peers on the LAN by mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// The group secret (64 hex digits, from `tasks secret`): only peers with it can
    /// connect. Also read from the WAVESYNC_SECRET environment variable.
    #[arg(long, env = "WAVESYNC_SECRET", hide_env_values = true)]
    secret: Option<wavesyncdb::GroupSecret>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add a task, then wait (up to --wait seconds) until a peer has it.
    Add {
        /// The task's title.
        title: Vec<String>,
        /// Seconds to wait for a peer.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Print the tasks, after catching up (up to --wait seconds) with the peers found.
    List {
        /// Seconds to wait for peers.
        #[arg(long, default_value_t = 3)]
        wait: u64,
    },
    /// Print the tasks whenever they change; read commands from standard input.
    Watch,
    /// Start two peers as two processes on loopback and show them converge.
    Demo,
    /// Print a fresh group secret to share with the other members.
    Secret,
}

async fn open(cli: &Cli) -> Result<WaveSyncDb, wavesyncdb::Error> {
    let mut builder = WaveSyncDbBuilder::new(
        format!("sqlite:{}?mode=rwc", cli.db.display()),
        cli.topic.clone(),
    )
    .mdns(!cli.no_mdns)
    .catch_up_interval(Duration::from_secs(1));
    for address in &cli.listen {
        builder = builder.listen_on(address.clone());
    }
    for address in &cli.peer {
        builder = builder.bootstrap(address.clone());
    }
    for address in &cli.relay {
        builder = builder.relay(address.clone());
    }
    if let Some(secret) = &cli.secret {
        builder = builder.group_secret(secret.clone());
    }
    let db = builder.build().await?;
    db.schema().register::<task::Entity>().sync().await?;
    Ok(db)
}

fn new_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

async fn print_tasks(db: &WaveSyncDb) -> Result<(), wavesyncdb::Error> {
    let tasks = task::Entity::find()
        .order_by_asc(task::Column::Title)
        .all(db)
        .await?;
    let connected: Vec<_> = db.peers().into_iter().filter(|p| p.connected).collect();
    let peers = connected.len();
    println!(
        "tasks ({} peer{} connected):",
        peers,
        if peers == 1 { "" } else { "s" }
    );
    for peer in &connected {
        println!(
            "  peer {} {}",
            peer.peer_id,
            connection_name(peer.connection)
        );
    }
    // A long list is cut: the count says how many there are.
    const SHOWN: usize = 50;
    for t in tasks.iter().take(SHOWN) {
        println!(
            "  [{}] {}  {}",
            if t.completed { "x" } else { " " },
            t.id,
            t.title
        );
    }
    if tasks.len() > SHOWN {
        println!(
            "  ... and {} more ({} tasks)",
            tasks.len() - SHOWN,
            tasks.len()
        );
    }
    if tasks.is_empty() {
        println!("  (none)");
    }
    Ok(())
}

fn connection_name(kind: Option<wavesyncdb::ConnectionKind>) -> &'static str {
    match kind {
        Some(wavesyncdb::ConnectionKind::Direct) => "direct",
        Some(wavesyncdb::ConnectionKind::Relayed) => "relayed",
        _ => "connecting",
    }
}

/// One line for a sync event, or `None` for the ones not worth a line.
fn describe(event: &wavesyncdb::SyncEvent) -> Option<String> {
    use wavesyncdb::SyncEvent;
    Some(match event {
        SyncEvent::PeerConnected { peer, connection } => {
            format!(
                "peer {peer} connected ({})",
                connection_name(Some(*connection))
            )
        }
        SyncEvent::PeerDisconnected { peer } => format!("peer {peer} left"),
        SyncEvent::ConnectionUpgraded { peer } => format!("peer {peer} now direct (hole punched)"),
        SyncEvent::UpgradeFailed { peer } => {
            format!("peer {peer}: hole punching failed, staying relayed")
        }
        SyncEvent::RelayReserved { relay } => format!("reachable through relay {relay}"),
        SyncEvent::RelayLost { relay } => format!("lost relay {relay}; reconnecting"),
        SyncEvent::ReachabilityChanged(reachability) => format!("reachability: {reachability:?}"),
        SyncEvent::CatchUpStarted { peer, total } => {
            format!("catching up {total} transactions from {peer}")
        }
        SyncEvent::CatchUpProgress { done, total, .. } => format!("catch-up {done}/{total}"),
        SyncEvent::CatchUpFinished { done, .. } => format!("caught up ({done} transactions)"),
        _ => return None,
    })
}

/// Waits until `check` holds or `seconds` pass.
async fn wait_for<F, Fut>(seconds: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        smol::Timer::after(Duration::from_millis(100)).await;
    }
    false
}

/// Whether some connected peer has applied everything this node wrote.
async fn a_peer_has_ours(db: &WaveSyncDb) -> bool {
    let Ok(status) = db.sync_status().await else {
        return false;
    };
    let ours = status
        .heads
        .iter()
        .find(|(origin, _)| *origin == status.node_id)
        .map_or(0, |h| h.1);
    status.peers.iter().any(|p| {
        p.connected
            && p.heads
                .iter()
                .any(|(origin, seq)| *origin == status.node_id && *seq >= ours)
    })
}

async fn run_command(db: &WaveSyncDb, line: &str) -> Result<bool, wavesyncdb::Error> {
    let (verb, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let rest = rest.trim();
    match verb {
        "" => {}
        "add" if !rest.is_empty() => {
            task::ActiveModel {
                id: Set(new_id()),
                title: Set(rest.to_owned()),
                completed: Set(false),
            }
            .insert(db)
            .await?;
        }
        "done" | "rm" if !rest.is_empty() => {
            let matching = task::Column::Id.starts_with(rest);
            let changed = if verb == "done" {
                task::Entity::update_many()
                    .col_expr(task::Column::Completed, Expr::value(true))
                    .filter(matching)
                    .exec(db)
                    .await?
                    .rows_affected
            } else {
                task::Entity::delete_many()
                    .filter(matching)
                    .exec(db)
                    .await?
                    .rows_affected
            };
            if changed == 0 {
                println!("no task id starts with {rest:?}");
            }
        }
        "list" => print_tasks(db).await?,
        "quit" | "exit" => return Ok(false),
        _ => println!("commands: add <title> | done <id> | rm <id> | list | quit"),
    }
    Ok(true)
}

async fn watch(db: &WaveSyncDb) -> Result<(), wavesyncdb::Error> {
    for address in db.listening_addresses() {
        println!("listening on {address}");
    }
    let (lines_tx, lines) = async_channel::bounded::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.send_blocking(line).is_err() {
                break;
            }
        }
    });
    // Subscribe before the first print: no change can fall in between.
    let mut changes = db.subscribe();
    let mut events = db.sync_events();
    let mut events_open = true;
    let mut peers = 0;
    print_tasks(db).await?;
    loop {
        enum Next {
            Line(Option<String>),
            Changed,
            Event(Option<Result<wavesyncdb::SyncEvent, wavesyncdb::EventsLagged>>),
            Tick,
        }
        let next = smol::future::or(
            async { Next::Line(lines.recv().await.ok()) },
            smol::future::or(
                async {
                    let _ = changes.recv().await;
                    Next::Changed
                },
                smol::future::or(
                    async {
                        if events_open {
                            Next::Event(events.recv().await)
                        } else {
                            smol::future::pending().await
                        }
                    },
                    async {
                        smol::Timer::after(Duration::from_millis(500)).await;
                        Next::Tick
                    },
                ),
            ),
        )
        .await;
        match next {
            Next::Line(None) => break,
            Next::Line(Some(line)) => {
                if !run_command(db, &line).await? {
                    break;
                }
            }
            Next::Changed => {
                changes.drain();
                print_tasks(db).await?;
            }
            Next::Event(Some(Ok(event))) => {
                if let Some(line) = describe(&event) {
                    println!("* {line}");
                }
                if matches!(event, wavesyncdb::SyncEvent::ConnectionUpgraded { .. }) {
                    print_tasks(db).await?;
                }
            }
            Next::Event(Some(Err(lagged))) => println!("* {lagged}"),
            // The engine stopped: only local edits from now on.
            Next::Event(None) => events_open = false,
            Next::Tick => {
                let now = db.peers().iter().filter(|p| p.connected).count();
                if now != peers {
                    peers = now;
                    print_tasks(db).await?;
                }
            }
        }
    }
    db.shutdown().await;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => return demo::run(),
        Command::Secret => {
            let secret = WaveSyncDb::generate_secret();
            println!("{}", secret.to_hex());
            eprintln!(
                "fingerprint {}; give the secret to every member (e.g. WAVESYNC_SECRET=...) over a channel you trust",
                secret.fingerprint()
            );
            return Ok(());
        }
        _ => {}
    }
    smol::block_on(async {
        let db = open(&cli).await?;
        match &cli.command {
            Command::Add { title, wait } => {
                let title = title.join(" ");
                if title.trim().is_empty() {
                    return Err("give the task a title: tasks add <title>".into());
                }
                run_command(&db, &format!("add {title}")).await?;
                if wait_for(*wait, || a_peer_has_ours(&db)).await {
                    println!("added; a peer has it");
                } else {
                    println!(
                        "added locally; no peer confirmed it yet (it syncs when one connects)"
                    );
                }
            }
            Command::List { wait } => {
                wait_for(*wait, || async {
                    db.sync_status().await.is_ok_and(|s| {
                        s.behind == 0 && s.peers.iter().any(|p| p.connected && !p.heads.is_empty())
                    })
                })
                .await;
                print_tasks(&db).await?;
            }
            Command::Watch => watch(&db).await?,
            Command::Demo | Command::Secret => {}
        }
        db.shutdown().await;
        Ok(())
    })
}
