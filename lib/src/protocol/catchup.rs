//! The catch-up decision: given our heads and a peer's, which ranges to pull; and how a
//! pulled page becomes whole transactions.
//!
//! Pure. The engine carries heads and pages over request-response; this module only
//! decides. Heads are "the highest contiguous sequence number applied" per origin, so a
//! peer that is behind pulls exactly (our head, their head] and nothing it already has.

use crate::clock::NodeId;
use crate::protocol::{ChangeSet, SyncOperation};
use std::collections::HashMap;

/// A range of one origin's transactions to pull from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Need {
    pub origin: NodeId,
    /// We hold everything up to here.
    pub after: u64,
    /// The peer holds everything up to here.
    pub through: u64,
}

/// The ranges a peer with `theirs` can give us, holding `ours`. Our own origin is skipped:
/// nobody knows our transactions better than we do.
pub(crate) fn needs(
    ours: &HashMap<NodeId, u64>,
    theirs: &[(NodeId, u64)],
    me: NodeId,
) -> Vec<Need> {
    let mut needs: Vec<Need> = theirs
        .iter()
        .filter(|(origin, _)| *origin != me)
        .filter_map(|&(origin, through)| {
            let after = ours.get(&origin).copied().unwrap_or(0);
            (through > after).then_some(Need {
                origin,
                after,
                through,
            })
        })
        .collect();
    needs.sort_by_key(|need| need.origin);
    needs
}

/// How many transactions behind `ours` is compared with `theirs`. The heads are a
/// peer's claims: the sum saturates rather than overflowing.
pub(crate) fn behind(ours: &HashMap<NodeId, u64>, theirs: &[(NodeId, u64)], me: NodeId) -> u64 {
    needs(ours, theirs, me).iter().fold(0u64, |sum, need| {
        sum.saturating_add(need.through - need.after)
    })
}

/// Groups a page's operations into whole transactions of `origin`. A transaction may span
/// pages: the operations of the last sequence number are held back in `carry` until the
/// next page (or the end) shows the transaction is complete.
pub(crate) fn assemble(
    origin: NodeId,
    carry: &mut Vec<(u64, SyncOperation)>,
    page: Vec<(u64, SyncOperation)>,
    last_page: bool,
) -> Vec<ChangeSet> {
    carry.extend(page);
    let mut sets: Vec<ChangeSet> = Vec::new();
    let keep_from = if last_page {
        carry.len()
    } else {
        // Everything before the first operation of the last sequence number is complete.
        let last_seq = carry.last().map(|(seq, _)| *seq);
        carry
            .iter()
            .position(|(seq, _)| Some(*seq) == last_seq)
            .unwrap_or(0)
    };
    for (seq, operation) in carry.drain(..keep_from) {
        match sets.last_mut() {
            Some(set) if set.seq == seq => set.operations.push(operation),
            _ => sets.push(ChangeSet {
                origin,
                seq,
                operations: vec![operation],
            }),
        }
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::protocol::WriteKind;

    const ME: NodeId = NodeId([1; 16]);
    const A: NodeId = NodeId([2; 16]);
    const B: NodeId = NodeId([3; 16]);

    #[test]
    fn pulls_only_what_is_missing() {
        let ours = HashMap::from([(A, 5), (ME, 9)]);
        let theirs = [(A, 8), (B, 2), (ME, 12)];
        assert_eq!(
            needs(&ours, &theirs, ME),
            vec![
                Need {
                    origin: A,
                    after: 5,
                    through: 8
                },
                Need {
                    origin: B,
                    after: 0,
                    through: 2
                }
            ]
        );
        assert_eq!(behind(&ours, &theirs, ME), 5);
        assert!(needs(&HashMap::from([(A, 8)]), &[(A, 8)], ME).is_empty());
    }

    #[test]
    fn behind_saturates_on_huge_claims() {
        let theirs = [(A, u64::MAX), (B, u64::MAX)];
        assert_eq!(behind(&HashMap::new(), &theirs, ME), u64::MAX);
    }

    fn op(n: u64) -> (u64, SyncOperation) {
        (
            n,
            SyncOperation {
                table: "t".into(),
                kind: WriteKind::Update,
                hlc: Hlc {
                    time_ms: n,
                    counter: 0,
                    node: A,
                },
                primary_key: vec![("id".into(), (n as i64).into())],
                values: vec![],
            },
        )
    }

    #[test]
    fn a_transaction_split_across_pages_is_applied_whole() {
        let mut carry = Vec::new();
        let first = assemble(A, &mut carry, vec![op(1), op(2), op(2)], false);
        assert_eq!(
            first
                .iter()
                .map(|s| (s.seq, s.operations.len()))
                .collect::<Vec<_>>(),
            [(1, 1)]
        );
        let second = assemble(A, &mut carry, vec![op(2), op(3)], false);
        assert_eq!(
            second
                .iter()
                .map(|s| (s.seq, s.operations.len()))
                .collect::<Vec<_>>(),
            [(2, 3)]
        );
        let last = assemble(A, &mut carry, vec![], true);
        assert_eq!(
            last.iter()
                .map(|s| (s.seq, s.operations.len()))
                .collect::<Vec<_>>(),
            [(3, 1)]
        );
        assert!(carry.is_empty());
    }
}
