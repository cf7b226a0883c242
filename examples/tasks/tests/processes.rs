//! Real OS processes: the demo (two peers on loopback) converges, and two peers in
//! separate network namespaces on a bridge find each other by mDNS alone and converge.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TASKS: &str = env!("CARGO_BIN_EXE_tasks");

#[test]
fn the_demo_converges_across_two_processes() {
    let mut child = Command::new(TASKS)
        .arg("demo")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start demo");
    let stdout = child.stdout.take().expect("stdout");
    let output: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().expect("demo exits");
    assert!(status.success(), "demo failed:\n{}", output.join("\n"));
    assert!(
        output
            .iter()
            .any(|l| l.contains("[B]") && l.contains("Walk the dog"))
    );
    assert!(
        output
            .iter()
            .any(|l| l.contains("[A]") && l.contains("Call mum"))
    );
}

/// Network namespaces, veth pairs and a bridge, removed on drop (even on a failed test).
struct Lan {
    namespaces: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Lan {
    /// Two hosts, 10.213.0.1 and 10.213.0.2, on a bridge in a third namespace.
    fn new() -> Result<Lan, String> {
        let tag = std::process::id();
        let names = [
            format!("wst{tag}a"),
            format!("wst{tag}b"),
            format!("wst{tag}br"),
        ];
        let mut lan = Lan {
            namespaces: Vec::new(),
        };
        for name in &names {
            ip(&["netns", "add", name])?;
            lan.namespaces.push(name.clone());
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        let bridge = &names[2];
        ip(&["-n", bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", bridge, "link", "set", "br0", "up"])?;
        for (n, host) in names[..2].iter().enumerate() {
            let port = format!("port{n}");
            ip(&[
                "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                bridge,
            ])?;
            ip(&["-n", bridge, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", bridge, "link", "set", &port, "up"])?;
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("10.213.0.{}/24", n + 1),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", host, "link", "set", "eth0", "up"])?;
            ip(&["-n", host, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in &self.namespaces {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

struct Host {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Host {
    fn start(namespace: &str, db: &std::path::Path) -> Host {
        let mut child = Command::new("ip")
            .args(["netns", "exec", namespace, TASKS, "--db"])
            .arg(db)
            .args([
                "--topic",
                "lan-test",
                "--listen",
                "/ip4/0.0.0.0/tcp/0",
                "watch",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tasks in a namespace");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Host { child, lines }
    }

    fn expect(&self, text: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(text) => return Ok(()),
                Ok(line) => seen.push(line),
                Err(_) => {
                    return Err(format!(
                        "{text:?} not shown within {timeout:?}; output:\n{}",
                        seen.join("\n")
                    ));
                }
            }
        }
    }
}

impl Drop for Host {
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn peers_on_separate_hosts_find_each_other_by_mdns_and_converge() {
    if !is_root() {
        println!("skipped: creating network namespaces needs root");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        println!("skipped: `ip` (iproute2) is not installed");
        return;
    }
    let lan = Lan::new().expect("create namespaces, veths and a bridge");
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Host::start(&lan.namespaces[0], &dir.path().join("a.db"));
    let b = Host::start(&lan.namespaces[1], &dir.path().join("b.db"));
    let timeout = Duration::from_secs(30);
    a.expect("1 peer connected", timeout)
        .expect("a found b by mDNS");
    let mut a = a;
    writeln!(
        a.child.stdin.as_mut().expect("stdin"),
        "add hello from another host"
    )
    .expect("write command");
    b.expect("hello from another host", timeout)
        .expect("b shows a's task");
    drop((a, b));
    drop(lan);
}
