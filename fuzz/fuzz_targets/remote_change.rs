//! Arbitrary bytes as a received gossip message, through validation, merge and apply on a
//! real (in-memory) SQLite database.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wavesyncdb::testing::ApplyHarness;

static HARNESS: OnceLock<ApplyHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(|| ApplyHarness::new().expect("open the fuzz database"));
    let _ = harness.apply_gossip(data);
});
