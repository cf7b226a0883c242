//! `tasks status`: where this node stands, in words: its ids and addresses, each peer
//! (connected or not, direct or relayed, how far behind, its last error), a running
//! catch-up, and the last failed connections.

use crate::tasks::connection_name;
use wavesyncdb::WaveSyncDb;

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

pub(crate) async fn print(db: &WaveSyncDb) -> Result<(), wavesyncdb::Error> {
    let status = db.sync_status().await?;
    match status.peer_id {
        Some(peer_id) => println!("node {} (peer id {peer_id})", status.node_id),
        None => println!("node {} (no network)", status.node_id),
    }
    for address in &status.listening {
        println!("listening on {address}");
    }
    let committed: u64 = status
        .heads
        .iter()
        .find(|(origin, _)| *origin == status.node_id)
        .map_or(0, |(_, seq)| *seq);
    println!(
        "holds {} from {}; {committed} written here",
        count(
            status.heads.iter().map(|(_, seq)| *seq as usize).sum(),
            "transaction"
        ),
        count(status.heads.len(), "origin"),
    );
    if status.behind > 0 {
        println!(
            "behind: {} still to pull",
            count(status.behind as usize, "transaction")
        );
    } else {
        println!("behind: nothing to pull");
    }
    if let Some(progress) = status.catch_up {
        println!(
            "catching up: {}/{} transactions",
            progress.done, progress.total
        );
    }
    println!(
        "peers: {} connected of {} known",
        status.connected_peers,
        status.peers.len()
    );
    for peer in &status.peers {
        let state = if peer.connected {
            connection_name(peer.connection)
        } else {
            "not connected"
        };
        let holds_ours = peer
            .heads
            .iter()
            .find(|(origin, _)| *origin == status.node_id)
            .map_or(0, |(_, seq)| *seq);
        let mut line = format!(
            "  {} {state}, behind {}, holds {holds_ours}/{committed} of ours",
            peer.peer_id, peer.behind
        );
        if peer.banned {
            line.push_str(", banned for invalid messages");
        }
        if let Some(progress) = peer.catch_up {
            line.push_str(&format!(", catch-up {}/{}", progress.done, progress.total));
        }
        if let Some(error) = &peer.last_error {
            line.push_str(&format!("; last error: {error}"));
        }
        println!("{line}");
    }
    if !status.connection_failures.is_empty() {
        println!("recent connection failures:");
        for failure in &status.connection_failures {
            println!("  {failure}");
        }
    }
    Ok(())
}
