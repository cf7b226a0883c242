//! Arbitrary bytes into every wire decoder (gossip, catch-up request, catch-up response).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wavesyncdb::testing::decode_any(data);
});
