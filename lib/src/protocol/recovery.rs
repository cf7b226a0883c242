//! Sequence numbers this node may have issued before and lost, as a pure state machine:
//! when to hold back this node's own transactions, when to take its lost ones back from a
//! peer, and which numbers to issue again.
//!
//! Pure: no database, no swarm. The driver feeds it heads claims and pull outcomes and
//! carries out its answers (`engine::pull`).
//!
//! ## The problem
//! A node numbers its transactions 1, 2, 3, ... and peers remember, per origin, the
//! highest number they applied without a gap. If the node's last commits are lost (a power
//! cut under `synchronous = NORMAL`, a database restored from a backup in place), it
//! starts again from an older number: its next transactions reuse numbers that peers
//! already hold with other contents, and a peer whose head is past them never asks for
//! them. Those writes never reach it, and the lost ones never come back to the node.
//!
//! ## The rule
//! - At start the node's numbers above `floor` (its head when it opened the database) are
//!   *unconfirmed*: the node does not publish them, and serves its own origin only up to
//!   `floor` (heads and pages). Writes go on locally; nothing waits on the network.
//! - The first group peer whose heads reply names this node decides. A claim at most
//!   `floor` confirms: nobody holds numbers of ours that we do not. A claim above it
//!   proves an earlier life issued them (no peer can have heard of our unconfirmed ones):
//!   the node pulls its own origin over `(floor, claim]` from that peer, which applies its
//!   lost writes back, and then issues *every* entry of its own log numbered in
//!   `(floor, claim]` again, under numbers above both its head and the claim. The old
//!   numbers stay in peers' logs; the new ones are above every head, so every peer pulls
//!   them, whether it had the lost transactions, the new ones, or neither. Then it
//!   confirms.
//! - After confirmation, a claim above the node's current head is the same proof (peers
//!   only hear of our numbers from us): the same recovery runs again from the head.
//! - A claim is a peer's word: the range recovered at once is at most [`MAX_RECOVER`]
//!   numbers above `floor`, so a lying peer costs at most that many numbers per claim, never
//!   a wrapped or exhausted counter. The pulled pages themselves are checked as any pull
//!   is (`protocol::heads`).
//!
//! A peer that held our lost numbers but answers only after another peer confirmed, while
//! we have issued more transactions than were lost, cannot be told apart from a peer that
//! holds our current ones: that case is left (see README, "Work in progress").

use crate::clock::NodeId;

/// The most numbers recovered (and then issued again) for one claim.
pub(crate) const MAX_RECOVER: u64 = 10_000;
/// Failed recovery pulls after which the node confirms anyway: a peer that claims our
/// numbers and never serves them must not keep our writes from the group for good.
pub(crate) const MAX_FAILED_PULLS: u32 = 3;

/// What the node knows about its own numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Numbers above `floor` may collide with an earlier life's: hold them back.
    Unconfirmed { floor: u64 },
    /// Pulling our own origin over `(floor, through]` from a peer that holds it.
    Recovering { floor: u64, through: u64 },
    /// Every number we issue is ours alone.
    Confirmed,
}

/// What the driver should do after a heads claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing changes.
    Nothing,
    /// Our numbering is confirmed: publish and serve everything from now on.
    Confirm,
    /// Pull our own origin over `(after, through]` from the peer that claimed it.
    Pull { after: u64, through: u64 },
}

/// The recovery state of this node's numbering.
#[derive(Debug)]
pub(crate) struct Recovery {
    me: NodeId,
    state: State,
    failed: u32,
}

