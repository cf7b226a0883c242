//! The catch-up progress bar: sync events drive an `indicatif` bar on standard error
//! while catch-ups run. Where standard error is not a terminal the bar draws nothing, and
//! callers print progress as lines instead ([`CatchUpBar::is_hidden`]).

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use wavesyncdb::{PeerId, SyncEvent, WaveSyncDb};

/// One bar for all running catch-ups (their sums), shown while any runs.
pub(crate) struct CatchUpBar {
    bar: Option<ProgressBar>,
    running: HashMap<PeerId, (u64, u64)>,
    hidden: bool,
}

impl CatchUpBar {
    pub(crate) fn new() -> CatchUpBar {
        CatchUpBar {
            bar: None,
            running: HashMap::new(),
            hidden: ProgressDrawTarget::stderr().is_hidden(),
        }
    }

    /// Whether the bar draws nothing (standard error is not a terminal).
    pub(crate) fn is_hidden(&self) -> bool {
        self.hidden
    }

    /// Takes a sync event; true if it was a catch-up event (shown on the bar).
    pub(crate) fn on_event(&mut self, event: &SyncEvent) -> bool {
        match event {
            SyncEvent::CatchUpStarted { peer, total } => {
                self.running.insert(*peer, (0, *total));
            }
            SyncEvent::CatchUpProgress { peer, done, total } => {
                self.running.insert(*peer, (*done, *total));
            }
            SyncEvent::CatchUpFinished { peer, .. } => {
                self.running.remove(peer);
            }
            _ => return false,
        }
        self.draw();
        true
    }

    fn draw(&mut self) {
        if self.running.is_empty() {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
            return;
        }
        let (done, total) = self
            .running
            .values()
            .fold((0u64, 0u64), |(d, t), (done, total)| {
                (d.saturating_add(*done), t.saturating_add(*total))
            });
        let peers = self.running.len();
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "catching up {msg} [{bar:30}] {pos}/{len} transactions ({eta} left)",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        bar.set_message(if peers == 1 {
            "from 1 peer".to_owned()
        } else {
            format!("from {peers} peers")
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    /// Runs `print` with the bar out of the way, so lines do not mix with it.
    pub(crate) fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(&mut self) {
        self.running.clear();
        self.draw();
    }
}

/// Waits up to `seconds` until this node has caught up with a peer, showing the catch-up
/// on a bar; false if no peer was caught up with in time.
pub(crate) async fn caught_up_within(db: &WaveSyncDb, seconds: u64) -> bool {
    let mut events = db.sync_events();
    let mut bar = CatchUpBar::new();
    let caught_up = crate::within(
        seconds,
        smol::future::or(async { db.wait_until_caught_up().await.is_ok() }, async {
            while let Some(event) = events.next().await {
                if let Ok(event) = event {
                    bar.on_event(&event);
                }
            }
            // The engine stopped; the waiter says so too.
            futures::future::pending::<bool>().await
        }),
    )
    .await
    .unwrap_or(false);
    bar.finish();
    caught_up
}
