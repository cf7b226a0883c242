//! `tasks watch`: prints the list whenever it changes (here or on a peer) and what
//! happens to the connections, and runs the commands typed on standard input.

use crate::progress::CatchUpBar;
use crate::tasks::{connection_name, print_tasks, run_command};
use std::time::Duration;
use wavesyncdb::{SyncEvent, WaveSyncDb};

/// One line for a sync event, or `None` for the ones not worth a line.
fn describe(event: &SyncEvent) -> Option<String> {
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
        SyncEvent::ConnectionFailed(failure) => failure.to_string(),
        SyncEvent::CatchUpStarted { peer, total } => {
            format!("catching up {total} transactions from {peer}")
        }
        SyncEvent::CatchUpProgress { done, total, .. } => format!("catch-up {done}/{total}"),
        SyncEvent::CatchUpFinished { done, .. } => format!("caught up ({done} transactions)"),
        _ => return None,
    })
}

pub(crate) async fn watch(db: &WaveSyncDb) -> Result<(), sea_orm::DbErr> {
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
    let mut bar = CatchUpBar::new();
    let mut peers = 0;
    print_tasks(db).await?;
    loop {
        enum Next {
            Line(Option<String>),
            Changed,
            Event(Option<Result<SyncEvent, wavesyncdb::EventsLagged>>),
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
                // On a terminal the bar shows catch-ups; elsewhere they are lines.
                let on_bar = bar.on_event(&event) && !bar.is_hidden();
                if !on_bar && let Some(line) = describe(&event) {
                    bar.suspend(|| println!("* {line}"));
                }
                if matches!(event, SyncEvent::ConnectionUpgraded { .. }) {
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
    bar.finish();
    db.shutdown().await;
    Ok(())
}
