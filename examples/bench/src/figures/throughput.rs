//! Figure 3, sustained throughput A -> B, and the memory half of figure 5: A writes rows
//! in transactions of 100 as fast as it can; the clock stops when B (a child process)
//! has applied all of them. B's resident memory is read while idle and at its peak.

use crate::peer::{self, ChildPeer};
use crate::place::Place;
use crate::report::Report;
use crate::{Result, Scale};
use std::time::{Duration, Instant};
use wavesyncdb::WaveSyncDb;

/// Pings from `writer` until one reaches the child live (within 300 ms).
pub async fn warm_up_child(writer: &WaveSyncDb, child: &mut ChildPeer) -> Result<()> {
    let peer_id = writer.peer_id().ok_or("no network")?;
    for id in 1..=100 {
        let seq = peer::ping(writer, id).await?;
        child.wait_for(&peer_id, seq, Duration::from_millis(300))?;
        let (_, answer) = child.expect("", Duration::from_secs(10))?;
        if answer.starts_with("reached") {
            return Ok(());
        }
    }
    Err("writes did not reach the child peer live after 100 tries".into())
}

/// Counts the rows of `item` in the database file at `path`, and sums their values.
pub async fn contents(path: &std::path::Path) -> Result<(i64, i64)> {
    let db =
        sea_orm::Database::connect(wavesyncdb::sqlite_connect_options(&peer::url(path))).await?;
    let row = sea_orm::ConnectionTrait::query_one_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT count(*), coalesce(sum(value), 0) FROM item",
        ),
    )
    .await?
    .ok_or("no count")?;
    let counted = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    db.close().await?;
    Ok(counted)
}

pub async fn run(place: &Place, scale: &Scale, report: &mut Report) -> Result<()> {
    let rows = scale.throughput_rows;
    let topic = super::topic(&format!("throughput-{}", place.label));
    let a = peer::start(&place.db("throughput-a"), &topic, &[]).await?;
    let b_path = place.db("throughput-b");
    let mut b = ChildPeer::spawn(&b_path, &topic, &peer::address(&a)?)?;
    peer::wait_connected(&a, 1).await?;
    warm_up_child(&a, &mut b).await?;
    // Let the connection and the first heads exchange settle before reading idle memory.
    smol::Timer::after(Duration::from_secs(1)).await;
    let (idle_rss, _) = b.memory()?;

    let target = a.head(a.node_id()).await? + (rows as u64).div_ceil(100);
    b.wait_for(
        &a.peer_id().ok_or("no network")?,
        target,
        Duration::from_secs(300),
    )?;
    let started = Instant::now();
    peer::insert_rows(&a, 0..rows).await?;
    let written = started.elapsed();
    let (reached, answer) = b.expect("", Duration::from_secs(300))?;
    if !answer.starts_with("reached") {
        return Err(format!("B did not receive every row: {answer}").into());
    }
    let elapsed = reached.saturating_duration_since(started);
    let (_, peak_rss) = b.memory()?;
    b.stop()?;
    let (count, _) = contents(&b_path).await?;
    if count != rows {
        return Err(format!("B holds {count} rows, A wrote {rows}").into());
    }
    report.record(
        place.name("throughput"),
        rows as f64 / elapsed.as_secs_f64(),
        "rows/s",
    );
    report.record(
        place.name("throughput.commit_rate_a"),
        rows as f64 / written.as_secs_f64(),
        "rows/s",
    );
    report.record(place.name("memory.idle_rss"), idle_rss as f64 / 1e6, "MB");
    report.record(place.name("memory.peak_rss"), peak_rss as f64 / 1e6, "MB");
    a.shutdown().await;
    Ok(())
}
