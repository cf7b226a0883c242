//! Origins' signed statements about their own heads, relayed by every peer.
//!
//! Pure (signing and checking are computation; no I/O). A pull from a peer that is not
//! the origin cannot show sequence numbers whose entries were all superseded at its end
//! of the range; a heads claim alone must not let a head pass them (`protocol::heads`).
//! What can: the origin's own word. Each node signs "I have issued transactions up to
//! `seq`, and those after `live` have nothing left in my log" for its group ([`sign`]); peers verify such statements ([`verify`]), keep the
//! highest per origin ([`Attested`]) and pass them on in their heads replies. A statement
//! cannot be forged for another node (its key must hash to the origin's node id), nor
//! replayed across groups (the group id is signed); an old one only says less.

use crate::clock::NodeId;
use crate::protocol::Attestation;
use std::collections::HashMap;

/// The largest public key or signature accepted (ed25519 needs 36 and 64 bytes).
const MAX_KEY_BYTES: usize = 256;

fn message(group: &str, origin: NodeId, seq: u64, live: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(64 + group.len());
    message.extend_from_slice(b"wavesyncdb-head/1\0");
    message.extend_from_slice(group.as_bytes());
    message.push(0);
    message.extend_from_slice(&origin.0);
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(&live.to_be_bytes());
    message
}

/// This node's statement that it has issued transactions up to `seq`, and that those
/// after `live` have no entries left in its log.
pub(crate) fn sign(
    keypair: &libp2p::identity::Keypair,
    group: &str,
    seq: u64,
    live: u64,
) -> Option<Attestation> {
    let public = keypair.public();
    let origin = NodeId::from_peer_id_bytes(&public.to_peer_id().to_bytes());
    let live = live.min(seq);
    let signature = keypair.sign(&message(group, origin, seq, live)).ok()?;
    Some(Attestation {
        origin,
        seq,
        live,
        public_key: public.encode_protobuf(),
        signature,
    })
}

/// Whether `attestation` was signed by its origin, for `group`.
pub(crate) fn verify(group: &str, attestation: &Attestation) -> bool {
    if attestation.public_key.len() > MAX_KEY_BYTES || attestation.signature.len() > MAX_KEY_BYTES {
        return false;
    }
    let Ok(public) = libp2p::identity::PublicKey::try_decode_protobuf(&attestation.public_key)
    else {
        return false;
    };
    NodeId::from_peer_id_bytes(&public.to_peer_id().to_bytes()) == attestation.origin
        && public.verify(
            &message(group, attestation.origin, attestation.seq, attestation.live),
            &attestation.signature,
        )
}

/// The highest verified statement per origin, for at most `capacity` origins.
#[derive(Debug)]
pub(crate) struct Attested {
    capacity: usize,
    best: HashMap<NodeId, Attestation>,
}

impl Attested {
    pub(crate) fn new(capacity: usize) -> Attested {
        Attested {
            capacity,
            best: HashMap::new(),
        }
    }

    /// Whether `attestation` says more than what is held: more transactions issued, or
    /// as many with fewer of them still holding entries (a later statement).
    pub(crate) fn says_more(&self, attestation: &Attestation) -> bool {
        self.best.get(&attestation.origin).is_none_or(|held| {
            (attestation.seq, std::cmp::Reverse(attestation.live))
                > (held.seq, std::cmp::Reverse(held.live))
        })
    }

    /// Keeps `attestation` if it is verified and says more than what is held.
    pub(crate) fn offer(&mut self, group: &str, attestation: Attestation) {
        let held = self.best.get(&attestation.origin).map(|a| a.seq);
        if !self.says_more(&attestation)
            || (held.is_none() && self.best.len() >= self.capacity)
            || !verify(group, &attestation)
        {
            return;
        }
        self.best.insert(attestation.origin, attestation);
    }

    /// `origin`'s latest statement as `(seq, live)`.
    pub(crate) fn statement(&self, origin: NodeId) -> Option<(u64, u64)> {
        self.best.get(&origin).map(|a| (a.seq, a.live))
    }

    /// The statements held for these origins, to relay.
    pub(crate) fn for_origins(&self, origins: impl Iterator<Item = NodeId>) -> Vec<Attestation> {
        origins.filter_map(|o| self.best.get(&o).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_verifies_for_its_origin_and_group_only() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let statement = sign(&key, "g", 7, 3).unwrap();
        assert!(verify("g", &statement));
        assert!(!verify("other group", &statement));
        let mut raised = statement.clone();
        raised.seq = 1 << 62;
        assert!(!verify("g", &raised));
        let mut lowered = statement.clone();
        lowered.live = 0;
        assert!(!verify("g", &lowered));
        let mut someone_else = statement.clone();
        someone_else.origin = NodeId([1; 16]);
        assert!(!verify("g", &someone_else));
        let mut garbage = statement;
        garbage.public_key = vec![0; 40];
        assert!(!verify("g", &garbage));
    }

    #[test]
    fn the_highest_verified_statement_is_kept_within_capacity() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut attested = Attested::new(1);
        attested.offer("g", sign(&key, "g", 5, 5).unwrap());
        attested.offer("g", sign(&key, "g", 3, 0).unwrap());
        let origin = sign(&key, "g", 1, 0).unwrap().origin;
        assert_eq!(attested.statement(origin), Some((5, 5)));
        // A later statement about as many transactions, fewer of them still holding data.
        attested.offer("g", sign(&key, "g", 5, 2).unwrap());
        assert_eq!(attested.statement(origin), Some((5, 2)));
        attested.offer("g", sign(&key, "g", 5, 4).unwrap());
        assert_eq!(attested.statement(origin), Some((5, 2)));
        let mut forged = sign(&key, "g", 9, 0).unwrap();
        forged.seq = 10;
        attested.offer("g", forged);
        assert_eq!(attested.statement(origin), Some((5, 2)));
        let other = libp2p::identity::Keypair::generate_ed25519();
        let theirs = sign(&other, "g", 4, 0).unwrap();
        let their_origin = theirs.origin;
        attested.offer("g", theirs);
        assert_eq!(attested.statement(their_origin), None, "over capacity");
        assert_eq!(
            attested
                .for_origins([origin, their_origin].into_iter())
                .len(),
            1
        );
    }
}
