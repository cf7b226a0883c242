//! The application's own triggers (issue 13, defect 3): what a trigger writes to a synced
//! table replicates exactly once, as data; a trigger that writes only local tables keeps
//! running for changes from peers.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set, TransactionTrait};
use std::time::Duration;
use wavesyncdb_integration_tests::{TestPeer, assert_logs_consistent, rows, wait_until};

const TIMEOUT: Duration = Duration::from_secs(20);

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub body: String,
        pub stamp: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod audit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub note_id: String,
        pub what: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every insert of a note writes an audit row under a random key; every change of a body
/// gives the note a new random stamp. Run twice, they would differ.
const SYNCED_TRIGGERS: &str = "
    CREATE TRIGGER notes_audit AFTER INSERT ON notes BEGIN
        INSERT INTO audit (id, note_id, what) VALUES (lower(hex(randomblob(8))), NEW.id, 'created');
    END;
    CREATE TRIGGER notes_stamp AFTER UPDATE OF body ON notes BEGIN
        UPDATE notes SET stamp = lower(hex(randomblob(8))) WHERE id = NEW.id;
    END;";

/// A local table whose rows become notes.
const INBOX: &str = "
    CREATE TABLE inbox (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
    CREATE TRIGGER inbox_to_notes AFTER INSERT ON inbox BEGIN
        INSERT INTO notes (id, body, stamp) VALUES (NEW.id, NEW.body, 'from inbox');
    END;";

/// A local count of notes, kept by a trigger (like an FTS index would be).
const LOCAL_COUNT: &str = "
    CREATE TABLE note_count (n INTEGER NOT NULL);
    INSERT INTO note_count (n) VALUES (0);
    CREATE TRIGGER notes_count AFTER INSERT ON notes BEGIN
        UPDATE note_count SET n = n + 1;
    END;";

/// A peer with `notes` and `audit` synced, and `schema` run through the database (as an
/// application's setup would), before or after registering.
async fn start(path: &std::path::Path, schema: &str, before_registering: bool) -> TestPeer {
    let peer = TestPeer::start_unregistered(path, &[]).await;
    let register = async {
        peer.db
            .schema()
            .register::<note::Entity>()
            .register::<audit::Entity>()
            .sync()
            .await
            .expect("register notes and audit");
    };
    if before_registering {
        // The tables must exist for the triggers; sync() would create them.
        peer.db
            .execute_unprepared(
                "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, stamp TEXT NOT NULL);
                 CREATE TABLE audit (id TEXT PRIMARY KEY NOT NULL, note_id TEXT NOT NULL, what TEXT NOT NULL);",
            )
            .await
            .expect("create tables");
        peer.db.execute_unprepared(schema).await.expect("schema");
        register.await;
    } else {
        register.await;
        if !schema.is_empty() {
            peer.db.execute_unprepared(schema).await.expect("schema");
        }
    }
    peer
}

async fn notes(peer: &TestPeer) -> Vec<note::Model> {
    rows::<note::Entity>(&peer.db).await
}

async fn audits(peer: &TestPeer) -> Vec<audit::Model> {
    rows::<audit::Entity>(&peer.db).await
}

/// The local count the `notes_count` trigger keeps on `peer`.
async fn note_count(peer: &TestPeer) -> i64 {
    peer.db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT n FROM note_count",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

fn new_note(id: &str, body: &str) -> note::ActiveModel {
    note::ActiveModel {
        id: Set(id.into()),
        body: Set(body.into()),
        stamp: Set("new".into()),
    }
}

/// Waits until every peer holds `origin`'s notes and audit rows; panics with both sides.
async fn assert_same(origin: &TestPeer, peers: &[&TestPeer]) {
    for (n, peer) in peers.iter().enumerate() {
        let same = wait_until(TIMEOUT, || async {
            notes(peer).await == notes(origin).await && audits(peer).await == audits(origin).await
        })
        .await;
        assert!(
            same,
            "peer {n} differs after {TIMEOUT:?}:\n notes {:?}\n vs   {:?}\n audit {:?}\n vs    {:?}",
            notes(peer).await,
            notes(origin).await,
            audits(peer).await,
            audits(origin).await
        );
    }
}

async fn connected_pair(
    dir: &tempfile::TempDir,
    schema: &str,
    before: bool,
) -> (TestPeer, TestPeer) {
    let a = start(&dir.path().join("a.db"), schema, before).await;
    let b = start(&dir.path().join("b.db"), schema, before).await;
    b.db.dial(a.address()).await.unwrap();
    assert!(a.wait_connected(1, TIMEOUT).await, "never connected");
    (a, b)
}

#[test]
fn what_a_trigger_writes_to_synced_tables_replicates_once() {
    // Fails on the main before this change: the audit row and the stamp stayed on the
    // writing peer, and the receiving peer's triggers made rows and stamps of their own.
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = connected_pair(&dir, SYNCED_TRIGGERS, false).await;
        new_note("n1", "first").insert(&a.db).await.unwrap();
        note::ActiveModel {
            id: Set("n1".into()),
            body: Set("first, edited".into()),
            ..Default::default()
        }
        .update(&a.db)
        .await
        .unwrap();
        let on_a = notes(&a).await;
        assert_ne!(on_a[0].stamp, "new", "the stamp trigger did not run on A");
        assert_eq!(audits(&a).await.len(), 1);
        assert_same(&a, &[&b]).await;

        // And the other way, inside a transaction.
        let txn = b.db.begin().await.unwrap();
        new_note("n2", "second").insert(&txn).await.unwrap();
        txn.commit().await.unwrap();
        assert_same(&b, &[&a]).await;
        assert_eq!(audits(&a).await.len(), 2, "{:?}", audits(&a).await);

        // A peer that catches up later gets the same, from the log.
        let c = start(&dir.path().join("c.db"), SYNCED_TRIGGERS, false).await;
        c.db.dial(a.address()).await.unwrap();
        assert_same(&a, &[&c]).await;
        assert_logs_consistent(&[&a, &b, &c]).await;
        for peer in [a, b, c] {
            peer.stop().await;
        }
    });
}

