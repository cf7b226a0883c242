//! Peers for the benchmark: in this process (for latency and fan-out, where every peer
//! is watched through its notifications), or as a child OS process (for throughput and
//! catch-up, so that its memory is its own and it can go offline and come back).
//!
//! A child peer is this same binary run as `wavesync-bench peer`; it is driven by lines
//! on its stdin and answers on its stdout.

use crate::Result;
use crate::entities::{item, ping};
use sea_orm::{ActiveModelTrait, Set};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wavesyncdb::{Multiaddr, NodeId, PeerId, WaveSyncDb, WaveSyncDbBuilder};

/// The SQLite URL of a database file.
pub fn url(path: &Path) -> String {
    format!("sqlite:{}?mode=rwc", path.display())
}

/// Opens a synced peer listening on loopback (mDNS off), connecting to `bootstrap`.
pub async fn start(path: &Path, topic: &str, bootstrap: &[Multiaddr]) -> Result<WaveSyncDb> {
    let mut builder = WaveSyncDbBuilder::new(url(path), topic)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
        .mdns(false);
    for address in bootstrap {
        builder = builder.bootstrap(address.clone());
    }
    let db = builder.build().await?;
    db.schema()
        .register::<item::Entity>()
        .register::<ping::Entity>()
        .sync()
        .await?;
    Ok(db)
}

/// The address peers can bootstrap to.
pub fn address(db: &WaveSyncDb) -> Result<Multiaddr> {
    db.listening_addresses()
        .into_iter()
        .next()
        .ok_or_else(|| "the peer listens nowhere".into())
}

/// Waits until `db` has `count` connected peers.
pub async fn wait_connected(db: &WaveSyncDb, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.peers().iter().filter(|p| p.connected).count() < count {
        if Instant::now() > deadline {
            return Err(format!("fewer than {count} peers connected after 30 s").into());
        }
        smol::Timer::after(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Writes a ping row on `db` and returns this node's head afterwards.
pub async fn ping(db: &WaveSyncDb, id: i64) -> Result<u64> {
    ping::ActiveModel { id: Set(id) }.insert(db).await?;
    Ok(db.head(db.node_id()).await?)
}

/// Pings from `writer` until a ping reaches every peer of `readers` live (within 300 ms):
/// then the gossip mesh is up and a measurement measures gossip, not catch-up.
pub async fn warm_up(
    writer: &WaveSyncDb,
    readers: &[&WaveSyncDb],
    next_ping: &mut i64,
) -> Result<()> {
    for _ in 0..100 {
        *next_ping += 1;
        let seq = ping(writer, *next_ping).await?;
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            let mut all = true;
            for reader in readers {
                if reader.head(writer.node_id()).await? < seq {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                break;
            }
            smol::Timer::after(Duration::from_millis(2)).await;
        }
    }
    Err("writes did not reach the other peers live after 100 tries".into())
}

/// A peer running as a child process.
pub struct ChildPeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<(Instant, String)>,
    /// Where it listens.
    pub address: Multiaddr,
}

impl ChildPeer {
    /// Starts `wavesync-bench peer` on the database at `path`.
    pub fn spawn(path: &Path, topic: &str, bootstrap: &Multiaddr) -> Result<ChildPeer> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["peer", "--db"])
            .arg(path)
            .args(["--topic", topic, "--bootstrap", &bootstrap.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let mut peer = ChildPeer {
            child,
            stdin,
            lines,
            address: Multiaddr::empty(),
        };
        let (_, listening) = peer.expect("listening ", Duration::from_secs(30))?;
        peer.address = listening.parse()?;
        Ok(peer)
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The next line starting with `prefix` (the rest of it), and when it arrived.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> Result<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("the child peer did not say `{prefix}` within {timeout:?}"))?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok((at, rest.to_owned()));
            }
        }
    }

    /// Asks the peer to report when it has applied `origin`'s transactions up to `seq`.
    pub fn wait_for(&mut self, origin: &PeerId, seq: u64, timeout: Duration) -> Result<()> {
        self.send(&format!("wait {origin} {seq} {}", timeout.as_millis()))
    }

    /// Its resident memory now and at its peak, in bytes.
    pub fn memory(&self) -> Result<(u64, u64)> {
        memory_of(&format!("/proc/{}/status", self.child.id()))
    }

    /// Asks for its sync counters: (bytes received, catch-up operations received).
    pub fn stats(&mut self) -> Result<(u64, u64)> {
        self.send("stats")?;
        let (_, stats) = self.expect("stats ", Duration::from_secs(10))?;
        let mut numbers = stats.split_whitespace().map(str::parse::<u64>);
        match (numbers.next(), numbers.next()) {
            (Some(Ok(bytes)), Some(Ok(operations))) => Ok((bytes, operations)),
            _ => Err(format!("unreadable stats: {stats}").into()),
        }
    }

    /// Stops the peer and waits for it to exit.
    pub fn stop(mut self) -> Result<()> {
        self.send("quit")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the child peer exited with {status}").into())
                };
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                return Err("the child peer did not stop within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildPeer {
    fn drop(&mut self) {
        // After `stop` this finds the process gone; after an error it ends it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (VmRSS, VmHWM) in bytes from a `/proc/<pid>/status` file.
pub fn memory_of(status_file: &str) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(status_file)?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => Err(format!("no VmRSS/VmHWM in {status_file}").into()),
    }
}

