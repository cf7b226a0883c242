//! The core suite: real SQLite files in temp dirs, each test on smol and on async-std
//! (`on_both_executors!`). One test binary, one module per subject: linked once instead
//! of once per file. `schema_registry` (which discovers entities by crate path) and
//! `runtime_tokio` (another runtime feature) stay test binaries of their own.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod capture_forms;
mod clock_order;
mod connect_options;
mod convergence;
mod foreign_keys;
mod fuzz_corpus;
mod log_integrity;
mod prometheus;
mod remote_apply;
mod returning;
mod schema_versions;
mod transparency;
