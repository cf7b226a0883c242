//! `tasks demo`: two peers as two OS processes on loopback. Peer A writes, peer B shows
//! the change; then B writes and A shows it. Exits non-zero if they do not converge.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Peer {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn start(
        name: &'static str,
        db: &std::path::Path,
        peer: Option<&str>,
    ) -> Result<Peer, Box<dyn std::error::Error>> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "--db",
                &db.display().to_string(),
                "--topic",
                "wavesync-demo",
                "--no-mdns",
            ])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        if let Some(peer) = peer {
            command.args(["--peer", peer]);
        }
        let mut child = command
            .arg("watch")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("  [{name}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Peer {
            name,
            child,
            stdin,
            lines,
        })
    }

    fn say(&mut self, command: &str) -> std::io::Result<()> {
        println!("> {}: {command}", self.name);
        writeln!(self.stdin, "{command}")
    }

    /// Waits for an output line containing `text`; returns the line.
    fn expect(&self, text: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Ok(line),
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "{} did not show {text:?} within {timeout:?}",
                        self.name
                    ));
                }
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
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

pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("wavesync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let timeout = Duration::from_secs(20);
        println!("Starting peer A and peer B as two processes on 127.0.0.1 ...");
        let mut a = Peer::start("A", &dir.join("a.db"), None)?;
        let line = a.expect("listening on /ip4/127.0.0.1", timeout)?;
        let address = line.trim_start_matches("listening on ").trim().to_owned();
        let mut b = Peer::start("B", &dir.join("b.db"), Some(&address))?;
        b.expect("1 peer connected", timeout)?;
        a.say("add Buy milk")?;
        a.say("add Walk the dog")?;
        b.expect("Walk the dog", timeout)?;
        b.say("add Call mum")?;
        a.expect("Call mum", timeout)?;
        println!("A and B converged: each shows the other's tasks, live.");
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
