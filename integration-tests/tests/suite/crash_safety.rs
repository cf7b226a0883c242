//! A process writing in a loop is killed with SIGKILL; after reopening, every committed
//! row has its log entries and no log entry lacks its row.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_killed_writer_leaves_tables_and_log_in_agreement() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.db");
    for round in 0..3u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start crash_writer");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Let it commit a varying number of transactions, then kill it mid-flight.
        let wanted = 40 + round * 37;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut written = 0;
        while written < wanted {
            assert!(
                Instant::now() < deadline,
                "writer too slow: {written} transactions in 30 s"
            );
            match lines.next() {
                Some(Ok(_)) => written += 1,
                _ => panic!("writer stopped after {written} transactions"),
            }
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");

        let report = smol::block_on(async {
            let db = wavesyncdb_integration_tests::open(&path)
                .await
                .expect("reopen");
            db.verify_log().await.expect("verify")
        });
        assert!(
            report.is_consistent(),
            "round {round}: {:#?}",
            report.problems
        );
        assert!(
            report.rows_checked > 0,
            "round {round}: nothing was written"
        );
    }
}
