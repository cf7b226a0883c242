//! One catch-up pull, as a pure state machine: which pages to accept, how much of a
//! transaction may be held between pages, and how far the origin's head may advance at
//! the end.
//!
//! Pure: no database, no swarm. The driver feeds it pages and carries out its answers.
//!
//! ## When a head may advance
//! A head is "every transaction of this origin up to here is applied". Transactions whose
//! cells were all superseded later leave no entries in any log, so a pull cannot always
//! show every sequence number; something must let the head pass those. A peer's heads
//! claim alone never does: a claim of `(victim, 2^62)` followed by an empty page would
//! make every later write of the victim look applied already. The evidence accepted:
//! - applying a transaction advances the head over it when it is the next one
//!   (`apply_remote_batch`, through `log::advance_head_statement`);
//! - at the end of a complete pull, the head may pass the sequence numbers without
//!   entries up to the highest sequence number *received* in that pull: the server sent
//!   entries that far, so everything before them that it holds was sent too;
//! - when the peer served its *own* origin (its heads reply about itself, over a
//!   connection authenticated as that origin), up to `through`: nobody knows an origin's
//!   transactions better than the origin, and a peer can only silence itself this way.
//!
//! Sequence numbers past that stay unapplied: the next round of heads pulls them again
//! (an empty range is one index seek), and live messages of the origin are applied
//! whatever their sequence number, so nothing is lost meanwhile.
//!
//! ## Bounds
//! A page must lie inside the range asked for, in order (else it is forged, and the pull
//! ends). The operations of a transaction that spans pages are held until its last
//! operation arrives, up to [`CARRY_BUDGET`] bytes; a larger transaction ends the pull
//! (logged), and a heads reply is cut to [`MAX_HEADS`] origins.

use crate::clock::NodeId;
use crate::protocol::catchup::assemble;
use crate::protocol::{ChangeSet, SyncOperation};
use crate::value::CellValue;

/// Bytes of one transaction held between pages of one pull.
pub(crate) const CARRY_BUDGET: usize = 64 << 20;
/// Origins kept from one heads reply.
pub(crate) const MAX_HEADS: usize = 16_384;
/// Pulls from one peer at a time.
pub(crate) const PULLS_PER_PEER: usize = 4;
/// Sequence numbers without entries a head may pass at the end of one pull.
pub(crate) const MAX_SKIP: u64 = 100_000;

/// Roughly the memory an operation takes.
pub(crate) fn operation_bytes(op: &SyncOperation) -> usize {
    let cell = |(name, value): &(String, CellValue)| {
        name.len()
            + 16
            + match value {
                CellValue::Text(text) => text.len(),
                CellValue::Blob(blob) => blob.len(),
                _ => 8,
            }
    };
    64 + op.table.len()
        + op.primary_key.iter().map(cell).sum::<usize>()
        + op.values.iter().map(cell).sum::<usize>()
}

/// Why a page ends the pull.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PageFault {
    /// Entries outside the range asked for, or out of order: the server lies.
    OutOfRange { seq: u64 },
    /// One transaction larger than the carry budget.
    TooLarge { seq: u64, bytes: usize },
}

/// A pull of `origin`'s range (after, through] from one peer.
#[derive(Debug)]
pub(crate) struct PullProgress {
    pub origin: NodeId,
    pub after: u64,
    pub through: u64,
    /// Whether the peer serving is the origin itself.
    pub from_origin: bool,
    highest_received: Option<u64>,
    carry: Vec<(u64, SyncOperation)>,
    carry_bytes: usize,
}

impl PullProgress {
    pub(crate) fn new(origin: NodeId, after: u64, through: u64, from_origin: bool) -> Self {
        PullProgress {
            origin,
            after,
            through,
            from_origin,
            highest_received: None,
            carry: Vec::new(),
            carry_bytes: 0,
        }
    }

    /// Bytes held between pages.
    pub(crate) fn carry_bytes(&self) -> usize {
        self.carry_bytes
    }

    /// Takes one page; returns the whole transactions it completes.
    pub(crate) fn page(
        &mut self,
        operations: Vec<(u64, SyncOperation)>,
        last: bool,
    ) -> Result<Vec<ChangeSet>, PageFault> {
        let mut previous = self
            .carry
            .last()
            .map(|(seq, _)| *seq)
            .or(self.highest_received);
        for (seq, _) in &operations {
            let seq = *seq;
            if seq <= self.after || seq > self.through || previous.is_some_and(|p| seq < p) {
                return Err(PageFault::OutOfRange { seq });
            }
            previous = Some(seq);
        }
        if let Some(seq) = previous {
            self.highest_received = Some(seq);
        }
        let sets = assemble(self.origin, &mut self.carry, operations, last);
        self.carry_bytes = self.carry.iter().map(|(_, op)| operation_bytes(op)).sum();
        if self.carry_bytes > CARRY_BUDGET {
            let seq = self.carry.first().map_or(0, |(seq, _)| *seq);
            return Err(PageFault::TooLarge {
                seq,
                bytes: self.carry_bytes,
            });
        }
        Ok(sets)
    }

    /// After the last page was applied: how far the head may advance over sequence
    /// numbers without entries (see the module doc), if anywhere.
    pub(crate) fn head_target(&self) -> Option<u64> {
        let evidence = if self.from_origin {
            Some(self.through)
        } else {
            self.highest_received
        }?;
        Some(evidence.min(self.through))
    }
}

