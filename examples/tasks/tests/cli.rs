//! The `tasks` CLI as a user meets it, as real processes on 127.0.0.1: options before or
//! after the command, errors that say what to do, `status`, `add` that waits for a peer
//! to hold the task, `-v`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TASKS: &str = env!("CARGO_BIN_EXE_tasks");
const WAIT: Duration = Duration::from_secs(30);

/// Runs `tasks` with `args` to its end (killed after `WAIT`), with no secret from the
/// environment.
fn tasks(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(TASKS)
        .args(args)
        .current_dir(dir)
        .env_remove("WAVESYNC_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tasks");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    panic!(
        "tasks {args:?} did not end within {WAIT:?}; stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `tasks watch` process, stopped on drop.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    address: String,
}

impl Watcher {
    fn start(dir: &std::path::Path) -> Watcher {
        let mut child = Command::new(TASKS)
            .args(["watch", "--db", "a.db", "--topic", "cli-test", "--no-mdns"])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .current_dir(dir)
            .env_remove("WAVESYNC_SECRET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut watcher = Watcher {
            child,
            lines,
            address: String::new(),
        };
        let line = watcher.expect("listening on /ip4/127.0.0.1");
        watcher.address = line.trim_start_matches("listening on ").trim().to_owned();
        watcher
    }

    fn expect(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "{text:?} not shown within {WAIT:?}; saw:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn options_go_before_or_after_the_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let after = tasks(
        dir.path(),
        &["list", "--db", "after.db", "--no-mdns", "--wait", "0"],
    );
    assert!(after.status.success(), "{}", text(&after.stderr));
    let before = tasks(
        dir.path(),
        &["--db", "before.db", "--no-mdns", "list", "--wait", "0"],
    );
    assert!(before.status.success(), "{}", text(&before.stderr));
    assert!(dir.path().join("after.db").exists() && dir.path().join("before.db").exists());
    // Neither fell back to the default file.
    assert!(!dir.path().join("tasks.db").exists());
}

#[test]
fn a_database_in_a_missing_directory_is_a_sentence_not_a_dump() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tasks(
        dir.path(),
        &["list", "--db", "no/such/dir/x.db", "--no-mdns"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no/such/dir/x.db"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        !stderr.contains("SqliteError") && !stderr.contains("code: 14"),
        "{stderr}"
    );
}

#[test]
fn a_bad_secret_points_to_the_command_that_makes_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tasks(dir.path(), &["list", "--secret", "zz"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("tasks secret"), "{stderr}");
    assert!(!stderr.contains("generate_secret"), "{stderr}");
    // What `tasks secret` prints is accepted.
    let secret = tasks(dir.path(), &["secret"]);
    let secret = text(&secret.stdout).trim().to_owned();
    let ok = tasks(
        dir.path(),
        &["list", "--secret", &secret, "--no-mdns", "--wait", "0"],
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}

#[test]
fn listening_on_an_address_this_host_lacks_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tasks(
        dir.path(),
        &["list", "--no-mdns", "--listen", "/ip4/203.0.113.9/tcp/0"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("could not listen on /ip4/203.0.113.9/tcp/0"),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("assign"),
        "no cause: {stderr}"
    );
}

#[test]
fn add_waits_until_a_peer_holds_the_task_and_status_tells_the_peers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watcher = Watcher::start(dir.path());
    let added = tasks(
        dir.path(),
        &[
            "add",
            "Water",
            "the",
            "plants",
            "--db",
            "b.db",
            "--topic",
            "cli-test",
            "--no-mdns",
            "--peer",
            &watcher.address,
        ],
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(
        text(&added.stdout).contains("added; a peer has it"),
        "{}",
        text(&added.stdout)
    );
    // The claim is true: the watcher shows it.
    watcher.expect("Water the plants");

    // A dead peer next to the live one: status lists the live one and the failure.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dead = format!("/ip4/127.0.0.1/tcp/{dead}");
    let status = tasks(
        dir.path(),
        &[
            "status",
            "--db",
            "b.db",
            "--topic",
            "cli-test",
            "--no-mdns",
            "--peer",
            &watcher.address,
            "--peer",
            &dead,
            "--wait",
            "10",
        ],
    );
    assert!(status.status.success(), "{}", text(&status.stderr));
    let stdout = text(&status.stdout);
    assert!(stdout.contains("peers: 1 connected"), "{stdout}");
    assert!(stdout.contains("direct, behind 0"), "{stdout}");
    assert!(stdout.contains("1 written here"), "{stdout}");
    assert!(stdout.contains("holds 1/1 of ours"), "{stdout}");
    assert!(
        stdout.contains(&dead) && stdout.contains("nothing listens there"),
        "{stdout}"
    );
}

#[test]
fn verbose_shows_the_engines_logs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let quiet = tasks(dir.path(), &["list", "--no-mdns", "--wait", "0"]);
    let quiet = text(&quiet.stderr);
    // Warnings show without -v: an open group is one.
    assert!(quiet.contains("open group"), "{quiet}");
    assert!(!quiet.contains("network engine started"), "{quiet}");
    let loud = tasks(dir.path(), &["-v", "list", "--no-mdns", "--wait", "0"]);
    let loud = text(&loud.stderr);
    assert!(loud.contains("network engine started"), "{loud}");
}

#[test]
fn rm_and_done_take_an_id_prefix_as_text_and_only_when_it_names_one_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(TASKS)
        .args(["watch", "--db", "w.db", "--no-mdns", "--topic", "cli-rm"])
        .current_dir(dir.path())
        .env_remove("WAVESYNC_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watch");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        // `%` and `_` would match every id as LIKE patterns.
        writeln!(stdin, "add one\nadd two\nrm %\ndone _\nlist\nquit").expect("commands");
    }
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "watch did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = text(&child.wait_with_output().expect("output").stdout);
    assert!(out.contains("no task id starts with \"%\""), "{out}");
    assert!(out.contains("no task id starts with \"_\""), "{out}");
    // Both tasks are left, neither done.
    let last_list = out.rsplit("tasks (").next().unwrap_or_default();
    assert!(
        last_list.contains("one") && last_list.contains("two"),
        "{out}"
    );
    assert!(!last_list.contains("[x]"), "{out}");
}
