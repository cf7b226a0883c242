//! `tasks`: a task list that syncs with every peer of its topic, on the LAN by mDNS,
//! through bootstrap addresses, or beyond the LAN through a `wavesync-server` relay
//! (`--relay`).
//!
//! - `tasks add "Buy milk"` adds a task and waits until a peer has it;
//! - `tasks list` prints the tasks (after catching up with the peers it finds);
//! - `tasks status` prints where this node stands: peers, direct or relayed, how far
//!   behind, the last connection errors;
//! - `tasks watch` prints the list whenever it changes, here or on a peer, and reads
//!   commands (`add <title>`, `done <id>`, `rm <id>`, `list`, `quit`) from standard input;
//! - `tasks demo` starts two peers as two processes on loopback and shows them converge;
//! - `tasks secret` prints a fresh group secret.
//!
//! Options go before or after the command (`tasks list --db work.db`); `-v` shows the
//! engine's logs (`-vv` more), and `RUST_LOG` overrides it.

mod demo;
mod progress;
mod status;
mod tasks;
mod watch;

use clap::{ArgAction, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use wavesyncdb::{GroupSecret, Multiaddr, WaveSyncDb, WaveSyncDbBuilder};

#[derive(Parser, Debug)]
#[command(version, about = "A task list that syncs with every peer of its topic")]
struct Cli {
    /// The SQLite database file (created if missing; its directory must exist).
    #[arg(long, global = true, default_value = "tasks.db")]
    db: std::path::PathBuf,
    /// The group topic: peers of the same topic sync.
    #[arg(long, global = true, default_value = "wavesync-tasks")]
    topic: String,
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, global = true)]
    listen: Vec<Multiaddr>,
    /// Address of a peer to connect to (repeatable), e.g. /ip4/192.168.1.7/tcp/4001.
    #[arg(long, global = true)]
    peer: Vec<Multiaddr>,
    /// A relay and rendezvous server (repeatable), as `wavesync-server` prints it, e.g.
    /// /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...: reach members behind other NATs.
    #[arg(long, global = true)]
    relay: Vec<Multiaddr>,
    /// Do not discover peers on the LAN by mDNS.
    #[arg(long, global = true)]
    no_mdns: bool,
    /// The group secret (64 hex digits, from `tasks secret`): only peers with it can
    /// connect. Also read from the WAVESYNC_SECRET environment variable.
    #[arg(long, global = true, env = "WAVESYNC_SECRET", hide_env_values = true,
          value_parser = parse_secret)]
    secret: Option<GroupSecret>,
    /// Show the engine's logs: -v for what it does, -vv for details (RUST_LOG overrides).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
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
    /// Print where this node stands: peers, direct or relayed, how far behind, the last
    /// connection errors (after up to --wait seconds to find peers).
    Status {
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

/// `--secret` as a group secret, with a hint that names the command that makes one.
fn parse_secret(text: &str) -> Result<GroupSecret, String> {
    text.parse::<GroupSecret>().map_err(|_| {
        "not a group secret: it is 64 hexadecimal digits (32 bytes); make one with \
         `tasks secret` and give the same one to every member"
            .to_owned()
    })
}

/// Logs to standard error: warnings by default (an open group's warning shows), more
/// with `-v`; `RUST_LOG` wins when set.
fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// An error for the user: what happened, and what to do.
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<wavesyncdb::Error> for Failure {
    fn from(err: wavesyncdb::Error) -> Failure {
        Failure(err.to_string())
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(err: sea_orm::DbErr) -> Failure {
        Failure(format!("database error: {err}"))
    }
}

async fn open(cli: &Cli) -> Result<WaveSyncDb, Failure> {
    let path = &cli.db;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(Failure(format!(
            "cannot open the database {}: the directory {} does not exist; create it \
             (mkdir -p {}) or give another --db",
            path.display(),
            dir.display(),
            dir.display()
        )));
    }
    let mut builder = WaveSyncDbBuilder::new(
        format!("sqlite:{}?mode=rwc", path.display()),
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
    let db = match builder.build().await {
        Ok(db) => db,
        Err(wavesyncdb::Error::Db(err)) => {
            return Err(Failure(format!(
                "cannot open the database {}: {err}; check that the file is a SQLite \
                 database this user may write",
                path.display()
            )));
        }
        Err(err @ wavesyncdb::Error::Listen { .. }) => {
            return Err(Failure(format!("{err}\n(the address comes from --listen)")));
        }
        Err(err) => return Err(err.into()),
    };
    db.schema().register::<tasks::task::Entity>().sync().await?;
    Ok(db)
}

/// `future`'s output, or `None` after `seconds`.
async fn within<T>(seconds: u64, future: impl std::future::Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(future.await) }, async {
        smol::Timer::after(Duration::from_secs(seconds)).await;
        None
    })
    .await
}

/// Says (on standard error) that what follows may be stale.
fn not_caught_up(wait: u64) {
    eprintln!(
        "note: not caught up with any peer within {wait} s (none found, or still pulling): \
         this is what this node holds; --wait waits longer"
    );
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let db = open(cli).await?;
    match &cli.command {
        Command::Add { title, wait } => {
            let title = title.join(" ");
            if title.trim().is_empty() {
                return Err(Failure("give the task a title: tasks add <title>".into()));
            }
            tasks::run_command(&db, &format!("add {title}")).await?;
            match within(*wait, db.wait_until_replicated(1)).await {
                Some(Ok(_)) => println!("added; a peer has it"),
                // Committed here either way: it syncs on a later run.
                Some(Err(err)) => println!("added locally; no peer confirmed it ({err})"),
                None => {
                    println!("added locally; no peer confirmed it yet (it syncs when one connects)")
                }
            }
        }
        Command::List { wait } => {
            if !progress::caught_up_within(&db, *wait).await {
                not_caught_up(*wait);
            }
            tasks::print_tasks(&db).await?;
        }
        Command::Status { wait } => {
            if !progress::caught_up_within(&db, *wait).await {
                not_caught_up(*wait);
            }
            status::print(&db).await?;
        }
        Command::Watch => watch::watch(&db).await?,
        Command::Demo | Command::Secret => {}
    }
    db.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    match cli.command {
        Command::Demo => {
            return match demo::run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Secret => {
            let secret = WaveSyncDb::generate_secret();
            println!("{}", secret.to_hex());
            eprintln!(
                "fingerprint {}; give the secret to every member (--secret or \
                 WAVESYNC_SECRET=...) over a channel you trust",
                secret.fingerprint()
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    match smol::block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
