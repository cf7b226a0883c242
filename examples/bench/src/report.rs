//! Figures: printed as `name: value unit` the moment they are taken, kept for the summary.

/// One measured figure.
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

/// Every figure of a run, in the order taken.
#[derive(Default)]
pub struct Report {
    figures: Vec<Figure>,
}

/// How a figure compares with its target.
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

/// A target of the open issues on speed (the write path: insert, update, insert_many and
/// latency; every change lands: throughput and catch-up), and the figures it applies to.
pub struct Target {
    /// Figure names end with this (after the place label).
    pub figure: &'static str,
    pub goal: Goal,
    pub what: &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        figure: "write.insert.ratio",
        goal: Goal::AtMost(1.3),
        what: "single-row insert overhead vs raw SeaORM",
    },
    Target {
        figure: "write.update.ratio",
        goal: Goal::AtMost(1.3),
        what: "single-row update overhead vs raw SeaORM",
    },
    Target {
        figure: "write.insert_many.ratio",
        goal: Goal::AtMost(1.5),
        what: "insert_many (100 rows) overhead vs raw SeaORM",
    },
    Target {
        figure: "latency.p50",
        goal: Goal::AtMost(0.5),
        what: "two-peer latency, median",
    },
    Target {
        figure: "throughput",
        goal: Goal::AtLeast(50_000.0),
        what: "sustained A -> B throughput, transactions of 100",
    },
    Target {
        // 100,000 rows in at most 2 s; as a rate, so that it reads the same in a quick run.
        figure: "catch_up.rate",
        goal: Goal::AtLeast(100_000.0 / 2.0),
        what: "catch-up rate (target: 100,000 rows in <= 2 s)",
    },
    Target {
        figure: "storage.growth",
        goal: Goal::AtMost(1.1),
        what: "sync metadata after 10 updates per row / after 1 (flat = 1.0)",
    },
    Target {
        figure: "memory.idle_rss",
        goal: Goal::AtMost(20.0),
        what: "RSS of an idle peer",
    },
];

/// Prints with as many decimals as the magnitude deserves.
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

impl Report {
    /// Prints and keeps one figure.
    pub fn record(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        println!("{name}: {} {unit}", format_value(value));
        self.figures.push(Figure { name, value, unit });
    }

    /// The figures taken so far.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// Prints every target next to the figures it applies to; returns how many missed.
    pub fn summary(&self, note: &str) -> usize {
        println!();
        println!("summary ({note}):");
        let mut missed = 0;
        for target in TARGETS {
            for figure in self
                .figures
                .iter()
                .filter(|f| f.name.ends_with(&format!(".{}", target.figure)))
            {
                let (met, bound) = match target.goal {
                    Goal::AtMost(bound) => {
                        (figure.value <= bound, format!("<= {}", format_value(bound)))
                    }
                    Goal::AtLeast(bound) => {
                        (figure.value >= bound, format!(">= {}", format_value(bound)))
                    }
                };
                if !met {
                    missed += 1;
                }
                println!(
                    "  {:<34} {:>10} {:<6} target {:<10} {}  ({})",
                    figure.name,
                    format_value(figure.value),
                    figure.unit,
                    bound,
                    if met { "met" } else { "MISSED" },
                    target.what
                );
            }
        }
        missed
    }
}
