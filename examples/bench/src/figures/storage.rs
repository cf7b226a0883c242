//! Figure 5, storage: bytes of sync metadata per row after the insert, after every row
//! was updated once, and after 10 updates; with the log keeping one version per cell, it
//! must not grow with the number of updates.

use crate::entities::item;
use crate::peer;
use crate::place::Place;
use crate::report::Report;
use crate::{Result, Scale};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Bytes of the pages of the named b-trees (SQLite's `dbstat`).
async fn bytes_of(db: &impl ConnectionTrait, names: &[&str]) -> Result<f64> {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({list})"),
        ))
        .await?
        .ok_or("no dbstat row")?;
    let bytes: i64 = row.try_get_by_index(0)?;
    Ok(bytes as f64)
}

const METADATA: &[&str] = &[
    "_wavesync_log",
    "_wavesync_log_by_origin",
    "_wavesync_heads",
    "_wavesync_meta",
];

pub async fn run(place: &Place, scale: &Scale, report: &mut Report) -> Result<()> {
    let rows = scale.storage_rows;
    let db = wavesyncdb::WaveSyncDbBuilder::new(peer::url(&place.db("storage")), "bench")
        .without_network()
        .build()
        .await?;
    db.schema().register::<item::Entity>().sync().await?;
    peer::insert_rows(&db, 0..rows).await?;
    let after_insert = bytes_of(&db, METADATA).await? / rows as f64;
    let table = bytes_of(&db, &["item"]).await? / rows as f64;
    let mut after_one_update = 0.0;
    for round in 0..10 {
        if round == 1 {
            after_one_update = bytes_of(&db, METADATA).await? / rows as f64;
        }
        peer::bump_values(&db, 0..rows).await?;
    }
    let after_updates = bytes_of(&db, METADATA).await? / rows as f64;
    report.record(place.name("storage.table"), table, "bytes/row");
    report.record(
        place.name("storage.after_insert"),
        after_insert,
        "bytes/row",
    );
    report.record(
        place.name("storage.after_1_update"),
        after_one_update,
        "bytes/row",
    );
    report.record(
        place.name("storage.after_10_updates"),
        after_updates,
        "bytes/row",
    );
    // The first update of a row moves its index entries to the end of the origin index
    // and leaves the old pages partly filled; from then on updates replace versions in
    // place. "Grows with the number of updates" compares 10 updates with 1.
    report.record(
        place.name("storage.first_update_growth"),
        after_one_update / after_insert,
        "x",
    );
    report.record(
        place.name("storage.growth"),
        after_updates / after_one_update,
        "x",
    );
    Ok(())
}
