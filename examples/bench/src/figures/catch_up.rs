//! Figure 4, catch-up: B (a child process) goes offline while A writes rows in
//! transactions of 100, then updates 20% of them and deletes 5%; the clock runs from B's
//! restart (process start included) until B has applied everything A has.

use crate::entities::item;
use crate::peer::{self, ChildPeer};
use crate::place::Place;
use crate::report::Report;
use crate::{Result, Scale};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::time::{Duration, Instant};

pub async fn run(place: &Place, scale: &Scale, report: &mut Report) -> Result<()> {
    let rows = scale.catch_up_rows;
    let topic = super::topic(&format!("catch-up-{}", place.label));
    let a_path = place.db("catch-up-a");
    let a = peer::start(&a_path, &topic, &[]).await?;
    let b_path = place.db("catch-up-b");
    let mut b = ChildPeer::spawn(&b_path, &topic, &peer::address(&a)?)?;
    peer::wait_connected(&a, 1).await?;
    super::throughput::warm_up_child(&a, &mut b).await?;
    b.stop()?;

    peer::insert_rows(&a, 0..rows).await?;
    // 20% updated, 5% deleted, in transactions of 100 rows.
    let updated = rows / 5;
    let deleted = rows / 20;
    peer::bump_values(&a, 0..updated).await?;
    for first in (rows - deleted..rows).step_by(100) {
        item::Entity::delete_many()
            .filter(item::Column::Id.between(first, (first + 99).min(rows - 1)))
            .exec(&a)
            .await?;
    }
    let target = a.head(a.node_id()).await?;
    let expected = super::throughput::contents(&a_path).await?;

    let started = Instant::now();
    let mut b = ChildPeer::spawn(&b_path, &topic, &peer::address(&a)?)?;
    b.wait_for(
        &a.peer_id().ok_or("no network")?,
        target,
        Duration::from_secs(300),
    )?;
    let (reached, answer) = b.expect("", Duration::from_secs(300))?;
    if !answer.starts_with("reached") {
        return Err(format!("B did not catch up: {answer}").into());
    }
    let elapsed = reached.saturating_duration_since(started);
    let (bytes, operations) = b.stats()?;
    b.stop()?;
    let held = super::throughput::contents(&b_path).await?;
    if held != expected {
        return Err(format!("B holds {held:?} (rows, sum), A {expected:?}").into());
    }
    report.record(place.name("catch_up.time"), elapsed.as_secs_f64(), "s");
    report.record(
        place.name("catch_up.rate"),
        rows as f64 / elapsed.as_secs_f64(),
        "rows/s",
    );
    report.record(place.name("catch_up.bytes"), bytes as f64 / 1e6, "MB");
    report.record(
        place.name("catch_up.operations"),
        operations as f64,
        "operations",
    );
    a.shutdown().await;
    Ok(())
}
