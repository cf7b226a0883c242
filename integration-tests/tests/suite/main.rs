//! The end-to-end suite: real peers (and, where the point is processes, real OS
//! processes) on 127.0.0.1 and in network namespaces. One test binary, one module per
//! subject: linked once instead of once per file. Run one subject with
//! `cargo test -p wavesyncdb-integration-tests --test suite <module>::`. `discovery`, which
//! finds entities by crate path, stays a test binary of its own.

mod catch_up;
mod churn;
mod concurrent_writers;
mod conflicts_three_peers;
mod connect_options;
mod crash_safety;
mod existing_rows;
mod forged_parts;
mod group_boundary;
mod hostile_bounds;
mod hostile_heads;
mod hostile_input;
mod knowing_when_safe;
mod large_values;
mod late_registration;
mod live_two_peers;
mod lost_commits;
mod nat;
mod private_group;
mod reconnect;
mod relations;
mod slow_clock;
mod sync_events;
mod triggers;
