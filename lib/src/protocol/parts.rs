//! Reassembly of a transaction split into gossip parts, within a memory budget.
//!
//! Pure: handed `now` and each received part with its signed author, returns what to do.
//!
//! Decisions:
//! - every part must be signed by its transaction's origin: a part whose author is not
//!   the origin is forged (the live path carries only an origin's own writes; relayed
//!   history comes through catch-up), whichever part it is;
//! - a partial set is keyed by (author, origin, seq, part count), so parts that disagree
//!   on the count never mix, and a slot, once filled, is never overwritten (a second
//!   part with the same index is a duplicate and is dropped);
//! - memory is bounded per author and in total, in bytes and in sets: a new set evicts
//!   the author's oldest (then the oldest of all); a set that alone exceeds the author's
//!   budget is dropped. Whatever is dropped or evicted reaches us through catch-up, whole.

use crate::clock::NodeId;
use crate::protocol::{ChangeSet, SyncOperation};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The bounds on half-received transactions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartBudget {
    /// Bytes of parts held for one author.
    pub per_author_bytes: usize,
    /// Bytes of parts held in total.
    pub total_bytes: usize,
    /// Partial sets held for one author.
    pub per_author_sets: usize,
    /// Partial sets held in total.
    pub total_sets: usize,
    /// The most parts one transaction may announce.
    pub max_parts: u32,
    /// How long the parts of a transaction may take to arrive.
    pub timeout: Duration,
}

