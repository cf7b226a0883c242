//! README.md's code blocks as doc tests: every `rust` block of the README compiles, and
//! runs unless it is marked `no_run` (next to which the README says why) or `ignore` (the
//! Dioxus example, compiled as the doc test of `wavesyncdb_dioxus::launch`).
//!
//! Owns nothing else: the module exists only under `cfg(doctest)`. Blocks that write
//! `./app.db` are `standalone_crate` and move into a temp dir in hidden lines first, so
//! they run in a process of their own and leave nothing behind.
#![doc = include_str!("../../README.md")]
