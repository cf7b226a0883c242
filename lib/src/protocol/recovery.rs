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

/// The most numbers one peer's unsigned claim may make this node pull and step over.
pub(crate) const MAX_RECOVER: u64 = 10_000;
/// Failed recovery pulls after which the node stops pulling and issues its numbers again
/// anyway: a peer that claims our numbers and never serves them must not keep our writes
/// from the group. The lost writes then stay with the peers that hold them.
pub(crate) const MAX_FAILED_PULLS: u32 = 3;

/// What the node knows about its own numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Numbers above the floor may collide with an earlier life's: hold them back.
    Unconfirmed,
    /// Pulling our own origin back from a peer.
    Recovering,
    /// Every number we issue is ours alone.
    Confirmed,
}

/// What the driver should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing changes.
    Nothing,
    /// Our numbering is confirmed: publish and serve everything from now on.
    Confirm,
    /// Pull our own origin over `(after, through]` from the peer that claimed it; then
    /// [`Recovery::on_pull_end`].
    Pull { after: u64, through: u64 },
    /// Move every entry of ours numbered in `(floor, top]` above `max(head, top)`
    /// (`log::reissue`), then confirm.
    Reissue { floor: u64, top: u64 },
}

/// The recovery state of this node's numbering.
#[derive(Debug)]
pub(crate) struct Recovery {
    me: NodeId,
    /// Numbers up to here were confirmed by an earlier run (persisted).
    floor: u64,
    state: State,
    /// The highest number of ours proven issued by an earlier life.
    proven: u64,
    failed: u32,
}

impl Recovery {
    /// A node whose numbers were confirmed up to `floor` when it started.
    pub(crate) fn new(me: NodeId, floor: u64) -> Recovery {
        Recovery {
            me,
            floor,
            state: State::Unconfirmed,
            proven: floor,
            failed: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Whether this node's own transactions above the floor must not be published or
    /// served yet; `Some(floor)` if so.
    pub(crate) fn held_back_above(&self) -> Option<u64> {
        (self.state != State::Confirmed).then_some(self.floor)
    }

    /// A group peer's heads reply, with our current `head` and the highest number an
    /// earlier life of ours *signed* it had issued, relayed by peers (`signed`, 0 if
    /// none): a signature cannot be forged, a claim can (it moves us at most
    /// [`MAX_RECOVER`] numbers).
    pub(crate) fn on_heads(&mut self, heads: &[(NodeId, u64)], head: u64, signed: u64) -> Step {
        let claim = heads
            .iter()
            .find(|(origin, _)| *origin == self.me)
            .map_or(0, |(_, seq)| *seq);
        // What this life has announced: nothing above the floor until confirmed.
        let announced = match self.state {
            State::Recovering => return Step::Nothing,
            State::Unconfirmed => self.floor,
            State::Confirmed => head,
        };
        let bounded = claim.min(self.floor.saturating_add(MAX_RECOVER));
        if claim > announced || signed > announced {
            self.proven = self.proven.max(bounded).max(signed);
        }
        if claim > announced {
            // This peer holds numbers of an earlier life: take them back from it. Always
            // from the floor: what an earlier recovery moved is moved again, above all.
            self.state = State::Recovering;
            return Step::Pull {
                after: self.floor,
                through: bounded.max(self.floor.saturating_add(1)),
            };
        }
        if self.proven > announced {
            // Proven (signed, or by a peer whose pull failed) but not held by this peer.
            return self.reissue();
        }
        match self.state {
            State::Unconfirmed => {
                self.state = State::Confirmed;
                Step::Confirm
            }
            _ => Step::Nothing,
        }
    }

    fn reissue(&mut self) -> Step {
        self.state = State::Recovering;
        self.failed = 0;
        Step::Reissue {
            floor: self.floor,
            top: self.proven,
        }
    }

    /// The pull of our own origin ended. Completed: issue ours again. Failed: the next
    /// heads reply tries again, up to [`MAX_FAILED_PULLS`] times; then issue ours again
    /// without the lost ones.
    pub(crate) fn on_pull_end(&mut self, completed: bool) -> Step {
        if self.state != State::Recovering {
            return Step::Nothing;
        }
        if completed {
            return self.reissue();
        }
        self.failed += 1;
        if self.failed >= MAX_FAILED_PULLS {
            return self.reissue();
        }
        self.state = State::Unconfirmed;
        Step::Nothing
    }

    /// The reissue ran (`ok`), or failed and must be tried again on the next reply.
    pub(crate) fn on_reissued(&mut self, ok: bool) {
        self.state = if ok {
            State::Confirmed
        } else {
            State::Unconfirmed
        };
    }
}

/// Where entries numbered `(floor, top]` go when issued again, with this node's head at
/// `head`: they move up by `shift` to lie above both `head` and `top`, and the head becomes
/// `new_head`.
pub(crate) fn reissue_plan(floor: u64, top: u64, head: u64) -> (u64, u64) {
    let top = head.max(top);
    let shift = top - floor.min(top);
    (shift, top + shift)
}

#[cfg(test)]
mod tests;
