//! Hooks for WaveSyncDB's own tests and fuzz targets: not a stable API.
//!
//! It exposes the wire encoding and the inbound checks so a test peer can send crafted
//! messages over a real swarm and a fuzzer can drive the decoder and the validation. It
//! must never offer a way around validation: everything here goes through the same code
//! as real traffic.

use crate::protocol::codec;
use crate::protocol::{ChangeSet, Gossip, GossipV1};

/// The gossip bytes of a whole change set, as a peer publishes it.
pub fn encode_live(change_set: &ChangeSet) -> Vec<u8> {
    codec::encode_gossip(&Gossip::V1(GossipV1::ChangeSet(change_set.clone())))
}

/// Runs the wire decoders on arbitrary bytes (gossip, catch-up request and response);
/// returns how many of them accepted the bytes. Never panics.
pub fn decode_any(bytes: &[u8]) -> usize {
    let max = 1 << 20;
    usize::from(codec::decode_gossip(bytes, max).is_ok())
        + usize::from(codec::decode_request(bytes, max).is_ok())
        + usize::from(codec::decode_response(bytes, max).is_ok())
}
