//! The hybrid logical clock: one per node, for local writes and remote applies alike.
//!
//! Owns [`NodeId`], [`Hlc`] (a timestamp) and [`HlcClock`] (the state machine that issues
//! them). It is pure: it is handed `now` (milliseconds since the Unix epoch) and never
//! reads the system clock, touches the database or awaits, so every rule here is unit-
//! and property-tested. The glue persists [`HlcClock::last`] in the same database
//! transaction as the writes it stamped, which keeps the clock monotonic across restarts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's identity in clocks and in the sync log: 16 bytes, persisted in the database.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// A fresh random id.
    pub fn random() -> NodeId {
        NodeId(rand::random())
    }

    /// The id of the node whose libp2p peer id has these bytes: their last 16 bytes (for
    /// an ed25519 identity, half of the public key). So a received message's origin can
    /// be checked against the peer that signed it.
    pub fn from_peer_id_bytes(peer_id: &[u8]) -> NodeId {
        let mut id = [0u8; 16];
        let tail = &peer_id[peer_id.len().saturating_sub(16)..];
        id[16 - tail.len()..].copy_from_slice(tail);
        NodeId(id)
    }

    /// The id from its 16 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        Some(NodeId(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A hybrid logical clock timestamp. Ordered by (physical time, counter, node), which is
/// the last-writer-wins order: no two writes of different nodes ever tie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Physical time in milliseconds since the Unix epoch (at least the issuing node's).
    pub time_ms: u64,
    /// Logical counter that orders events within one millisecond.
    pub counter: u32,
    /// The node that issued the timestamp.
    pub node: NodeId,
}

/// Length of [`Hlc::to_bytes`].
pub(crate) const HLC_BYTES: usize = 28;

impl Hlc {
    /// Big-endian bytes whose lexicographic order is the timestamp order, so SQLite can
    /// compare and `max()` them as BLOBs.
    pub fn to_bytes(&self) -> [u8; HLC_BYTES] {
        let mut out = [0u8; HLC_BYTES];
        out[..8].copy_from_slice(&self.time_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.counter.to_be_bytes());
        out[12..].copy_from_slice(&self.node.0);
        out
    }

    /// Inverse of [`Hlc::to_bytes`]; `None` for a slice of the wrong length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Hlc> {
        if bytes.len() != HLC_BYTES {
            return None;
        }
        Some(Hlc {
            time_ms: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            counter: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            node: NodeId::from_slice(&bytes[12..])?,
        })
    }
}

/// A remote timestamp too far ahead of this node's physical clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "remote clock is {ahead_ms} ms ahead of ours (at most {max_drift_ms} ms allowed); \
     the sending peer's system clock is wrong"
)]
pub struct ClockDrift {
    /// How far ahead the remote timestamp was.
    pub ahead_ms: u64,
    /// The configured bound.
    pub max_drift_ms: u64,
}

/// The clock state of one node.
#[derive(Clone, Debug)]
pub struct HlcClock {
    node: NodeId,
    last_time_ms: u64,
    last_counter: u32,
    max_drift_ms: u64,
}

impl HlcClock {
    /// A clock for `node` that resumes after `last` (the highest timestamp it persisted,
    /// if any) and rejects remote timestamps more than `max_drift_ms` ahead.
    pub fn new(node: NodeId, last: Option<Hlc>, max_drift_ms: u64) -> HlcClock {
        let (last_time_ms, last_counter) = last.map_or((0, 0), |h| (h.time_ms, h.counter));
        HlcClock {
            node,
            last_time_ms,
            last_counter,
            max_drift_ms,
        }
    }

    /// The last timestamp issued or observed (what must be persisted).
    pub fn last(&self) -> Hlc {
        Hlc {
            time_ms: self.last_time_ms,
            counter: self.last_counter,
            node: self.node,
        }
    }

