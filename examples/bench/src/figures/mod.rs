//! One module per figure of the benchmark; each takes a [`crate::place::Place`] and the
//! run's [`crate::Scale`] and records its figures in the report.

pub mod catch_up;
pub mod fan_out;
pub mod latency;
pub mod storage;
pub mod throughput;
pub mod write;

/// Milliseconds of a duration, as a float.
pub fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0..=100) of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A topic no other run shares.
pub fn topic(figure: &str) -> String {
    format!("wavesync-bench-{}-{figure}", std::process::id())
}
