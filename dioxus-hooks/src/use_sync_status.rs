use crate::watch::{next_change, sleep};
use dioxus::prelude::*;
use futures::future::{Either, select};
use std::borrow::Borrow;
use std::pin::pin;
use std::time::Duration;
use wavesyncdb::{SyncStatus, WaveSyncDb};

/// How often [`use_sync_status`] asks the engine where this node stands: peers connect
/// and disconnect without a change notification.
pub const SYNC_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// A signal of where this node stands in its group: connected peers
/// ([`SyncStatus::connected_peers`]), how many transactions it still lacks
/// ([`SyncStatus::behind`]), and per peer details. `None` until the first answer.
///
/// It refreshes every [`SYNC_STATUS_INTERVAL`] and after every change (a remote change
/// moves the heads), and re-renders only when the status differs. A failed refresh is
/// logged and the last status stays shown.
///
/// # Example
///
/// ```rust,no_run
/// use dioxus::prelude::*;
/// use wavesyncdb_dioxus::{use_db, use_sync_status};
///
/// #[component]
/// fn StatusBar() -> Element {
///     let status = use_sync_status(use_db());
///     match status.read().as_ref() {
///         Some(s) => rsx! { p { "{s.connected_peers} peers, {s.behind} behind" } },
///         None => rsx! { p { "starting…" } },
///     }
/// }
/// ```
#[track_caller]
pub fn use_sync_status(db: impl Borrow<WaveSyncDb>) -> ReadSignal<Option<SyncStatus>> {
    let mut status = use_signal(|| None);
    let db = db.borrow();
    use_hook(move || {
        let db = db.clone();
        let mut changes = db.subscribe();
        spawn(async move {
            loop {
                match db.sync_status().await {
                    Ok(now) => {
                        if status.peek().as_ref() != Some(&now) {
                            status.set(Some(now));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the sync status; keeping the last one");
                    }
                }
                let timer_first = {
                    let tick = pin!(sleep(SYNC_STATUS_INTERVAL));
                    let change = pin!(next_change(&mut changes, |_| true));
                    matches!(select(tick, change).await, Either::Left(_))
                };
                if timer_first {
                    // What the bus holds now is covered by the refresh about to run.
                    changes.drain();
                }
            }
        });
        ReadSignal::from(status)
    })
}
