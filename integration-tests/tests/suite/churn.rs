//! Churn (issue 12, "how it is shown"): three peers with several writers each (inserts,
//! updates of shared rows, deletes, parent-and-child transactions), one peer restarted
//! mid-way, one that registers its tables late. At the end every table is identical on
//! all peers, every log is clean, the peers agree on every origin's head, and every
//! acknowledged write is there (or was superseded by a later acknowledged one).
//!
//! Soundness of the "present" check: each writer writes only its own rows, so its last
//! acknowledged write of a row is that row's final state everywhere. Shared rows are
//! written by everyone and only checked for convergence. Everything runs under a
//! deadline; a watchdog ends the process if the executor itself is stuck.

use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, Set};
use sea_orm::{TransactionTrait, sea_query::Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use wavesyncdb::WaveSyncDb;
use wavesyncdb_integration_tests::{TestPeer, comment, new_task, post, task, wait_until};

const ROUNDS: usize = 14;
const WRITERS: usize = 3;
const SHARED: usize = 5;
const STEP: Duration = Duration::from_secs(20);
const CONVERGE: Duration = Duration::from_secs(30);

/// What a writer knows of one of its rows from its acknowledged writes.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Present(String),
    Absent,
    /// A write of it failed: its outcome is unknown, so the row is not checked.
    Unknown,
}

/// One writer's rows, by table and key.
#[derive(Default)]
struct Ledger {
    tasks: BTreeMap<String, Expect>,
    posts: BTreeMap<String, Expect>,
    comments: BTreeMap<String, Expect>,
}

/// Records an insert: its value if acknowledged.
fn inserted(rows: &mut BTreeMap<String, Expect>, key: &str, value: &str, ok: bool) {
    let state = if ok {
        Expect::Present(value.to_owned())
    } else {
        Expect::Unknown
    };
    rows.insert(key.to_owned(), state);
}

/// Records an update: it changes only a row that is known to be there.
fn updated(rows: &mut BTreeMap<String, Expect>, key: &str, value: &str, ok: bool) {
    let state = rows.entry(key.to_owned()).or_insert(Expect::Absent);
    match (ok, &state) {
        (true, Expect::Present(_)) => *state = Expect::Present(value.to_owned()),
        (true, _) => {}
        (false, _) => *state = Expect::Unknown,
    }
}

/// Records a delete.
fn deleted(rows: &mut BTreeMap<String, Expect>, key: &str, ok: bool) {
    let state = if ok { Expect::Absent } else { Expect::Unknown };
    rows.insert(key.to_owned(), state);
}

/// Runs `future`, panicking if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    let timed_out = async {
        smol::Timer::after(limit).await;
        None
    };
    match smol::future::or(async { Some(future.await) }, timed_out).await {
        Some(value) => value,
        None => panic!("{what} did not finish within {limit:?}"),
    }
}

/// A write, under the step deadline; `true` if acknowledged.
async fn ack<T>(what: &str, write: impl Future<Output = Result<T, DbErr>>) -> bool {
    within(STEP, what, write).await.is_ok()
}

/// One round of writer `name` on `db`.
async fn round(db: &WaveSyncDb, name: &str, r: usize, ledger: &mut Ledger) {
    let id = format!("{name}-t{r:02}");
    let title = format!("{name} round {r}");
    let ok = ack(&id, new_task(&id, &title).insert(db)).await;
    inserted(&mut ledger.tasks, &id, &title, ok);

    if r >= 1 {
        let id = format!("{name}-t{:02}", r - 1);
        let title = format!("{name} edited at {r}");
        let ok = ack(&id, set_title(db, &id, &title)).await;
        updated(&mut ledger.tasks, &id, &title, ok);
    }
    if r % 4 == 3 {
        let id = format!("{name}-t{:02}", r - 2);
        let ok = ack(&id, task::Entity::delete_by_id(id.clone()).exec(db)).await;
        deleted(&mut ledger.tasks, &id, ok);
    }
    let shared = format!("shared-{}", (r + name.len()) % SHARED);
    ack(&shared, set_title(db, &shared, &title)).await;

    if r.is_multiple_of(3) {
        post_with_comments(db, &format!("{name}-p{r:02}"), ledger).await;
    }
    if r % 6 == 5 {
        delete_post(db, &format!("{name}-p{:02}", r - 5), ledger).await;
    }
}