#[test]
fn triggers_made_before_registration_are_found() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = connected_pair(&dir, SYNCED_TRIGGERS, true).await;
        new_note("n1", "first").insert(&a.db).await.unwrap();
        assert_same(&a, &[&b]).await;
        assert_eq!(audits(&b).await.len(), 1, "{:?}", audits(&b).await);
        assert_logs_consistent(&[&a, &b]).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_local_tables_trigger_that_writes_a_synced_table_replicates() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // The script starts with a table: its triggers are found further down.
        let schema = format!("{INBOX}\n{SYNCED_TRIGGERS}");
        let (a, b) = connected_pair(&dir, &schema, false).await;
        a.db.execute_unprepared("INSERT INTO inbox (id, body) VALUES ('i1', 'by script')")
            .await
            .unwrap();
        a.db.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "INSERT INTO inbox (id, body) VALUES (?, ?)",
            ["i2".into(), "by statement".into()],
        ))
        .await
        .unwrap();
        let txn = a.db.begin().await.unwrap();
        txn.execute_unprepared("INSERT INTO inbox (id, body) VALUES ('i3', 'in a transaction')")
            .await
            .unwrap();
        txn.commit().await.unwrap();
        a.db.execute_unprepared(
            "WITH v (id, body) AS (VALUES ('i4', 'through WITH')) INSERT INTO inbox SELECT id, body FROM v",
        )
        .await
        .unwrap();
        assert_eq!(notes(&a).await.len(), 4);
        assert_same(&a, &[&b]).await;
        // The inbox itself does not sync.
        let inbox =
            b.db.query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT count(*) FROM inbox",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inbox.try_get_by_index::<i64>(0).unwrap(), 0);
        assert_logs_consistent(&[&a, &b]).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn rolled_back_trigger_writes_leave_no_trace() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = connected_pair(&dir, SYNCED_TRIGGERS, false).await;
        let txn = a.db.begin().await.unwrap();
        new_note("gone", "rolled back").insert(&txn).await.unwrap();
        txn.rollback().await.unwrap();

        let txn = a.db.begin().await.unwrap();
        new_note("kept", "kept").insert(&txn).await.unwrap();
        let savepoint = txn.begin().await.unwrap();
        new_note("gone2", "in a rolled back savepoint")
            .insert(&savepoint)
            .await
            .unwrap();
        savepoint.rollback().await.unwrap();
        txn.commit().await.unwrap();

        assert_same(&a, &[&b]).await;
        let ids: Vec<String> = notes(&b).await.into_iter().map(|n| n.id).collect();
        assert_eq!(ids, ["kept"]);
        assert_eq!(audits(&b).await.len(), 1);
        assert_logs_consistent(&[&a, &b]).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn triggers_that_write_only_local_tables_still_run_for_changes_from_peers() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = connected_pair(&dir, LOCAL_COUNT, false).await;
        new_note("n1", "first").insert(&a.db).await.unwrap();
        new_note("n2", "second").insert(&a.db).await.unwrap();
        assert_eq!(note_count(&a).await, 2);
        assert_same(&a, &[&b]).await;
        assert_eq!(
            note_count(&b).await,
            2,
            "the local trigger did not run on B"
        );
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn dropping_the_triggers_that_write_synced_tables_turns_triggers_on_for_peers_again() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let schema = format!("{SYNCED_TRIGGERS}\n{LOCAL_COUNT}");
        let (a, b) = connected_pair(&dir, &schema, false).await;
        new_note("n1", "first").insert(&a.db).await.unwrap();
        assert_same(&a, &[&b]).await;
        // While a trigger writes a synced table, B applies with triggers off: its local
        // count does not see the note from A (the documented cost).
        assert_eq!((note_count(&a).await, note_count(&b).await), (1, 0));

        for peer in [&a, &b] {
            peer.db
                .execute_unprepared("DROP TRIGGER notes_audit; DROP TRIGGER notes_stamp;")
                .await
                .unwrap();
        }
        new_note("n2", "second").insert(&a.db).await.unwrap();
        assert_same(&a, &[&b]).await;
        assert_eq!(audits(&a).await.len(), 1, "the audit trigger is gone");
        assert!(
            wait_until(TIMEOUT, || async { note_count(&b).await == 1 }).await,
            "B's local trigger did not run for the note from A once no trigger wrote a synced table"
        );
        assert_eq!(note_count(&a).await, 2);
        assert_logs_consistent(&[&a, &b]).await;
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_trigger_created_inside_a_transaction_is_captured_in_it() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = connected_pair(&dir, "", false).await;
        let txn = a.db.begin().await.unwrap();
        txn.execute_unprepared(SYNCED_TRIGGERS).await.unwrap();
        new_note("n1", "in the same transaction")
            .insert(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(audits(&a).await.len(), 1);
        // B gets its triggers the same way (its own migration), then A writes again.
        b.db.execute_unprepared(SYNCED_TRIGGERS).await.unwrap();
        new_note("n2", "later").insert(&a.db).await.unwrap();
        assert_same(&a, &[&b]).await;
        assert_eq!(audits(&b).await.len(), 2, "{:?}", audits(&b).await);
        assert_logs_consistent(&[&a, &b]).await;
        a.stop().await;
        b.stop().await;
    });
}