impl PartBudget {
    /// The budget for gossip messages of at most `max_message_bytes`.
    pub(crate) fn for_messages(max_message_bytes: usize) -> PartBudget {
        PartBudget {
            per_author_bytes: max_message_bytes.saturating_mul(32).max(1 << 20),
            total_bytes: max_message_bytes.saturating_mul(128).max(4 << 20),
            per_author_sets: 4,
            total_sets: 64,
            max_parts: 1 << 16,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a received part leads to.
#[derive(Debug, PartialEq)]
pub(crate) enum PartOutcome {
    /// Held; the transaction is not whole yet.
    Pending,
    /// The last missing part: the whole transaction.
    Complete(ChangeSet),
    /// The slot is filled already; nothing changes.
    Duplicate,
    /// Over the budget: dropped (catch-up brings the transaction).
    Dropped,
    /// Not signed by its origin.
    Forged,
    /// An index past the count, or a count out of bounds.
    Malformed,
}

type Key = (NodeId, NodeId, u64, u32);

#[derive(Debug)]
struct Partial {
    started: Instant,
    bytes: usize,
    parts: BTreeMap<u32, Vec<SyncOperation>>,
}

/// The partial sets held now.
#[derive(Debug)]
pub(crate) struct Reassembly {
    budget: PartBudget,
    sets: HashMap<Key, Partial>,
    bytes_by_author: HashMap<NodeId, usize>,
    total_bytes: usize,
}

/// One received part.
#[derive(Debug)]
pub(crate) struct Part {
    /// The signed author of the message (`None` if unsigned).
    pub author: Option<NodeId>,
    pub origin: NodeId,
    pub seq: u64,
    pub index: u32,
    pub count: u32,
    pub operations: Vec<SyncOperation>,
    /// The message's size on the wire.
    pub bytes: usize,
}

impl Reassembly {
    pub(crate) fn new(budget: PartBudget) -> Reassembly {
        Reassembly {
            budget,
            sets: HashMap::new(),
            bytes_by_author: HashMap::new(),
            total_bytes: 0,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.total_bytes
    }

    fn remove(&mut self, key: &Key) -> Option<Partial> {
        let partial = self.sets.remove(key)?;
        self.total_bytes = self.total_bytes.saturating_sub(partial.bytes);
        if let Some(bytes) = self.bytes_by_author.get_mut(&key.0) {
            *bytes = bytes.saturating_sub(partial.bytes);
            if *bytes == 0 {
                self.bytes_by_author.remove(&key.0);
            }
        }
        Some(partial)
    }

    /// The oldest set other than `keep`, of `author` if given.
    fn oldest(&self, author: Option<NodeId>, keep: &Key) -> Option<Key> {
        self.sets
            .iter()
            .filter(|(key, _)| *key != keep && author.is_none_or(|a| key.0 == a))
            .min_by_key(|(_, partial)| partial.started)
            .map(|(key, _)| *key)
    }

    /// Takes one received part.
    pub(crate) fn add(&mut self, part: Part, now: Instant) -> PartOutcome {
        let Part {
            author,
            origin,
            seq,
            index,
            count,
            operations,
            bytes,
        } = part;
        let Some(author) = author.filter(|author| *author == origin) else {
            return PartOutcome::Forged;
        };
        if index >= count || count > self.budget.max_parts {
            return PartOutcome::Malformed;
        }
        let key = (author, origin, seq, count);
        if self
            .sets
            .get(&key)
            .is_some_and(|p| p.parts.contains_key(&index))
        {
            return PartOutcome::Duplicate;
        }
        if bytes > self.budget.per_author_bytes {
            self.remove(&key);
            return PartOutcome::Dropped;
        }
        if !self.sets.contains_key(&key) {
            let of_author = self.sets.keys().filter(|k| k.0 == author).count();
            if of_author >= self.budget.per_author_sets
                && let Some(oldest) = self.oldest(Some(author), &key)
            {
                self.remove(&oldest);
            }
            if self.sets.len() >= self.budget.total_sets
                && let Some(oldest) = self.oldest(None, &key)
            {
                self.remove(&oldest);
            }
            self.sets.insert(
                key,
                Partial {
                    started: now,
                    bytes: 0,
                    parts: BTreeMap::new(),
                },
            );
        }
        // Make room: the author's older sets first, then anyone's.
        while self.bytes_by_author.get(&author).copied().unwrap_or(0) + bytes
            > self.budget.per_author_bytes
        {
            match self.oldest(Some(author), &key) {
                Some(oldest) => {
                    self.remove(&oldest);
                }
                None => {
                    self.remove(&key);
                    return PartOutcome::Dropped;
                }
            }
        }
        while self.total_bytes + bytes > self.budget.total_bytes {
            match self.oldest(None, &key) {
                Some(oldest) => {
                    self.remove(&oldest);
                }
                None => {
                    self.remove(&key);
                    return PartOutcome::Dropped;
                }
            }
        }
        let Some(partial) = self.sets.get_mut(&key) else {
            return PartOutcome::Dropped;
        };
        partial.parts.insert(index, operations);
        partial.bytes += bytes;
        *self.bytes_by_author.entry(author).or_default() += bytes;
        self.total_bytes += bytes;
        if partial.parts.len() < count as usize {
            return PartOutcome::Pending;
        }
        let Some(whole) = self.remove(&key) else {
            return PartOutcome::Dropped;
        };
        PartOutcome::Complete(ChangeSet {
            origin,
            seq,
            operations: whole.parts.into_values().flatten().collect(),
        })
    }

    /// Drops the sets whose parts took too long.
    pub(crate) fn expire(&mut self, now: Instant) {
        let timeout = self.budget.timeout;
        let stale: Vec<Key> = self
            .sets
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) >= timeout)
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::protocol::WriteKind;
    use proptest::prelude::*;

    const V: NodeId = NodeId([1; 16]);
    const M: NodeId = NodeId([2; 16]);

    fn op(id: &str) -> SyncOperation {
        SyncOperation {
            table: "t".into(),
            kind: WriteKind::Insert,
            hlc: Hlc {
                time_ms: 1,
                counter: 0,
                node: V,
            },
            primary_key: vec![("id".into(), id.into())],
            values: vec![],
        }
    }

    fn part(author: NodeId, seq: u64, index: u32, count: u32, id: &str) -> Part {
        Part {
            author: Some(author),
            origin: V,
            seq,
            index,
            count,
            operations: vec![op(id)],
            bytes: 100,
        }
    }

    fn budget() -> PartBudget {
        PartBudget {
            per_author_bytes: 1_000,
            total_bytes: 3_000,
            per_author_sets: 2,
            total_sets: 4,
            max_parts: 16,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn parts_complete_in_index_order() {
        let now = Instant::now();
        let mut r = Reassembly::new(budget());
        assert_eq!(r.add(part(V, 1, 1, 2, "b"), now), PartOutcome::Pending);
        let PartOutcome::Complete(set) = r.add(part(V, 1, 0, 2, "a"), now) else {
            panic!("not complete");
        };
        assert_eq!(set.operations, vec![op("a"), op("b")]);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn a_part_not_signed_by_its_origin_is_forged() {
        let now = Instant::now();
        let mut r = Reassembly::new(budget());
        assert_eq!(r.add(part(M, 1, 0, 2, "forged"), now), PartOutcome::Forged);
        let mut unsigned = part(V, 1, 0, 2, "x");
        unsigned.author = None;
        assert_eq!(r.add(unsigned, now), PartOutcome::Forged);
        assert_eq!(r.add(part(V, 1, 1, 2, "b"), now), PartOutcome::Pending);
        assert_eq!(r.held(), 100);
    }

    #[test]
    fn a_slot_is_never_overwritten_and_counts_never_mix() {
        let now = Instant::now();
        let mut r = Reassembly::new(budget());
        assert_eq!(r.add(part(V, 1, 0, 2, "a"), now), PartOutcome::Pending);
        assert_eq!(
            r.add(part(V, 1, 0, 2, "other"), now),
            PartOutcome::Duplicate
        );
        // Another count is another set.
        assert_eq!(r.add(part(V, 1, 1, 3, "c"), now), PartOutcome::Pending);
        let PartOutcome::Complete(set) = r.add(part(V, 1, 1, 2, "b"), now) else {
            panic!("not complete");
        };
        assert_eq!(set.operations, vec![op("a"), op("b")]);
    }

    #[test]
    fn malformed_indices_are_refused() {
        let now = Instant::now();
        let mut r = Reassembly::new(budget());
        assert_eq!(r.add(part(V, 1, 2, 2, "a"), now), PartOutcome::Malformed);
        assert_eq!(r.add(part(V, 1, 0, 17, "a"), now), PartOutcome::Malformed);
    }

    #[test]
    fn old_sets_expire() {
        let now = Instant::now();
        let mut r = Reassembly::new(budget());
        assert_eq!(r.add(part(V, 1, 0, 2, "a"), now), PartOutcome::Pending);
        r.expire(now + Duration::from_secs(61));
        assert_eq!(r.held(), 0);
        assert_eq!(r.add(part(V, 1, 1, 2, "b"), now), PartOutcome::Pending);
    }

    proptest! {
        #[test]
        fn memory_stays_within_budget(
            parts in proptest::collection::vec((0u64..20, 0u32..8, 1u32..8, 1usize..700, any::<bool>()), 1..300)
        ) {
            let budget = budget();
            let mut r = Reassembly::new(budget);
            let start = Instant::now();
            for (n, (seq, index, count, bytes, honest)) in parts.into_iter().enumerate() {
                let author = if honest { V } else { NodeId([3; 16]) };
                let mut p = part(author, seq, index, count, "x");
                p.origin = author;
                p.bytes = bytes;
                let _ = r.add(p, start + Duration::from_millis(n as u64));
                prop_assert!(r.total_bytes <= budget.total_bytes);
                prop_assert!(r.sets.len() <= budget.total_sets);
                for (author, bytes) in &r.bytes_by_author {
                    prop_assert!(*bytes <= budget.per_author_bytes);
                    prop_assert!(r.sets.keys().filter(|k| k.0 == *author).count() <= budget.per_author_sets);
                }
                prop_assert_eq!(r.total_bytes, r.sets.values().map(|p| p.bytes).sum::<usize>());
            }
        }
    }
}