async fn set_title(db: &WaveSyncDb, id: &str, title: &str) -> Result<(), DbErr> {
    task::Entity::update_many()
        .col_expr(task::Column::Title, Expr::value(Value::from(title)))
        .filter(task::Column::Id.eq(id))
        .exec(db)
        .await
        .map(drop)
}

/// A post and its two comments in one transaction.
async fn post_with_comments(db: &WaveSyncDb, id: &str, ledger: &mut Ledger) {
    let comments = [format!("{id}-c0"), format!("{id}-c1")];
    let write = async {
        let txn = db.begin().await?;
        post::ActiveModel {
            id: Set(id.to_owned()),
            title: Set(format!("post {id}")),
        }
        .insert(&txn)
        .await?;
        for comment_id in &comments {
            comment::ActiveModel {
                id: Set(comment_id.clone()),
                post_id: Set(id.to_owned()),
                body: Set(format!("on {id}")),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await
    };
    let ok = ack(id, write).await;
    inserted(&mut ledger.posts, id, &format!("post {id}"), ok);
    for comment_id in &comments {
        inserted(&mut ledger.comments, comment_id, &format!("on {id}"), ok);
    }
}

/// Deletes a post; its comments go with it (ON DELETE CASCADE).
async fn delete_post(db: &WaveSyncDb, id: &str, ledger: &mut Ledger) {
    let ok = ack(id, post::Entity::delete_by_id(id.to_owned()).exec(db)).await;
    deleted(&mut ledger.posts, id, ok);
    for n in 0..2 {
        deleted(&mut ledger.comments, &format!("{id}-c{n}"), ok);
    }
}

/// Runs rounds `rounds` of every writer of peer `peer` concurrently.
async fn write(
    db: &WaveSyncDb,
    peer: &str,
    ledgers: &mut [Ledger],
    rounds: std::ops::Range<usize>,
) {
    let writers = ledgers.iter_mut().enumerate().map(|(k, ledger)| {
        let rounds = rounds.clone();
        async move {
            let name = format!("{peer}{k}");
            for r in rounds {
                round(db, &name, r, ledger).await;
            }
        }
    });
    futures::future::join_all(writers).await;
}

fn ledgers() -> Vec<Ledger> {
    (0..WRITERS).map(|_| Ledger::default()).collect()
}

async fn register_all(peer: &TestPeer) {
    within(STEP, "registering", async {
        peer.db
            .schema()
            .register::<task::Entity>()
            .register::<post::Entity>()
            .register::<comment::Entity>()
            .sync()
            .await
            .expect("register tables")
    })
    .await;
}

/// The whole state of one peer, as comparable text.
async fn snapshot(peer: &TestPeer) -> (Vec<task::Model>, Vec<post::Model>, Vec<comment::Model>) {
    (
        peer.tasks().await,
        peer.posts().await,
        peer.comments().await,
    )
}

/// Every origin's head as `peer` holds it (origins with nothing applied left out).
async fn heads(peer: &TestPeer) -> Vec<(wavesyncdb::NodeId, u64)> {
    let mut heads = peer.db.sync_status().await.expect("sync status").heads;
    heads.retain(|(_, head)| *head > 0);
    heads.sort();
    heads
}

/// Panics unless every checkable row of `ledger` is as its last acknowledged write left it.
async fn assert_acknowledged(peer: &TestPeer, name: &str, ledger: &Ledger) {
    let (tasks, posts, comments) = snapshot(peer).await;
    let tasks: BTreeMap<_, _> = tasks.into_iter().map(|t| (t.id, t.title)).collect();
    let posts: BTreeMap<_, _> = posts.into_iter().map(|p| (p.id, p.title)).collect();
    let comments: BTreeMap<_, _> = comments.into_iter().map(|c| (c.id, c.body)).collect();
    for (table, expected, held) in [
        ("tasks", &ledger.tasks, &tasks),
        ("posts", &ledger.posts, &posts),
        ("comments", &ledger.comments, &comments),
    ] {
        for (key, expect) in expected {
            let found = held.get(key);
            let fine = match expect {
                Expect::Present(value) => found == Some(value),
                Expect::Absent => found.is_none(),
                Expect::Unknown => true,
            };
            assert!(
                fine,
                "{name}: {table} row {key} should be {expect:?} after its acknowledged \
                 writes, found {found:?}"
            );
        }
    }
}

/// Ends the process if the test is still running after `limit`: a deadlock that blocks
/// the executor thread itself would stop every timer. Dropping the returned guard (the
/// test ended, passed or failed) calls it off, so the other tests of the suite's process
/// run on.
fn watchdog(limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
            eprintln!("churn: still running after {limit:?}; the executor is stuck");
            std::process::exit(101);
        }
    });
    done
}