    /// A timestamp for a local event, greater than every timestamp issued or observed.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.last_time_ms {
            self.last_time_ms = now_ms;
            self.last_counter = 0;
        } else {
            self.bump_counter();
        }
        self.last()
    }

    /// Observes a remote timestamp: afterwards every local tick is greater than it.
    /// A timestamp beyond the allowed drift is rejected and leaves the clock unchanged,
    /// so a peer with a broken clock cannot drag ours into the future.
    pub fn update(&mut self, remote: Hlc, now_ms: u64) -> Result<(), ClockDrift> {
        self.check_drift(remote, now_ms)?;
        let time = now_ms.max(self.last_time_ms).max(remote.time_ms);
        if time == self.last_time_ms && time == remote.time_ms {
            self.last_counter = self.last_counter.max(remote.counter);
            self.bump_counter();
        } else if time == self.last_time_ms {
            self.bump_counter();
        } else if time == remote.time_ms {
            self.last_time_ms = time;
            self.last_counter = remote.counter;
            self.bump_counter();
        } else {
            self.last_time_ms = time;
            self.last_counter = 0;
        }
        Ok(())
    }

    /// Whether `remote` is within the allowed drift, without observing it.
    pub fn check_drift(&self, remote: Hlc, now_ms: u64) -> Result<(), ClockDrift> {
        let ahead_ms = remote.time_ms.saturating_sub(now_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockDrift {
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        Ok(())
    }

    fn bump_counter(&mut self) {
        match self.last_counter.checked_add(1) {
            Some(counter) => self.last_counter = counter,
            // 4 billion events in one millisecond: borrow the next millisecond rather
            // than wrap and go backwards.
            None => {
                self.last_time_ms += 1;
                self.last_counter = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: NodeId = NodeId([1; 16]);
    const B: NodeId = NodeId([2; 16]);

    #[test]
    fn ticks_are_strictly_increasing_even_when_time_stands_still_or_goes_back() {
        let mut clock = HlcClock::new(A, None, 1_000);
        let t1 = clock.tick(100);
        let t2 = clock.tick(100);
        let t3 = clock.tick(50);
        assert!(t1 < t2 && t2 < t3);
        assert_eq!(t3.time_ms, 100);
    }

    #[test]
    fn resumes_after_the_persisted_timestamp() {
        let persisted = Hlc {
            time_ms: 500,
            counter: 7,
            node: A,
        };
        let mut clock = HlcClock::new(A, Some(persisted), 1_000);
        assert!(clock.tick(10) > persisted);
    }

    #[test]
    fn local_ticks_follow_observed_remote_timestamps() {
        let mut clock = HlcClock::new(A, None, 1_000);
        let remote = Hlc {
            time_ms: 900,
            counter: 3,
            node: B,
        };
        clock.update(remote, 100).unwrap();
        let next = clock.tick(100);
        assert!(next > remote);
    }

    #[test]
    fn rejects_remote_timestamps_beyond_the_drift_and_stays_put() {
        let mut clock = HlcClock::new(A, None, 1_000);
        let before = clock.last();
        let err = clock
            .update(
                Hlc {
                    time_ms: 5_000,
                    counter: 0,
                    node: B,
                },
                1_000,
            )
            .unwrap_err();
        assert_eq!(err.ahead_ms, 4_000);
        assert_eq!(clock.last(), before);
    }

    #[test]
    fn counter_overflow_borrows_the_next_millisecond() {
        let last = Hlc {
            time_ms: 10,
            counter: u32::MAX,
            node: A,
        };
        let mut clock = HlcClock::new(A, Some(last), 1_000);
        let next = clock.tick(10);
        assert!(next > last);
        assert_eq!((next.time_ms, next.counter), (11, 0));
    }

    proptest! {
        #[test]
        fn byte_order_is_timestamp_order(
            t1 in any::<u64>(), c1 in any::<u32>(), n1 in any::<[u8; 16]>(),
            t2 in any::<u64>(), c2 in any::<u32>(), n2 in any::<[u8; 16]>(),
        ) {
            let a = Hlc { time_ms: t1, counter: c1, node: NodeId(n1) };
            let b = Hlc { time_ms: t2, counter: c2, node: NodeId(n2) };
            prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
            prop_assert_eq!(Hlc::from_bytes(&a.to_bytes()), Some(a));
        }

        #[test]
        fn every_event_is_later_than_everything_seen_before(
            events in proptest::collection::vec((any::<bool>(), 0u64..2_000, 0u32..5), 1..200)
        ) {
            let mut clock = HlcClock::new(A, None, 10_000);
            let mut seen_max: Option<Hlc> = None;
            for (is_local, time, counter) in events {
                if is_local {
                    let t = clock.tick(time);
                    if let Some(max) = seen_max { prop_assert!(t > max); }
                    seen_max = Some(t);
                } else {
                    let remote = Hlc { time_ms: time, counter, node: B };
                    clock.update(remote, 1_000).unwrap();
                    seen_max = Some(seen_max.map_or(remote, |m| m.max(remote)));
                    let t = clock.tick(0);
                    prop_assert!(t > seen_max.unwrap());
                    seen_max = Some(t);
                }
            }
        }
    }
}