/// The sequence numbers `(first, last)` the head (now `head`) may pass after a pull
/// reaching `target`: at most [`MAX_SKIP`] of them; `None` if there are none.
pub(crate) fn skip_range(head: u64, target: u64) -> Option<(u64, u64)> {
    let first = head.checked_add(1).filter(|_| target > head)?;
    Some((first, target.min(head.saturating_add(MAX_SKIP))))
}

/// A heads reply, bounded: at most [`MAX_HEADS`] origins, one entry per origin.
pub(crate) fn bounded_heads(mut heads: Vec<(NodeId, u64)>) -> Vec<(NodeId, u64)> {
    heads.truncate(MAX_HEADS);
    heads.sort_unstable();
    heads.dedup_by_key(|(origin, _)| *origin);
    heads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::protocol::WriteKind;
    use proptest::prelude::*;

    const O: NodeId = NodeId([5; 16]);

    fn op(seq: u64, blob: usize) -> (u64, SyncOperation) {
        (
            seq,
            SyncOperation {
                table: "t".into(),
                kind: WriteKind::Insert,
                hlc: Hlc {
                    time_ms: seq,
                    counter: 0,
                    node: O,
                },
                primary_key: vec![("id".into(), CellValue::Integer(seq as i64))],
                values: vec![("b".into(), CellValue::Blob(vec![0; blob]))],
            },
        )
    }

    #[test]
    fn a_claim_with_an_empty_page_advances_nothing() {
        let mut pull = PullProgress::new(O, 3, 1 << 62, false);
        assert_eq!(pull.page(vec![], true), Ok(vec![]));
        assert_eq!(pull.head_target(), None);
    }

    #[test]
    fn the_head_passes_empty_seqs_only_up_to_what_was_received() {
        let mut pull = PullProgress::new(O, 0, 100, false);
        let sets = pull.page(vec![op(4, 1), op(9, 1)], true).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(pull.head_target(), Some(9));
    }

    #[test]
    fn the_origin_itself_attests_its_range() {
        let mut pull = PullProgress::new(O, 0, 100, true);
        pull.page(vec![op(4, 1)], true).unwrap();
        assert_eq!(pull.head_target(), Some(100));
    }

    #[test]
    fn pages_outside_the_range_or_out_of_order_are_forged() {
        let mut pull = PullProgress::new(O, 5, 10, false);
        assert_eq!(
            pull.page(vec![op(5, 1)], false),
            Err(PageFault::OutOfRange { seq: 5 })
        );
        let mut pull = PullProgress::new(O, 5, 10, false);
        assert_eq!(
            pull.page(vec![op(11, 1)], false),
            Err(PageFault::OutOfRange { seq: 11 })
        );
        let mut pull = PullProgress::new(O, 0, 10, false);
        pull.page(vec![op(7, 1)], false).unwrap();
        assert_eq!(
            pull.page(vec![op(6, 1)], false),
            Err(PageFault::OutOfRange { seq: 6 })
        );
    }

    #[test]
    fn a_transaction_over_the_carry_budget_ends_the_pull() {
        let mut pull = PullProgress::new(O, 0, 10, false);
        let page = (0..5).map(|_| op(1, 16 << 20)).collect();
        assert!(matches!(
            pull.page(page, false),
            Err(PageFault::TooLarge { seq: 1, .. })
        ));
    }

    #[test]
    fn skips_are_bounded_and_never_overflow() {
        assert_eq!(skip_range(3, 7), Some((4, 7)));
        assert_eq!(skip_range(7, 7), None);
        assert_eq!(skip_range(9, 7), None);
        assert_eq!(skip_range(0, u64::MAX), Some((1, MAX_SKIP)));
        assert_eq!(skip_range(u64::MAX, u64::MAX), None);
    }

    #[test]
    fn heads_replies_are_bounded() {
        let heads: Vec<(NodeId, u64)> = (0..100_000u32)
            .map(|n| {
                let mut id = [0; 16];
                id[..4].copy_from_slice(&n.to_be_bytes());
                (NodeId(id), 1)
            })
            .collect();
        assert_eq!(bounded_heads(heads).len(), MAX_HEADS);
    }

    proptest! {
        /// Whatever pages a server sends, the head target never passes what was
        /// received (unless the origin serves itself), nor the range.
        #[test]
        fn the_target_is_backed_by_data(
            after in 0u64..50,
            len in 0u64..50,
            seqs in proptest::collection::vec(0u64..120, 0..30),
            split in 0usize..30,
            from_origin in any::<bool>(),
        ) {
            let through = after + len;
            let mut pull = PullProgress::new(O, after, through, from_origin);
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            let ops: Vec<_> = sorted.iter().map(|s| op(*s, 1)).collect();
            let at = split.min(ops.len());
            let (first, second) = ops.split_at(at);
            let ok = pull.page(first.to_vec(), false).is_ok()
                && pull.page(second.to_vec(), true).is_ok();
            let valid = sorted.iter().all(|s| *s > after && *s <= through);
            prop_assert_eq!(ok, valid);
            if ok {
                let target = pull.head_target();
                if from_origin {
                    prop_assert_eq!(target, Some(through));
                } else {
                    prop_assert_eq!(target, sorted.last().copied());
                }
            }
        }
    }
}
