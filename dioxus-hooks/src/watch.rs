//! Waiting for the next relevant change, and coalescing bursts into one reload.
//!
//! Owns the one policy every hook shares: wake on a notification the hook cares about
//! (or on a lag, which may have hidden one), then keep absorbing what follows until the
//! bus is quiet for [`QUIET`] or [`MAX_DELAY`] has passed. A burst of a thousand remote
//! writes thus costs a handful of reloads, and a single change is shown within `QUIET`.
//! It never reads the database: the hooks reload, the bus only says when.
//!
//! Timers follow the crate's runtime feature: tokio's with `runtime-tokio` (the desktop
//! renderer runs on tokio), otherwise `async-io`'s, which runs on its own reactor thread
//! and so works under any executor.

use futures::future::{Either, select};
use std::pin::pin;
use std::time::{Duration, Instant};
use wavesyncdb::{ChangeNotification, ChangeSubscription};

/// How long the bus must stay quiet after a change before the hook reloads.
pub(crate) const QUIET: Duration = Duration::from_millis(30);

/// The longest a hook waits after the first change of a burst before it reloads anyway,
/// so a long stream of changes still shows progress a few times a second.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(250);

/// Waits until a notification that `relevant` accepts arrives (or the subscription
/// lagged), then until the burst around it settles.
pub(crate) async fn next_change(
    subscription: &mut ChangeSubscription,
    relevant: impl Fn(&ChangeNotification) -> bool,
) {
    loop {
        match subscription.recv().await {
            Ok(notification) if relevant(&notification) => break,
            Ok(_) => {}
            Err(lagged) => {
                // Missed notifications may have touched what the hook shows: reload.
                tracing::debug!(%lagged, "change subscription lagged; reloading");
                break;
            }
        }
    }
    settle(subscription).await;
}

/// Absorbs notifications until none arrives for [`QUIET`], at most for [`MAX_DELAY`].
async fn settle(subscription: &mut ChangeSubscription) {
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        subscription.drain();
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        let quiet = pin!(sleep(QUIET.min(left)));
        match select(pin!(subscription.recv()), quiet).await {
            Either::Left(_) => {} // more changes: keep absorbing
            Either::Right(_) => return,
        }
    }
}

/// Waits for `period`, on the runtime the crate is built for.
pub(crate) async fn sleep(period: Duration) {
    #[cfg(feature = "runtime-tokio")]
    tokio::time::sleep(period).await;
    #[cfg(not(feature = "runtime-tokio"))]
    {
        async_io::Timer::after(period).await;
    }
}