/// The `peer` subcommand: a peer driven by stdin.
///
/// Commands: `wait <peer id> <seq> <timeout ms>` answers `reached <ms>` once the origin's
/// head here is at least `seq` (or `timeout`); `stats` answers
/// `stats <bytes received> <catch-up operations received>`; `quit` (or end of input) stops.
pub async fn run_child(db_path: &Path, topic: &str, bootstrap: Multiaddr) -> Result<()> {
    let db = start(db_path, topic, &[bootstrap]).await?;
    println!("listening {}", address(&db)?);
    let (tx, commands) = async_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(std::result::Result::ok) {
            if tx.send_blocking(line).is_err() {
                break;
            }
        }
    });
    while let Ok(line) = commands.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["wait", peer, seq, timeout_ms] => {
                let origin: PeerId = peer.parse()?;
                let origin = NodeId::from_peer_id_bytes(&origin.to_bytes());
                let seq: u64 = seq.parse()?;
                let started = Instant::now();
                let deadline = started + Duration::from_millis(timeout_ms.parse()?);
                loop {
                    if db.head(origin).await? >= seq {
                        println!("reached {}", started.elapsed().as_millis());
                        break;
                    }
                    if Instant::now() > deadline {
                        println!("timeout");
                        break;
                    }
                    smol::Timer::after(Duration::from_millis(2)).await;
                }
            }
            ["stats"] => {
                let metrics = db.metrics();
                println!(
                    "stats {} {}",
                    metrics.bytes_received, metrics.catch_up_operations_received
                );
            }
            ["quit"] => break,
            _ => eprintln!("unknown command: {line}"),
        }
    }
    db.shutdown().await;
    Ok(())
}

/// Inserts rows `ids` as `insert_many` batches of 100 rows (a transaction each).
pub async fn insert_rows(
    db: &impl sea_orm::ConnectionTrait,
    ids: std::ops::Range<i64>,
) -> Result<()> {
    use sea_orm::EntityTrait;
    for first in ids.clone().step_by(100) {
        let batch = first..Ord::min(first + 100, ids.end);
        item::Entity::insert_many(batch.map(item::new))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Adds 1 to the value of rows `ids`, 100 rows per statement (a transaction each).
pub async fn bump_values(
    db: &impl sea_orm::ConnectionTrait,
    ids: std::ops::Range<i64>,
) -> Result<()> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    for first in ids.clone().step_by(100) {
        let last = Ord::min(first + 99, ids.end - 1);
        item::Entity::update_many()
            .col_expr(
                item::Column::Value,
                ExprTrait::add(Expr::col(item::Column::Value), 1),
            )
            .filter(item::Column::Id.between(first, last))
            .exec(db)
            .await?;
    }
    Ok(())
}
