//! Figure 6, fan-out: five peers in one process, all connected to each other; single-row
//! writes on one of them, each timed from its commit until every other peer has it.

use crate::entities::item;
use crate::peer;
use crate::place::Place;
use crate::report::Report;
use crate::{Result, Scale};
use sea_orm::ActiveModelTrait;
use std::time::Instant;

const PEERS: usize = 5;

pub async fn run(place: &Place, scale: &Scale, report: &mut Report) -> Result<()> {
    let topic = super::topic(&format!("fan-out-{}", place.label));
    let mut peers = Vec::new();
    let mut addresses = Vec::new();
    for index in 0..PEERS {
        let db = peer::start(&place.db(&format!("fan-out-{index}")), &topic, &addresses).await?;
        addresses.push(peer::address(&db)?);
        peers.push(db);
    }
    for db in &peers {
        peer::wait_connected(db, PEERS - 1).await?;
    }
    let (writer, readers) = peers.split_first().ok_or("no peers")?;
    let reader_refs: Vec<&wavesyncdb::WaveSyncDb> = readers.iter().collect();
    let mut pings = 0;
    peer::warm_up(writer, &reader_refs, &mut pings).await?;
    let mut subscriptions: Vec<_> = readers.iter().map(|db| db.subscribe()).collect();
    let mut samples = Vec::with_capacity(scale.fan_out_writes as usize);
    for id in 0..scale.fan_out_writes {
        item::new(id).insert(writer).await?;
        let committed = Instant::now();
        let mut last = committed;
        for subscription in &mut subscriptions {
            last = last.max(super::latency::until_row(subscription, id).await?);
        }
        samples.push(super::ms(last.saturating_duration_since(committed)));
    }
    samples.sort_by(f64::total_cmp);
    report.record(
        place.name("fan_out.p50"),
        super::percentile(&samples, 50.0),
        "ms",
    );
    report.record(
        place.name("fan_out.max"),
        super::percentile(&samples, 100.0),
        "ms",
    );
    for db in &peers {
        db.shutdown().await;
    }
    Ok(())
}
