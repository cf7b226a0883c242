//! `wavesync-server`: what a WaveSyncDB group runs on a public host so that members
//! behind home NATs find and reach each other.
//!
//! ```text
//! cargo run -p wavesync-server -- --listen /ip4/0.0.0.0/tcp/4001 [--secret HEX] \
//!     [--store PATH --topic TOPIC] [--key PATH]
//! ```
//!
//! It serves libp2p circuit relay v2 (limits sized for sync), rendezvous (members register
//! under a namespace derived from the group's topic and secret, so the server never learns
//! the topic), identify, AutoNAT and ping. It prints its peer id and the addresses to give
//! to members (`WaveSyncDbBuilder::relay`, `tasks --relay`).
//!
//! With `--store PATH` it is also an always-on member of the group: a `WaveSyncDb` on PATH
//! that registers no table, keeps the group's log and serves catch-up, so two devices that
//! are never online together still sync through it. It is a second peer in the same
//! process, reaching the relay over loopback like any member.
//!
//! In a private group (`--secret`) the relay's TCP transport is wrapped in the group's
//! pre-shared key: a peer without the secret cannot complete a connection to it, let alone
//! reserve, register or open a circuit. Relayed traffic between members is noise-encrypted
//! end to end inside the circuit; the server sees who talks to whom, when, and how much.
//! The server's identity is kept in `--key` (created on first start), so its address stays
//! the same across restarts.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod relay;
mod store;

use clap::Parser;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::io::Write as _;
use std::path::PathBuf;

/// Relay limits (see `--help`).
#[derive(Parser, Debug, Clone)]
pub struct Limits {
    /// Longest life of one relayed connection, in minutes (libp2p's default is 2).
    #[arg(long, default_value_t = 6 * 60)]
    pub max_circuit_minutes: u64,
    /// Most bytes one relayed connection may carry, in MiB (libp2p's default is 0.125).
    #[arg(long, default_value_t = 1024)]
    pub max_circuit_mib: u64,
    /// Most relayed connections at once.
    #[arg(long, default_value_t = 256)]
    pub max_circuits: usize,
    /// Most reservations (members reachable through this relay) at once.
    #[arg(long, default_value_t = 1024)]
    pub max_reservations: usize,
    /// Most open connections at once (members, circuits' ends, probes): beyond it new
    /// connections are refused, so a flood of dials cannot exhaust the host.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: u32,
}

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Relay, rendezvous and always-on member for WaveSyncDB groups"
)]
struct Cli {
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, required = true)]
    listen: Vec<Multiaddr>,
    /// This host's public address, if it is not one of the listen addresses (behind a
    /// cloud provider's 1:1 NAT), e.g. /ip4/203.0.113.7/tcp/4001 (repeatable).
    #[arg(long)]
    external: Vec<Multiaddr>,
    /// The group secret (64 hex digits): only members can connect. Also read from
    /// WAVESYNC_SECRET.
    #[arg(long, env = "WAVESYNC_SECRET", hide_env_values = true)]
    secret: Option<wavesyncdb::GroupSecret>,
    /// Also be an always-on member: keep the group's log in this SQLite file and serve
    /// catch-up (needs --topic).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The group's topic (with --store).
    #[arg(long)]
    topic: Option<String>,
    /// Where the server's identity is kept (created if missing).
    #[arg(long, default_value = "wavesync-server.key")]
    key: PathBuf,
    #[command(flatten)]
    limits: Limits,
}

/// Errors of the server's start, each saying what to do.
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("--store needs --topic: the always-on member must know which group it keeps")]
    StoreWithoutTopic,
    #[error(
        "the identity file {path}: {reason}; remove it to create a new identity (members must then be given the new address)"
    )]
    Key { path: PathBuf, reason: String },
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

fn load_or_create_key(path: &PathBuf) -> Result<libp2p::identity::Keypair, ServerError> {
    let error = |reason: String| ServerError::Key {
        path: path.clone(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| error(format!("not a key: {e}"))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let keypair = libp2p::identity::Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| error(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| error(e.to_string()))?;
            file.write_all(&bytes).map_err(|e| error(e.to_string()))?;
            Ok(keypair)
        }
        Err(err) => Err(error(err.to_string())),
    }
}

/// An address the always-on member in this process can dial the relay at.
fn loopback(address: &Multiaddr) -> Multiaddr {
    address
        .iter()
        .map(|protocol| match protocol {
            Protocol::Ip4(ip) if ip.is_unspecified() => {
                Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST)
            }
            Protocol::Ip6(ip) if ip.is_unspecified() => {
                Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST)
            }
            other => other,
        })
        .collect()
}

async fn serve(cli: Cli) -> Result<(), ServerError> {
    if cli.store.is_some() && cli.topic.is_none() {
        return Err(ServerError::StoreWithoutTopic);
    }
    let keypair = load_or_create_key(&cli.key)?;
    let peer_id = keypair.public().to_peer_id();
    let (swarm, bound) = relay::start(
        keypair,
        cli.secret.as_ref(),
        &cli.listen,
        &cli.external,
        &cli.limits,
    )
    .await?;
    match &cli.secret {
        Some(secret) => {
            tracing::info!(fingerprint = %secret.fingerprint(), "private group: only members can connect")
        }
        None => tracing::warn!("no --secret: any peer can use this relay"),
    }
    // The lines members and scripts read: the peer id, then one address per line.
    println!("peer id: {peer_id}");
    for address in bound.iter().chain(&cli.external) {
        println!(
            "listening: {}",
            address.clone().with(Protocol::P2p(peer_id))
        );
    }
    let _ = std::io::stdout().flush();
    let relay_for_store = bound
        .first()
        .map(|address| loopback(address).with(Protocol::P2p(peer_id)));
    let relay_task = tokio::spawn(relay::run(swarm));
    let _store = match (&cli.store, &cli.topic, relay_for_store) {
        (Some(path), Some(topic), Some(relay)) => {
            let db = store::open(path, topic, cli.secret.clone(), relay).await?;
            println!(
                "store peer id: {}",
                db.peer_id().map(|p| p.to_string()).unwrap_or_default()
            );
            let _ = std::io::stdout().flush();
            Some(db)
        }
        _ => None,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        _ = relay_task => tracing::warn!("the relay stopped"),
    }
    Ok(())
}

/// Runs the server with these command-line arguments (the first is the program name),
/// as the `wavesync-server` binary does; returns when it is stopped (Ctrl-C) or fails.
/// Installs a `tracing` subscriber that honours `RUST_LOG` (default `info`), on stderr.
pub fn run_cli<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
        .and_then(|runtime| runtime.block_on(serve(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wavesync-server: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_dials_the_relay_over_loopback() {
        let any: Multiaddr = "/ip4/0.0.0.0/tcp/4001".parse().unwrap();
        assert_eq!(loopback(&any).to_string(), "/ip4/127.0.0.1/tcp/4001");
        let fixed: Multiaddr = "/ip4/10.1.2.3/tcp/4001".parse().unwrap();
        assert_eq!(loopback(&fixed), fixed);
    }

    #[test]
    fn an_identity_is_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("wavesync-server-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let first = load_or_create_key(&dir).unwrap();
        let again = load_or_create_key(&dir).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        std::fs::write(&dir, b"not a key").unwrap();
        assert!(matches!(
            load_or_create_key(&dir),
            Err(ServerError::Key { .. })
        ));
        let _ = std::fs::remove_file(&dir);
    }
}