impl Recovery {
    /// A node that opened its database with its own head at `floor`.
    pub(crate) fn new(me: NodeId, floor: u64) -> Recovery {
        Recovery {
            me,
            state: State::Unconfirmed { floor },
            failed: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Whether this node's own transactions above `floor` must not be published or
    /// served yet; `Some(floor)` if so.
    pub(crate) fn held_back_above(&self) -> Option<u64> {
        match self.state {
            State::Unconfirmed { floor } | State::Recovering { floor, .. } => Some(floor),
            State::Confirmed => None,
        }
    }

    /// A group peer's heads reply, holding our current `head`.
    pub(crate) fn on_heads(&mut self, heads: &[(NodeId, u64)], head: u64) -> Step {
        let claim = heads
            .iter()
            .find(|(origin, _)| *origin == self.me)
            .map_or(0, |(_, seq)| *seq);
        match self.state {
            State::Recovering { .. } => Step::Nothing,
            State::Unconfirmed { floor } if claim <= floor => {
                self.state = State::Confirmed;
                Step::Confirm
            }
            State::Unconfirmed { floor } => self.recover(floor, claim),
            State::Confirmed if claim > head => self.recover(head, claim),
            State::Confirmed => Step::Nothing,
        }
    }

    fn recover(&mut self, floor: u64, claim: u64) -> Step {
        let through = claim.min(floor.saturating_add(MAX_RECOVER));
        self.state = State::Recovering { floor, through };
        Step::Pull {
            after: floor,
            through,
        }
    }

    /// The pull of our own origin ended. If it completed, the numbers to issue again are
    /// `(floor, through]` and the state is confirmed; if it failed, the next heads reply
    /// tries again, up to [`MAX_FAILED_PULLS`] times, and then the node confirms (a claim
    /// past its head later starts over).
    pub(crate) fn on_pull_end(&mut self, completed: bool) -> Option<(u64, u64)> {
        let State::Recovering { floor, through } = self.state else {
            return None;
        };
        if completed {
            self.state = State::Confirmed;
            self.failed = 0;
            Some((floor, through))
        } else {
            self.failed += 1;
            self.state = if self.failed >= MAX_FAILED_PULLS {
                State::Confirmed
            } else {
                State::Unconfirmed { floor }
            };
            None
        }
    }
}

/// Where entries numbered `(floor, through]` go when issued again, with this node's head
/// at `head`: they move up by `shift`, and the head becomes `new_head`. The new numbers
/// lie above both `head` and `through`, and no number of `(through, head]` moves.
pub(crate) fn reissue_plan(floor: u64, through: u64, head: u64) -> (u64, u64) {
    let top = head.max(through);
    let shift = top - floor;
    (shift, top + (through - floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = NodeId([7; 16]);
    const OTHER: NodeId = NodeId([8; 16]);

    #[test]
    fn a_claim_at_most_the_floor_confirms() {
        let mut recovery = Recovery::new(ME, 5);
        assert_eq!(recovery.held_back_above(), Some(5));
        assert_eq!(recovery.on_heads(&[(OTHER, 90)], 9), Step::Confirm);
        assert_eq!(recovery.held_back_above(), None);
        // Our own numbers coming back from peers say nothing new.
        assert_eq!(recovery.on_heads(&[(ME, 9)], 9), Step::Nothing);
    }

    #[test]
    fn a_claim_above_the_floor_recovers_then_confirms() {
        let mut recovery = Recovery::new(ME, 7);
        // We wrote two transactions since start (head 9); the peer holds 10 of an
        // earlier life: whatever our head, the claim is above the floor.
        assert_eq!(
            recovery.on_heads(&[(ME, 10)], 12),
            Step::Pull {
                after: 7,
                through: 10
            }
        );
        assert_eq!(recovery.held_back_above(), Some(7));
        assert_eq!(recovery.on_heads(&[(ME, 10)], 12), Step::Nothing);
        assert_eq!(recovery.on_pull_end(true), Some((7, 10)));
        assert_eq!(recovery.state(), State::Confirmed);
    }

    #[test]
    fn a_failed_pull_is_tried_again() {
        let mut recovery = Recovery::new(ME, 3);
        recovery.on_heads(&[(ME, 4)], 3);
        assert_eq!(recovery.on_pull_end(false), None);
        assert_eq!(recovery.state(), State::Unconfirmed { floor: 3 });
        assert!(matches!(
            recovery.on_heads(&[(ME, 4)], 3),
            Step::Pull { .. }
        ));
    }

    #[test]
    fn a_peer_that_never_serves_its_claim_cannot_hold_our_writes_back_for_good() {
        let mut recovery = Recovery::new(ME, 3);
        for _ in 0..MAX_FAILED_PULLS {
            assert!(matches!(
                recovery.on_heads(&[(ME, 9)], 3),
                Step::Pull { .. }
            ));
            recovery.on_pull_end(false);
        }
        assert_eq!(recovery.state(), State::Confirmed);
        assert_eq!(recovery.held_back_above(), None);
    }

    #[test]
    fn after_confirmation_only_a_claim_past_the_head_recovers() {
        let mut recovery = Recovery::new(ME, 0);
        recovery.on_heads(&[], 0);
        assert_eq!(recovery.on_heads(&[(ME, 20)], 20), Step::Nothing);
        assert_eq!(
            recovery.on_heads(&[(ME, 25)], 20),
            Step::Pull {
                after: 20,
                through: 25
            }
        );
    }

    #[test]
    fn a_lying_claim_costs_a_bounded_range() {
        let mut recovery = Recovery::new(ME, 100);
        assert_eq!(
            recovery.on_heads(&[(ME, u64::MAX)], 100),
            Step::Pull {
                after: 100,
                through: 100 + MAX_RECOVER
            }
        );
        let (shift, head) = reissue_plan(100, 100 + MAX_RECOVER, 100);
        assert_eq!((shift, head), (MAX_RECOVER, 100 + 2 * MAX_RECOVER));
    }

    #[test]
    fn issued_again_above_the_head_and_the_claim() {
        // Head below the claim: everything we wrote is inside the range.
        assert_eq!(reissue_plan(7, 10, 9), (3, 13));
        // Head above the claim: (10, 12] stays, (7, 10] moves above 12.
        let (shift, head) = reissue_plan(7, 10, 12);
        assert_eq!((8 + shift, 10 + shift, head), (13, 15, 15));
    }
}
