//! `wavesync-bench`: what WaveSyncDB costs a SeaORM application's writes, and how fast its
//! peers see them. Prints one line per figure (`name: value unit`), then a summary next
//! to the targets.
//!
//! ```text
//! cargo run --release -p wavesync-bench            # full run (under 10 minutes on 2 cores)
//! cargo run --release -p wavesync-bench -- --quick # smaller counts (under 2 minutes)
//! ```
//!
//! The library's logs go to standard error, filtered by `RUST_LOG` (default: errors only),
//! e.g. `RUST_LOG=wavesyncdb=info`.
//!
//! Every figure is taken twice, with the database files on disk and on tmpfs
//! (`/dev/shm`), so commit cost and CPU cost can be told apart. Figures that miss their
//! target are reported as they are.

mod entities;
mod figures;
mod peer;
mod place;
mod report;

use clap::{Parser, Subcommand};
use std::time::Instant;

/// The error of every benchmark step: it reports and stops.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The sizes of one run.
pub struct Scale {
    /// Figure 1: single-row inserts, then updates, then rows in batches of 100.
    pub single_writes: i64,
    /// Figure 2: writes timed one by one.
    pub latency_writes: i64,
    /// Figure 3: rows sent A -> B in transactions of 100.
    pub throughput_rows: i64,
    /// Figure 4: rows written while B is offline.
    pub catch_up_rows: i64,
    /// Figure 5: rows inserted, then each updated 10 times.
    pub storage_rows: i64,
    /// Figure 6: writes timed until all five peers have them.
    pub fan_out_writes: i64,
}

const FULL: Scale = Scale {
    single_writes: 10_000,
    latency_writes: 1_000,
    throughput_rows: 100_000,
    catch_up_rows: 100_000,
    storage_rows: 10_000,
    fan_out_writes: 200,
};

const QUICK: Scale = Scale {
    single_writes: 1_000,
    latency_writes: 200,
    throughput_rows: 10_000,
    catch_up_rows: 10_000,
    storage_rows: 2_000,
    fan_out_writes: 50,
};

const FIGURES: &[&str] = &[
    "write",
    "latency",
    "throughput",
    "catch_up",
    "storage",
    "fan_out",
];

#[derive(Parser, Debug)]
#[command(about = "WaveSyncDB benchmarks, side by side with raw SeaORM")]
struct Cli {
    /// Smaller counts: finishes in under 2 minutes on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Run only these figures (write, latency, throughput, catch_up, storage, fan_out).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run only on these places (disk, tmpfs).
    #[arg(long, value_delimiter = ',')]
    places: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A peer driven by stdin, started by the benchmark itself.
    #[command(hide = true)]
    Peer {
        #[arg(long)]
        db: std::path::PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        bootstrap: wavesyncdb::Multiaddr,
    },
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(String::new, |kb| format!(", {:.0} GB RAM", kb as f64 / 1e6));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores{memory}, Linux {}", kernel.trim())
}

async fn run(cli: Cli) -> Result<()> {
    let scale = if cli.quick { &QUICK } else { &FULL };
    for figure in &cli.only {
        if !FIGURES.contains(&figure.as_str()) {
            return Err(format!("unknown figure {figure}; known: {}", FIGURES.join(", ")).into());
        }
    }
    let wanted = |figure: &str| cli.only.is_empty() || cli.only.iter().any(|f| f == figure);
    let started = Instant::now();
    println!(
        "# wavesync-bench, {} run",
        if cli.quick { "quick" } else { "full" }
    );
    println!("# machine: {}", machine());
    let mut report = report::Report::default();
    for label in ["disk", "tmpfs"] {
        if !cli.places.is_empty() && !cli.places.iter().any(|p| p == label) {
            continue;
        }
        let place = match label {
            "disk" => place::Place::disk()?,
            _ => place::Place::tmpfs()?,
        };
        println!(
            "# {label}: files in {} ({})",
            place.path().display(),
            place.fs_type
        );
        if wanted("write") {
            figures::write::run(&place, scale, &mut report).await?;
        }
        if wanted("latency") {
            figures::latency::run(&place, scale, &mut report).await?;
        }
        if wanted("throughput") {
            figures::throughput::run(&place, scale, &mut report).await?;
        }
        if wanted("catch_up") {
            figures::catch_up::run(&place, scale, &mut report).await?;
        }
        if wanted("storage") {
            figures::storage::run(&place, scale, &mut report).await?;
        }
        if wanted("fan_out") {
            figures::fan_out::run(&place, scale, &mut report).await?;
        }
    }
    let note = format!(
        "{} run: {} single writes, {} latency samples, {} rows throughput, {} rows catch-up; {:.0} s",
        if cli.quick { "quick" } else { "full" },
        scale.single_writes,
        scale.latency_writes,
        scale.throughput_rows,
        scale.catch_up_rows,
        started.elapsed().as_secs_f64()
    );
    let missed = report.summary(&note);
    println!(
        "{} of the figures with a target missed it{}",
        missed,
        if cli.quick {
            " (quick run: smaller counts than the targets assume)"
        } else {
            ""
        }
    );
    println!("{} figures", report.figures().len());
    Ok(())
}

fn main() {
    // The library's logs on standard error (the figures go to standard output), filtered
    // by RUST_LOG; by default errors only, so the open groups the benchmark uses do not
    // print a warning per peer.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::ERROR.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = smol::block_on(async {
        match cli.command {
            Some(Command::Peer {
                db,
                topic,
                bootstrap,
            }) => peer::run_child(&db, &topic, bootstrap).await,
            None => run(cli).await,
        }
    });
    if let Err(err) = outcome {
        eprintln!("wavesync-bench: {err}");
        std::process::exit(1);
    }
}
