//! Figure 2, replication latency: single-row writes on A, one at a time, each timed from
//! its commit on A (the write returning) to the change notification on B.

use crate::entities::item;
use crate::peer;
use crate::place::Place;
use crate::report::Report;
use crate::{Result, Scale};
use sea_orm::ActiveModelTrait;
use std::time::{Duration, Instant};
use wavesyncdb::{CellValue, ChangeSubscription};

/// Waits on `subscription` until a remote notification of `item` row `id` arrives.
pub async fn until_row(subscription: &mut ChangeSubscription, id: i64) -> Result<Instant> {
    let key = [CellValue::Integer(id)];
    let wait = async {
        loop {
            match subscription.recv().await {
                Ok(notification)
                    if notification.table == "item"
                        && notification.is_remote()
                        && notification.touches(&key) =>
                {
                    return Ok(Instant::now());
                }
                Ok(_) => {}
                Err(lagged) => return Err(format!("notifications lagged: {lagged:?}")),
            }
        }
    };
    let timeout = async {
        smol::Timer::after(Duration::from_secs(30)).await;
        Err(format!("row {id} did not arrive within 30 s"))
    };
    Ok(futures::future::select(Box::pin(wait), Box::pin(timeout))
        .await
        .factor_first()
        .0?)
}

pub async fn run(place: &Place, scale: &Scale, report: &mut Report) -> Result<()> {
    let topic = super::topic(&format!("latency-{}", place.label));
    let a = peer::start(&place.db("latency-a"), &topic, &[]).await?;
    let b = peer::start(&place.db("latency-b"), &topic, &[peer::address(&a)?]).await?;
    peer::wait_connected(&a, 1).await?;
    let mut pings = 0;
    peer::warm_up(&a, &[&b], &mut pings).await?;
    let mut subscription = b.subscribe();
    let mut samples = Vec::with_capacity(scale.latency_writes as usize);
    for id in 0..scale.latency_writes {
        item::new(id).insert(&a).await?;
        let committed = Instant::now();
        let arrived = until_row(&mut subscription, id).await?;
        samples.push(super::ms(arrived.saturating_duration_since(committed)));
    }
    samples.sort_by(f64::total_cmp);
    report.record(
        place.name("latency.p50"),
        super::percentile(&samples, 50.0),
        "ms",
    );
    report.record(
        place.name("latency.p99"),
        super::percentile(&samples, 99.0),
        "ms",
    );
    report.record(
        place.name("latency.max"),
        super::percentile(&samples, 100.0),
        "ms",
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
