//! Unit tests of the recovery decisions.

use super::*;

const ME: NodeId = NodeId([7; 16]);
const OTHER: NodeId = NodeId([8; 16]);

#[test]
fn a_claim_at_most_the_floor_confirms() {
    let mut recovery = Recovery::new(ME, 5);
    assert_eq!(recovery.held_back_above(), Some(5));
    assert_eq!(recovery.on_heads(&[(OTHER, 90)], 9, 0), Step::Confirm);
    assert_eq!(recovery.held_back_above(), None);
    // Our own numbers coming back from peers say nothing new.
    assert_eq!(recovery.on_heads(&[(ME, 9)], 9, 9), Step::Nothing);
}

#[test]
fn a_claim_above_the_floor_recovers_then_reissues_above_it() {
    let mut recovery = Recovery::new(ME, 7);
    // We wrote five transactions since start (head 12); the peer holds 10 of an earlier
    // life: whatever our head, a claim above the floor is proof.
    assert_eq!(
        recovery.on_heads(&[(ME, 10)], 12, 0),
        Step::Pull {
            after: 7,
            through: 10
        }
    );
    assert_eq!(recovery.held_back_above(), Some(7));
    assert_eq!(recovery.on_heads(&[(ME, 10)], 12, 0), Step::Nothing);
    assert_eq!(
        recovery.on_pull_end(true),
        Step::Reissue { floor: 7, top: 10 }
    );
    recovery.on_reissued(true);
    assert_eq!(recovery.state(), State::Confirmed);
}

#[test]
fn a_failed_pull_never_lets_a_lower_claim_confirm() {
    let mut recovery = Recovery::new(ME, 3);
    assert!(matches!(
        recovery.on_heads(&[(ME, 6)], 3, 0),
        Step::Pull { .. }
    ));
    assert_eq!(recovery.on_pull_end(false), Step::Nothing);
    assert_eq!(recovery.state(), State::Unconfirmed);
    // Another peer that never heard of the lost numbers: ours are still issued again.
    assert_eq!(
        recovery.on_heads(&[(ME, 2)], 5, 0),
        Step::Reissue { floor: 3, top: 6 }
    );
}

#[test]
fn a_peer_that_never_serves_its_claim_cannot_hold_our_writes_back_for_good() {
    let mut recovery = Recovery::new(ME, 3);
    for attempt in 1..=MAX_FAILED_PULLS {
        assert!(matches!(
            recovery.on_heads(&[(ME, 9)], 3, 0),
            Step::Pull { .. }
        ));
        let step = recovery.on_pull_end(false);
        if attempt < MAX_FAILED_PULLS {
            assert_eq!(step, Step::Nothing);
        } else {
            assert_eq!(step, Step::Reissue { floor: 3, top: 9 });
        }
    }
    recovery.on_reissued(true);
    assert_eq!(recovery.held_back_above(), None);
}

#[test]
fn a_signed_statement_of_an_earlier_life_is_proof_without_a_claim() {
    let mut recovery = Recovery::new(ME, 4);
    assert_eq!(
        recovery.on_heads(&[(ME, 4)], 4, 50_000),
        Step::Reissue {
            floor: 4,
            top: 50_000
        }
    );
}

#[test]
fn after_confirmation_a_claim_past_the_head_recovers_from_the_floor() {
    let mut recovery = Recovery::new(ME, 7);
    recovery.on_heads(&[], 7, 0);
    assert_eq!(recovery.on_heads(&[(ME, 20)], 20, 20), Step::Nothing);
    assert_eq!(
        recovery.on_heads(&[(ME, 25)], 20, 0),
        Step::Pull {
            after: 7,
            through: 25
        }
    );
}

#[test]
fn a_lying_claim_costs_a_bounded_range() {
    let mut recovery = Recovery::new(ME, 100);
    assert_eq!(
        recovery.on_heads(&[(ME, u64::MAX)], 100, 0),
        Step::Pull {
            after: 100,
            through: 100 + MAX_RECOVER
        }
    );
    assert_eq!(
        recovery.on_pull_end(true),
        Step::Reissue {
            floor: 100,
            top: 100 + MAX_RECOVER
        }
    );
}

#[test]
fn issued_again_above_the_head_and_the_claim() {
    // Head below the claim: (7, 10] moves above 10.
    assert_eq!(reissue_plan(7, 10, 9), (3, 13));
    // Head above the claim: (7, 12] moves above 12.
    assert_eq!(reissue_plan(7, 10, 12), (5, 17));
    // A claim far past MAX_RECOVER, signed: nothing lands on the claimed numbers.
    let (shift, head) = reissue_plan(7, 20_007, 9);
    assert!(8 + shift > 20_007 && head == 20_007 + shift);
}
