//! Figure 1, write overhead: the same writes through a raw SeaORM connection and through
//! `WaveSyncDb` (engine running, one peer connected), on files with the same SQLite
//! settings, in the same process and run.

use crate::entities::item;
use crate::peer;
use crate::place::Place;
use crate::report::Report;
use crate::{Result, Scale};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, DbBackend, Schema, Set, Unchanged};
use std::time::{Duration, Instant};

/// Times `n` single-row inserts of ids `0..n`.
async fn inserts(db: &impl ConnectionTrait, n: i64) -> Result<Duration> {
    let started = Instant::now();
    for id in 0..n {
        item::new(id).insert(db).await?;
    }
    Ok(started.elapsed())
}

/// Times `n` single-row updates of ids `0..n` (one column each).
async fn updates(db: &impl ConnectionTrait, n: i64) -> Result<Duration> {
    let started = Instant::now();
    for id in 0..n {
        item::ActiveModel {
            id: Unchanged(id),
            value: Set(id + 1),
            ..Default::default()
        }
        .update(db)
        .await?;
    }
    Ok(started.elapsed())
}

/// Times `n` rows inserted as `insert_many` batches of 100, ids from `first`.
async fn batches(db: &impl ConnectionTrait, first: i64, n: i64) -> Result<Duration> {
    let started = Instant::now();
    peer::insert_rows(db, first..first + n).await?;
    Ok(started.elapsed())
}

/// The journal mode and synchronous level a connection runs with, as SQLite reports them.
pub async fn sqlite_settings(db: &impl ConnectionTrait) -> Result<String> {
    let journal: String = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await?
        .ok_or("no journal_mode")?
        .try_get_by_index(0)?;
    let synchronous: i64 = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA synchronous",
        ))
        .await?
        .ok_or("no synchronous")?
        .try_get_by_index(0)?;
    let synchronous = match synchronous {
        0 => "OFF",
        1 => "NORMAL",
        2 => "FULL",
        3 => "EXTRA",
        _ => "?",
    };
    Ok(format!("journal_mode={journal} synchronous={synchronous}"))
}

pub async fn run(place: &Place, scale: &Scale, report: &mut Report) -> Result<()> {
    let n = scale.single_writes;
    let raw = Database::connect(wavesyncdb::sqlite_connect_options(&peer::url(
        &place.db("raw"),
    )))
    .await?;
    let schema = Schema::new(DbBackend::Sqlite);
    raw.execute(&schema.create_table_from_entity(item::Entity))
        .await?;

    let topic = super::topic(&format!("write-{}", place.label));
    let synced = peer::start(&place.db("synced"), &topic, &[]).await?;
    let other = peer::start(&place.db("other"), &topic, &[peer::address(&synced)?]).await?;
    peer::wait_connected(&synced, 1).await?;
    let mut pings = 0;
    peer::warm_up(&synced, &[&other], &mut pings).await?;
    println!(
        "# {}: raw SeaORM {}; WaveSyncDb {}",
        place.label,
        sqlite_settings(&raw).await?,
        sqlite_settings(&synced).await?
    );

    // The same writes through a WaveSyncDb without network: what capture and the log
    // cost on their own, apart from publishing and from the peer, which here shares the
    // machine's cores with the writer.
    let alone = wavesyncdb::WaveSyncDbBuilder::new(peer::url(&place.db("alone")), &topic)
        .without_network()
        .build()
        .await?;
    alone.schema().register::<item::Entity>().sync().await?;

    let raw_insert = inserts(&raw, n).await?;
    let synced_insert = inserts(&synced, n).await?;
    let alone_insert = inserts(&alone, n).await?;
    let raw_update = updates(&raw, n).await?;
    let synced_update = updates(&synced, n).await?;
    let alone_update = updates(&alone, n).await?;
    let raw_many = batches(&raw, 1_000_000, n).await?;
    let synced_many = batches(&synced, 1_000_000, n).await?;
    let alone_many = batches(&alone, 1_000_000, n).await?;

    for (figure, raw, synced, alone) in [
        ("insert", raw_insert, synced_insert, alone_insert),
        ("update", raw_update, synced_update, alone_update),
        ("insert_many", raw_many, synced_many, alone_many),
    ] {
        report.record(
            place.name(&format!("write.{figure}.no_network")),
            super::ms(alone),
            "ms",
        );
        report.record(
            place.name(&format!("write.{figure}.raw")),
            super::ms(raw),
            "ms",
        );
        report.record(
            place.name(&format!("write.{figure}.synced")),
            super::ms(synced),
            "ms",
        );
        report.record(
            place.name(&format!("write.{figure}.ratio")),
            synced.as_secs_f64() / raw.as_secs_f64(),
            "x",
        );
    }
    synced.shutdown().await;
    other.shutdown().await;
    raw.close().await?;
    Ok(())
}
