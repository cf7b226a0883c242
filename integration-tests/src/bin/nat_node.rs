//! One node of the NAT test (`tests/suite/nat.rs`), run as a real process inside a network
//! namespace:
//!
//! - `nat_node server <wavesync-server arguments>`: the relay server, exactly as the
//!   `wavesync-server` binary runs it;
//! - `nat_node peer <db> <topic> <relay address> [secret]`: a member with the test
//!   entities, mDNS off, reaching the group through the relay. It reads commands from
//!   standard input (`add <id> <title>`, `seed <count> <prefix>`, `count`, `peers`,
//!   `synced`, `quit`) and prints one line per answer and per sync event.

use sea_orm::{EntityTrait, PaginatorTrait, Set, TransactionTrait};
use std::io::{BufRead, Write};
use std::time::Duration;
use wavesyncdb::{ConnectionKind, SyncEvent, WaveSyncDb, WaveSyncDbBuilder};
use wavesyncdb_integration_tests::task;

fn say(line: String) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn kind(kind: Option<ConnectionKind>) -> &'static str {
    match kind {
        Some(ConnectionKind::Direct) => "direct",
        Some(ConnectionKind::Relayed) => "relayed",
        _ => "none",
    }
}

async fn command(db: &WaveSyncDb, line: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["add", id, title @ ..] => {
            task::Entity::insert(task::ActiveModel {
                id: Set((*id).to_owned()),
                title: Set(title.join(" ")),
                completed: Set(false),
            })
            .exec(db)
            .await?;
            say(format!("added {id}"));
        }
        ["seed", count, prefix] => {
            let count: usize = count.parse()?;
            let mut next = 0;
            while next < count {
                let end = (next + 500).min(count);
                let txn = db.begin().await?;
                task::Entity::insert_many((next..end).map(|n| task::ActiveModel {
                    id: Set(format!("{prefix}{n:06}")),
                    title: Set(format!("row {n} of {prefix}")),
                    completed: Set(false),
                }))
                .exec(&txn)
                .await?;
                txn.commit().await?;
                next = end;
            }
            say(format!("seeded {count}"));
        }
        ["count"] => say(format!("count {}", task::Entity::find().count(db).await?)),
        ["peers"] => {
            let peers: Vec<String> = db
                .peers()
                .iter()
                .filter(|p| p.connected)
                .map(|p| format!("{}={}", p.peer_id, kind(p.connection)))
                .collect();
            say(format!("peers {}", peers.join(" ")));
        }
        ["synced"] => {
            // Whether a connected peer has applied every transaction this node wrote.
            let status = db.sync_status().await?;
            let ours = status
                .heads
                .iter()
                .find(|(origin, _)| *origin == status.node_id)
                .map_or(0, |h| h.1);
            let held = status.peers.iter().any(|p| {
                p.connected
                    && p.heads
                        .iter()
                        .any(|(origin, seq)| *origin == status.node_id && *seq >= ours)
            });
            say(format!("synced {}", if held { "yes" } else { "no" }));
        }
        ["quit"] => return Ok(false),
        _ => say(format!("unknown command {line:?}")),
    }
    Ok(true)
}

async fn peer(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [db_path, topic, relay, rest @ ..] = args else {
        return Err("usage: nat_node peer <db> <topic> <relay address> [secret]".into());
    };
    let mut builder = WaveSyncDbBuilder::new(format!("sqlite:{db_path}?mode=rwc"), topic.clone())
        .mdns(false)
        .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
        .catch_up_interval(Duration::from_secs(1))
        .relay(relay.parse()?);
    if let Some(secret) = rest.first() {
        builder = builder.group_secret(secret.parse()?);
    }
    let db = builder.build().await?;
    db.schema().register::<task::Entity>().sync().await?;
    let mut events = db.sync_events();
    let (lines_tx, lines) = async_channel::bounded::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send_blocking(line).is_err() {
                break;
            }
        }
    });
    say(format!(
        "ready {}",
        db.peer_id().map(|p| p.to_string()).unwrap_or_default()
    ));
    loop {
        let next = smol::future::or(async { Some(lines.recv().await.ok()) }, async {
            match events.recv().await {
                Some(Ok(event)) => {
                    match event {
                        SyncEvent::PeerConnected { peer, connection } => {
                            say(format!("event connected {peer} {}", kind(Some(connection))))
                        }
                        SyncEvent::ConnectionUpgraded { peer } => {
                            say(format!("event upgraded {peer}"))
                        }
                        SyncEvent::UpgradeFailed { peer } => {
                            say(format!("event upgrade-failed {peer}"))
                        }
                        SyncEvent::RelayReserved { relay } => {
                            say(format!("event reserved {relay}"))
                        }
                        SyncEvent::RelayLost { relay } => say(format!("event relay-lost {relay}")),
                        other => say(format!("event {other:?}")),
                    }
                    None
                }
                Some(Err(lagged)) => {
                    say(format!("event {lagged}"));
                    None
                }
                None => futures::future::pending().await,
            }
        })
        .await;
        match next {
            None => {}
            Some(None) => break,
            Some(Some(line)) => match command(&db, &line).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => say(format!("error {err}")),
            },
        }
    }
    db.shutdown().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((role, rest)) if role == "server" => wavesync_server::run_cli(
            std::iter::once("wavesync-server".to_owned()).chain(rest.iter().cloned()),
        ),
        Some((role, rest)) if role == "peer" => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .try_init();
            match smol::block_on(peer(rest)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("nat_node peer: {err}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: nat_node server <args> | nat_node peer <db> <topic> <relay> [secret]"
            );
            std::process::ExitCode::FAILURE
        }
    }
}
