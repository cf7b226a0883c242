//! One catch-up pull, as a pure state machine: which pages to accept, how much of a
//! transaction may be held between pages, and which sequence numbers the origin's head
//! may pass.
//!
//! Pure: no database, no swarm. The driver feeds it pages and carries out its answers.
//!
//! ## When a head may advance
//! A head is "every transaction of this origin up to here is applied". Transactions whose
//! cells were all superseded later leave no entries in any log, so a pull cannot always
//! show every sequence number; something must let the head pass those. A peer's heads
//! claim alone never does: a claim of `(victim, 2^62)` followed by an empty page would
//! make every later write of the victim look applied already. The evidence accepted:
//! - a sequence number *below one received* in the pull: the server sends entries in
//!   sequence order, so one it skipped before an entry it sent holds nothing there;
//! - when the peer serves its *own* origin (its heads reply about itself, over a
//!   connection authenticated as that origin), every sequence number up to `through`:
//!   nobody knows an origin's transactions better, and a peer can only silence itself;
//! - from any peer, past the last number received, up to what the origin itself
//!   *signed* it had issued (`protocol::attest`, relayed in heads replies) and up to
//!   `through`, when the origin also signed that none of those has entries left in its
//!   log (`live` is at most what this pull already covers). Entries of old transactions
//!   only ever disappear (superseded by later writes, which reach us through their own
//!   origins), so the statement stays true; it never names a transaction not issued,
//!   nor one whose data still exists, so no peer can make a head pass an origin's future
//!   writes, or its past ones that still hold data, by claims or empty pages.
//!
//! Such numbers are handed to apply as *empty* change sets, in order among the real
//! ones, so there is one way a head moves: apply's conditional step
//! (`log::advance_head_statement`, from the number just below only). If apply does not
//! count a set, the steps after it change nothing either. At most [`MAX_SKIP`] empty
//! sets per pull; the next round goes on from where the head stopped. Numbers past the
//! evidence stay unapplied: the next round of heads pulls them again (an empty range is
//! one index seek), and live messages of the origin are applied whatever their sequence
//! number, so nothing is lost meanwhile.
//!
//! ## Bounds
//! A page must lie inside the range asked for, in order (else it is forged, and the pull
//! ends). The operations of a transaction that spans pages are held until its last
//! operation arrives, up to [`CARRY_BUDGET`] bytes; a larger transaction ends the pull
//! (logged). A heads reply is cut to [`MAX_HEADS`] origins, and at most
//! [`PULLS_PER_PEER`] pulls go to one peer at a time.

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
/// Sequence numbers without entries one pull may pass (as empty change sets).
pub(crate) const MAX_SKIP: u64 = 10_000;

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
    /// What the origin signed, `(issued through, nothing left after)`, if known.
    pub attested: Option<(u64, u64)>,
    /// The last sequence number handed out (as a set or an empty set), or `after`.
    emitted: u64,
    /// Empty sets this pull may still hand out.
    skips_left: u64,
    carry: Vec<(u64, SyncOperation)>,
    carry_bytes: usize,
}

impl PullProgress {
    pub(crate) fn new(
        origin: NodeId,
        after: u64,
        through: u64,
        from_origin: bool,
        attested: Option<(u64, u64)>,
    ) -> Self {
        PullProgress {
            origin,
            after,
            through,
            from_origin,
            attested,
            emitted: after,
            skips_left: MAX_SKIP,
            carry: Vec::new(),
            carry_bytes: 0,
        }
    }

    /// Bytes held between pages.
    pub(crate) fn carry_bytes(&self) -> usize {
        self.carry_bytes
    }

