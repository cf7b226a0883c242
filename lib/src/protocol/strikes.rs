//! Strikes and bans: which rejections count against the peer that sent a message, and
//! when a peer has earned a ban.
//!
//! Pure: handed `now`, returns a verdict; the driver carries it out.
//!
//! A strike is only for what the *direct sender* provably did wrong, whatever our own
//! state:
//! - bytes that are no message of any version we know, or names no schema produces
//!   ([`Offense::Undecodable`]);
//! - a message over the size bound ([`Offense::Oversized`]);
//! - a message whose signed author is not its origin, or an operation stamped by another
//!   node than its change set's origin, or a page outside the range we asked for
//!   ([`Offense::Forged`]).
//!
//! Never a strike: a clock-drift rejection (our own clock may be the slow one), a
//! protocol version or variant newer than ours (see
//! [`crate::protocol::codec::is_newer_variant`]), a change that does not fit our schema
//! (the peer may run another version of the app: wrong type, another key), a cell over
//! today's size limit (history from before the limit, relayed in good faith), or anything
//! that failed on our side (a database error, a page applied after our own failure).
//! Those are still counted (metrics, `PeerInfo::rejected_messages`), never banned for.
//!
//! Why not gossipsub's own peer scoring, weighed against libp2p-gossipsub 0.50's
//! parameters (computed from its defaults, not run against a flood):
//! - with `PeerScoreParams::default()` no topic has score parameters, so invalid
//!   messages cost a peer nothing; with `TopicScoreParams::default()` (topic weight 0.5,
//!   invalid-message weight -1 on the squared count, which falls to 0.3 of itself each
//!   second) a peer is graylisted only after about 13 invalid messages within a second,
//!   and one that sends one a second settles at a score of about -1 and is never cut
//!   off. These strikes ban after ten provable offenses within a minute, at any pace;
//! - scoring sees only the gossip topic, while half of what a peer can provably do wrong
//!   happens in the catch-up protocol (a forged page, a page outside the range asked
//!   for), which only these strikes see;
//! - graylisting ignores a peer that stays connected; a ban disconnects it and refuses
//!   it for five minutes;
//! - invalid gossip is rejected in validation either way, so it is never forwarded.
//!
//! So scoring stays off. If groups grow to public-mesh sizes, its mesh-quality parts
//! (time in mesh, first deliveries) are worth enabling beside the strikes.

use crate::error::RejectReason;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What a peer provably did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offense {
    /// Bytes that decode as no message of any version.
    Undecodable,
    /// A message over the size bound.
    Oversized,
    /// A message that lies about who wrote it, or an answer to a question not asked.
    Forged,
}

/// The strike that a rejected change set earns its direct sender, if any.
pub(crate) fn offense_of_rejection(reason: &RejectReason) -> Option<Offense> {
    match reason {
        // Schema-independent and clock-independent: the set is self-contradictory.
        RejectReason::ForeignStamp => Some(Offense::Forged),
        // Names no release of any schema produces (empty, too long, a key repeating a
        // column).
        RejectReason::Malformed { .. } => Some(Offense::Undecodable),
        // A cell over today's limit may be history written before the limit existed,
        // relayed in good faith by a peer of an older release.
        RejectReason::Oversized { .. } => None,
        // Our clock may be wrong; our schema may be older or newer than the sender's.
        RejectReason::ClockDrift(_)
        | RejectReason::UnknownTable { .. }
        | RejectReason::UnknownColumn { .. }
        | RejectReason::WrongType { .. }
        | RejectReason::MissingKey { .. } => None,
    }
}

/// When strikes become a ban.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StrikeRules {
    /// Strikes within `window` that earn a ban.
    pub to_ban: usize,
    /// How far back strikes count.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban_for: Duration,
}

impl Default for StrikeRules {
    fn default() -> StrikeRules {
        StrikeRules {
            to_ban: 10,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(300),
        }
    }
}

/// What to do after a strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counted; nothing more.
    Counted,
    /// Refuse the peer until then.
    Ban { until: Instant },
}

/// Recent strikes per peer. Memory is bounded: at most `to_ban` instants per peer, and
/// peers without a recent strike are forgotten by [`Strikes::expire`].
#[derive(Debug)]
pub(crate) struct Strikes<P> {
    rules: StrikeRules,
    recent: HashMap<P, VecDeque<Instant>>,
}

