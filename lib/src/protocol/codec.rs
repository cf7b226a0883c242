//! Bytes to messages and back: size-bounded, and never a panic on any input.
//!
//! Owns the wire encoding (postcard, a compact and deterministic serde format) of
//! [`Gossip`], [`Request`] and [`Response`]. Pure. It must never allocate more than the
//! size bound allows or trust a length that came from the wire: a message longer than
//! the bound is refused before it is decoded.

use super::{Gossip, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes are not a message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Longer than the configured bound.
    #[error("message of {len} bytes exceeds the {max}-byte bound")]
    TooLarge { len: usize, max: usize },
    /// Not a message of a protocol version we speak.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing our own plain data types to a Vec cannot fail; if it ever did, an empty
    // message is rejected by the receiver rather than panicking here.
    postcard::to_stdvec(message).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(postcard::from_bytes(bytes)?)
}

pub(crate) fn encode_gossip(message: &Gossip) -> Vec<u8> {
    encode(message)
}

pub(crate) fn decode_gossip(bytes: &[u8], max: usize) -> Result<Gossip, DecodeError> {
    decode(bytes, max)
}

/// How many versions (and variants within a version) past ours a tag may be and still
/// be taken for a newer protocol rather than garbage.
const NEWER_TAGS: u32 = 8;

/// Whether bytes that did not decode look like a gossip message of a newer protocol
/// version, or a newer variant of ours: a valid first tag just past the ones we know.
/// Such a message is refused but never counted against its sender (it may simply run a
/// newer release); other undecodable bytes are.
pub(crate) fn is_newer_variant(bytes: &[u8]) -> bool {
    let Ok((version, rest)) = postcard::take_from_bytes::<u32>(bytes) else {
        return false;
    };
    // `Gossip::V1` is tag 0; `GossipV1` has the tags 0 and 1.
    match version {
        0 => postcard::take_from_bytes::<u32>(rest)
            .is_ok_and(|(variant, _)| (2..2 + NEWER_TAGS).contains(&variant)),
        v => v <= NEWER_TAGS,
    }
}

pub(crate) fn encode_request(message: &Request) -> Vec<u8> {
    encode(message)
}

pub(crate) fn decode_request(bytes: &[u8], max: usize) -> Result<Request, DecodeError> {
    decode(bytes, max)
}

pub(crate) fn encode_response(message: &Response) -> Vec<u8> {
    encode(message)
}

pub(crate) fn decode_response(bytes: &[u8], max: usize) -> Result<Response, DecodeError> {
    decode(bytes, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Hlc, NodeId};
    use crate::protocol::{ChangeSet, GossipV1, SyncOperation, WriteKind};
    use proptest::prelude::*;

    fn sample() -> Gossip {
        Gossip::V1(GossipV1::ChangeSet(ChangeSet {
            origin: NodeId([7; 16]),
            seq: 3,
            operations: vec![SyncOperation {
                table: "tasks".into(),
                kind: WriteKind::Insert,
                hlc: Hlc {
                    time_ms: 1,
                    counter: 2,
                    node: NodeId([7; 16]),
                },
                primary_key: vec![("id".into(), "a".into())],
                values: vec![("title".into(), "x, 'y'".into())],
            }],
        }))
    }

    #[test]
    fn round_trips() {
        let bytes = encode_gossip(&sample());
        assert_eq!(decode_gossip(&bytes, 1 << 20).unwrap(), sample());
    }

    #[test]
    fn refuses_oversized_input_before_decoding() {
        let bytes = encode_gossip(&sample());
        assert!(matches!(
            decode_gossip(&bytes, bytes.len() - 1),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_unknown_version_is_malformed() {
        let mut bytes = encode_gossip(&sample());
        bytes[0] = 9;
        assert!(matches!(
            decode_gossip(&bytes, 1 << 20),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn newer_versions_and_variants_are_told_from_garbage() {
        let ours = encode_gossip(&sample());
        assert!(!is_newer_variant(&ours));
        let mut v2 = ours.clone();
        v2[0] = 1;
        assert!(is_newer_variant(&v2));
        let mut new_variant = ours.clone();
        new_variant[1] = 2;
        assert!(is_newer_variant(&new_variant));
        assert!(!is_newer_variant(b"definitely not a message"));
        assert!(!is_newer_variant(b"garbage"));
        assert!(!is_newer_variant(&[]));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_gossip(&bytes, 1 << 20);
            let _ = decode_request(&bytes, 1 << 20);
            let _ = decode_response(&bytes, 1 << 20);
        }

        #[test]
        fn decoding_mutated_messages_never_panics(index in 0usize..200, byte in any::<u8>()) {
            let mut bytes = encode_gossip(&sample());
            let at = index % bytes.len();
            bytes[at] = byte;
            let _ = decode_gossip(&bytes, 1 << 20);
        }
    }
}