    /// Takes one page; returns the whole transactions it completes, in order, with an
    /// empty set for every sequence number the evidence lets the head pass (see the
    /// module doc).
    pub(crate) fn page(
        &mut self,
        operations: Vec<(u64, SyncOperation)>,
        last: bool,
    ) -> Result<Vec<ChangeSet>, PageFault> {
        let mut previous = self.carry.last().map_or(self.emitted, |(seq, _)| *seq);
        for (seq, _) in &operations {
            let seq = *seq;
            if seq <= self.after || seq > self.through || seq < previous {
                return Err(PageFault::OutOfRange { seq });
            }
            previous = seq;
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
        let mut out = Vec::with_capacity(sets.len());
        for set in sets {
            self.pass_before(set.seq, &mut out);
            self.emitted = self.emitted.max(set.seq);
            out.push(set);
        }
        if last {
            let evidence = match self.attested {
                _ if self.from_origin => self.through,
                Some((issued, live)) if live <= self.emitted => issued.min(self.through),
                _ => self.emitted,
            };
            self.pass_through(evidence, &mut out);
        }
        Ok(out)
    }

    /// Empty sets for the numbers after the last one handed out and before `seq`, as far
    /// as the budget allows.
    fn pass_before(&mut self, seq: u64, out: &mut Vec<ChangeSet>) {
        while self.skips_left > 0 && self.emitted.saturating_add(1) < seq {
            self.push_empty(out);
        }
    }

    /// Empty sets up to `end`, as far as the budget allows.
    fn pass_through(&mut self, end: u64, out: &mut Vec<ChangeSet>) {
        while self.skips_left > 0 && self.emitted < end {
            self.push_empty(out);
        }
    }

    fn push_empty(&mut self, out: &mut Vec<ChangeSet>) {
        self.emitted += 1;
        self.skips_left -= 1;
        out.push(ChangeSet {
            origin: self.origin,
            seq: self.emitted,
            operations: Vec::new(),
        });
    }
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

    fn seqs(sets: &[ChangeSet]) -> Vec<(u64, usize)> {
        sets.iter().map(|s| (s.seq, s.operations.len())).collect()
    }

    #[test]
    fn a_claim_with_an_empty_page_advances_nothing() {
        let mut pull = PullProgress::new(O, 3, 1 << 62, false, None);
        assert_eq!(pull.page(vec![], true), Ok(vec![]));
    }

    #[test]
    fn numbers_below_a_received_one_are_passed() {
        let mut pull = PullProgress::new(O, 0, 100, false, None);
        let first = pull.page(vec![op(2, 1), op(4, 1)], false).unwrap();
        assert_eq!(seqs(&first), [(1, 0), (2, 1)]);
        let last = pull.page(vec![op(4, 1), op(6, 1)], true).unwrap();
        assert_eq!(seqs(&last), [(3, 0), (4, 2), (5, 0), (6, 1)]);
    }

    #[test]
    fn the_origin_itself_attests_its_range() {
        let mut pull = PullProgress::new(O, 0, 5, true, None);
        let sets = pull.page(vec![op(2, 1)], true).unwrap();
        assert_eq!(seqs(&sets), [(1, 0), (2, 1), (3, 0), (4, 0), (5, 0)]);
    }

    #[test]
    fn the_origins_signed_word_lets_any_peer_pass_its_numbers() {
        // Issued through 4, nothing left after 2: past what was received, 3 and 4 pass.
        let mut pull = PullProgress::new(O, 0, 1 << 62, false, Some((4, 2)));
        let sets = pull.page(vec![op(2, 1)], true).unwrap();
        assert_eq!(seqs(&sets), [(1, 0), (2, 1), (3, 0), (4, 0)]);
        // Bounded by the range asked for.
        let mut pull = PullProgress::new(O, 0, 3, false, Some((9, 0)));
        assert_eq!(pull.page(vec![], true).unwrap().len(), 3);
    }

    #[test]
    fn numbers_that_still_hold_data_are_never_passed_on_an_empty_page() {
        // The origin's 1..=10 all hold data: a server that sends nothing passes nothing.
        let mut pull = PullProgress::new(O, 0, 1 << 62, false, Some((10, 10)));
        assert_eq!(pull.page(vec![], true), Ok(vec![]));
        let mut pull = PullProgress::new(O, 0, 1 << 62, false, Some((10, 10)));
        let sets = pull.page(vec![op(5, 1)], true).unwrap();
        assert_eq!(seqs(&sets).last(), Some(&(5, 1)));
    }

    #[test]
    fn empty_sets_are_bounded_per_pull_and_never_overflow() {
        let mut pull = PullProgress::new(O, 0, 1 << 62, true, None);
        let sets = pull.page(vec![], true).unwrap();
        assert_eq!(sets.len() as u64, MAX_SKIP);
        assert_eq!(sets.last().map(|s| s.seq), Some(MAX_SKIP));
        let mut pull = PullProgress::new(O, u64::MAX - 2, u64::MAX, true, None);
        let sets = pull.page(vec![], true).unwrap();
        assert_eq!(seqs(&sets), [(u64::MAX - 1, 0), (u64::MAX, 0)]);
    }

    #[test]
    fn pages_outside_the_range_or_out_of_order_are_forged() {
        let mut pull = PullProgress::new(O, 5, 10, false, None);
        assert_eq!(
            pull.page(vec![op(5, 1)], false),
            Err(PageFault::OutOfRange { seq: 5 })
        );
        let mut pull = PullProgress::new(O, 5, 10, false, None);
        assert_eq!(
            pull.page(vec![op(11, 1)], false),
            Err(PageFault::OutOfRange { seq: 11 })
        );
        let mut pull = PullProgress::new(O, 0, 10, false, None);
        pull.page(vec![op(7, 1)], false).unwrap();
        assert_eq!(
            pull.page(vec![op(6, 1)], false),
            Err(PageFault::OutOfRange { seq: 6 })
        );
    }

    #[test]
    fn a_transaction_over_the_carry_budget_ends_the_pull() {
        let mut pull = PullProgress::new(O, 0, 10, false, None);
        let page = (0..5).map(|_| op(1, 16 << 20)).collect();
        assert!(matches!(
            pull.page(page, false),
            Err(PageFault::TooLarge { seq: 1, .. })
        ));
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
        /// Whatever pages a server sends, the sets handed to apply are in order without
        /// repeats, hold every received operation, and pass no number past the last one
        /// received (unless the origin serves itself) nor past the range.
        #[test]
        fn empty_sets_are_backed_by_evidence(
            after in 0u64..50,
            len in 0u64..50,
            received in proptest::collection::vec(0u64..120, 0..30),
            split in 0usize..30,
            from_origin in any::<bool>(),
            issued in 0u64..120,
            live in 0u64..120,
        ) {
            let attested = Some((issued, live.min(issued)));
            let through = after + len;
            let mut pull = PullProgress::new(O, after, through, from_origin, attested);
            let mut sorted = received.clone();
            sorted.sort_unstable();
            let ops: Vec<_> = sorted.iter().map(|s| op(*s, 1)).collect();
            let at = split.min(ops.len());
            let (first, second) = ops.split_at(at);
            let mut sets = Vec::new();
            let ok = pull.page(first.to_vec(), false).map(|s| sets.extend(s)).is_ok()
                && pull.page(second.to_vec(), true).map(|s| sets.extend(s)).is_ok();
            let valid = sorted.iter().all(|s| *s > after && *s <= through);
            prop_assert_eq!(ok, valid);
            if ok {
                let numbers: Vec<u64> = sets.iter().map(|s| s.seq).collect();
                prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]));
                let operations: usize = sets.iter().map(|s| s.operations.len()).sum();
                prop_assert_eq!(operations, sorted.len());
                let reach = if from_origin {
                    Some(through)
                } else {
                    let emitted = sorted.last().copied().unwrap_or(after);
                    let live = live.min(issued);
                    let by_statement = (live <= emitted).then_some(issued.min(through));
                    sorted.last().copied().max(by_statement.filter(|a| *a > after))
                };
                match reach {
                    Some(reach) => {
                        let expected: Vec<u64> = (after + 1..=reach).collect();
                        prop_assert_eq!(numbers, expected);
                    }
                    None => prop_assert!(numbers.is_empty()),
                }
            }
        }
    }
}