impl<P: Hash + Eq + Copy> Strikes<P> {
    pub(crate) fn new(rules: StrikeRules) -> Strikes<P> {
        Strikes {
            rules,
            recent: HashMap::new(),
        }
    }

    /// Counts `offense` against `peer` at `now`.
    pub(crate) fn strike(&mut self, peer: P, _offense: Offense, now: Instant) -> Verdict {
        let window = self.rules.window;
        let recent = self.recent.entry(peer).or_default();
        while recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        if recent.len() >= self.rules.to_ban {
            self.recent.remove(&peer);
            Verdict::Ban {
                until: now + self.rules.ban_for,
            }
        } else {
            Verdict::Counted
        }
    }

    /// Forgets strikes older than the window.
    pub(crate) fn expire(&mut self, now: Instant) {
        let window = self.rules.window;
        self.recent.retain(|_, recent| {
            recent
                .back()
                .is_some_and(|at| now.saturating_duration_since(*at) < window)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockDrift;
    use proptest::prelude::*;

    fn rules() -> StrikeRules {
        StrikeRules {
            to_ban: 3,
            window: Duration::from_secs(10),
            ban_for: Duration::from_secs(100),
        }
    }

    #[test]
    fn bans_after_enough_strikes_within_the_window() {
        let start = Instant::now();
        let mut strikes = Strikes::new(rules());
        assert_eq!(
            strikes.strike(1, Offense::Undecodable, start),
            Verdict::Counted
        );
        assert_eq!(
            strikes.strike(1, Offense::Forged, start + Duration::from_secs(1)),
            Verdict::Counted
        );
        assert_eq!(
            strikes.strike(2, Offense::Forged, start + Duration::from_secs(1)),
            Verdict::Counted
        );
        let at = start + Duration::from_secs(2);
        assert_eq!(
            strikes.strike(1, Offense::Oversized, at),
            Verdict::Ban {
                until: at + Duration::from_secs(100)
            }
        );
    }

    #[test]
    fn old_strikes_fade() {
        let start = Instant::now();
        let mut strikes = Strikes::new(rules());
        for n in 0..10 {
            let verdict =
                strikes.strike(1, Offense::Undecodable, start + Duration::from_secs(6 * n));
            assert_eq!(verdict, Verdict::Counted);
        }
        strikes.expire(start + Duration::from_secs(1_000));
        assert!(strikes.recent.is_empty());
    }

    #[test]
    fn only_forgery_among_rejections_is_struck() {
        assert_eq!(
            offense_of_rejection(&RejectReason::ForeignStamp),
            Some(Offense::Forged)
        );
        let drift = RejectReason::ClockDrift(ClockDrift {
            ahead_ms: 10_000,
            max_drift_ms: 1,
        });
        assert_eq!(offense_of_rejection(&drift), None);
        let wrong_type = RejectReason::WrongType {
            table: "t".into(),
            column: "c".into(),
            expected: "INTEGER",
            found: "TEXT",
        };
        assert_eq!(offense_of_rejection(&wrong_type), None);
    }

    proptest! {
        #[test]
        fn never_bans_below_the_threshold_and_memory_stays_bounded(
            gaps in proptest::collection::vec(0u64..30_000, 1..200)
        ) {
            let rules = rules();
            let start = Instant::now();
            let mut strikes = Strikes::new(rules);
            let mut at = start;
            let mut history: Vec<Instant> = Vec::new();
            for gap in gaps {
                at += Duration::from_millis(gap);
                let verdict = strikes.strike(7u8, Offense::Undecodable, at);
                history.push(at);
                let in_window = history
                    .iter()
                    .filter(|t| at.saturating_duration_since(**t) < rules.window)
                    .count();
                match verdict {
                    Verdict::Ban { .. } => {
                        prop_assert!(in_window >= rules.to_ban);
                        history.clear();
                    }
                    Verdict::Counted => prop_assert!(in_window < rules.to_ban),
                }
                prop_assert!(strikes.recent.get(&7).map_or(0, VecDeque::len) < rules.to_ban);
            }
        }
    }
}