#[test]
fn three_peers_under_churn_end_identical_with_every_acknowledged_write() {
    let _watchdog = watchdog(Duration::from_secs(300));
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let a = TestPeer::start(&dir.path().join("a.db"), &[]).await;
        register_all(&a).await;
        for n in 0..SHARED {
            new_task(&format!("shared-{n}"), "shared")
                .insert(&a.db)
                .await
                .unwrap();
        }
        let b_path = dir.path().join("b.db");
        let b = TestPeer::start(&b_path, &[a.address()]).await;
        register_all(&b).await;
        // C's engine connects now; its tables are registered only after a while.
        let c = TestPeer::start_unregistered(&dir.path().join("c.db"), &[a.address(), b.address()])
            .await;
        assert!(
            b.wait_connected(1, STEP).await && c.wait_connected(2, STEP).await,
            "the peers did not connect"
        );

        let (mut on_a, mut on_b, mut on_c) = (ledgers(), ledgers(), ledgers());
        let lane_a = write(&a.db, "a", &mut on_a, 0..ROUNDS);
        let lane_b = async {
            write(&b.db, "b", &mut on_b, 0..ROUNDS / 2).await;
            let b = restart(b, &b_path, &a).await;
            write(&b.db, "b", &mut on_b, ROUNDS / 2..ROUNDS).await;
            b
        };
        let lane_c = async {
            smol::Timer::after(Duration::from_secs(2)).await;
            register_all(&c).await;
            write(&c.db, "c", &mut on_c, 0..ROUNDS).await;
        };
        let ((), b, ()) = futures::join!(lane_a, lane_b, lane_c);

        let peers = [&a, &b, &c];
        assert_converged(&peers).await;
        for peer in peers {
            let report = within(STEP, "verify_log", peer.db.verify_log())
                .await
                .unwrap();
            assert!(report.is_consistent(), "{:?}", report.problems);
        }
        for (peer_name, ledgers) in [("a", &on_a), ("b", &on_b), ("c", &on_c)] {
            for (k, ledger) in ledgers.iter().enumerate() {
                for peer in peers {
                    assert_acknowledged(peer, &format!("writer {peer_name}{k}"), ledger).await;
                }
            }
        }
        let shared = a.tasks().await;
        let shared = shared
            .iter()
            .filter(|t| t.id.starts_with("shared-"))
            .count();
        assert_eq!(shared, SHARED, "a shared row was lost");
        for peer in [a, b, c] {
            within(STEP, "shutdown", peer.stop()).await;
        }
    });
}

/// Shuts `b` down, drops it, and starts it again on the same file.
async fn restart(b: TestPeer, path: &std::path::Path, a: &TestPeer) -> TestPeer {
    within(STEP, "shutting b down", b.stop()).await;
    let b = within(STEP, "restarting b", TestPeer::start(path, &[a.address()])).await;
    register_all(&b).await;
    b
}

/// Waits until all peers hold the same tables and agree on every origin's head; panics
/// with the row counts otherwise.
async fn assert_converged(peers: &[&TestPeer]) {
    let converged = wait_until(CONVERGE, || async {
        let first = snapshot(peers[0]).await;
        let first_heads = heads(peers[0]).await;
        for peer in &peers[1..] {
            if snapshot(peer).await != first || heads(peer).await != first_heads {
                return false;
            }
        }
        true
    });
    if !within(CONVERGE + STEP, "converging", converged).await {
        let mut counts = Vec::new();
        for peer in peers {
            let (tasks, posts, comments) = snapshot(peer).await;
            counts.push((tasks.len(), posts.len(), comments.len()));
        }
        panic!(
            "peers did not converge within {CONVERGE:?}; (tasks, posts, comments) per peer \
             {counts:?}"
        );
    }
}
