//! The checker must fire on bad histories: two holders at once, a stale
//! token accepted, a lost update. And it must pass good ones, including a
//! lock freed by expiry and operations whose outcome is unknown.

use std::collections::HashMap;
use std::time::Duration;

use raftlock_chaos::checker::{
    check_fencing, check_mutual_exclusion, check_tokens_grow, check_updates,
};
use raftlock_chaos::history::{LockEvent, LockOp, Outcome, RegisterEvent};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lock_event(client: u64, op: LockOp, from: u64, to: Option<u64>, outcome: Outcome) -> LockEvent {
    LockEvent {
        client,
        lock: "L".into(),
        op,
        invoked: ms(from),
        completed: to.map(ms),
        outcome,
    }
}

fn acquired(client: u64, from: u64, to: u64, token: u64) -> LockEvent {
    lock_event(
        client,
        LockOp::Acquire,
        from,
        Some(to),
        Outcome::Ok(Some(token)),
    )
}

fn released(client: u64, from: u64, to: u64) -> LockEvent {
    lock_event(client, LockOp::Release, from, Some(to), Outcome::Ok(None))
}

fn reg(client: u64, at: u64, token: u64, write: Option<u64>, accepted: bool) -> RegisterEvent {
    RegisterEvent {
        client,
        lock: "L".into(),
        at: ms(at),
        token,
        write,
        accepted,
    }
}

#[test]
fn two_overlapping_holders_are_reported() {
    let history = vec![
        acquired(1, 0, 10, 5),
        acquired(2, 20, 30, 7),
        released(1, 40, 50),
        released(2, 60, 70),
    ];
    let violations = check_mutual_exclusion(&history);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("not linearizable"),
        "{}",
        violations[0]
    );
}

#[test]
fn sequential_holders_pass() {
    let history = vec![
        acquired(1, 0, 10, 5),
        released(1, 20, 30),
        acquired(2, 25, 40, 7),
        released(2, 50, 60),
    ];
    assert!(check_mutual_exclusion(&history).is_empty());
}

#[test]
fn a_lock_freed_by_expiry_may_go_to_the_next_client() {
    // Client 1 is paused holding the lock; its session expires, client 2
    // gets the lock; client 1 learns of the loss only afterwards.
    let history = vec![
        acquired(1, 0, 10, 5),
        acquired(2, 100, 4000, 9),
        lock_event(1, LockOp::Expired, 10, Some(5000), Outcome::Ok(None)),
        released(2, 4100, 4200),
    ];
    assert!(check_mutual_exclusion(&history).is_empty());
}

#[test]
fn an_expiry_cannot_explain_a_grant_before_the_holder_got_it() {
    let history = vec![
        acquired(1, 0, 10, 5),
        acquired(2, 0, 5, 9),
        lock_event(1, LockOp::Expired, 10, Some(5000), Outcome::Ok(None)),
    ];
    // Client 2 finished acquiring (5) before client 1 even got the lock (0..10),
    // so client 1's acquire must come after it, while client 2 still holds it.
    assert_eq!(check_mutual_exclusion(&history).len(), 1);
}

#[test]
fn unknown_outcomes_may_or_may_not_have_happened() {
    let history = vec![
        // Client 1's acquire got no answer; its session was abandoned.
        lock_event(1, LockOp::Acquire, 0, None, Outcome::Unknown),
        lock_event(1, LockOp::Expired, 10, None, Outcome::Unknown),
        acquired(2, 20, 30, 8),
        released(2, 40, 50),
    ];
    assert!(check_mutual_exclusion(&history).is_empty());
}

#[test]
fn a_stale_token_accepted_is_reported() {
    let events = vec![
        reg(1, 0, 5, None, true),
        reg(1, 1, 5, Some(1), true),
        reg(2, 2, 9, None, true),
        reg(1, 3, 5, Some(2), true), // the register should have refused this
    ];
    let violations = check_fencing(&events);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("stale token"), "{}", violations[0]);
}

#[test]
fn refused_stale_writes_are_fine() {
    let events = vec![
        reg(1, 0, 5, None, true),
        reg(2, 1, 9, None, true),
        reg(1, 2, 5, Some(1), false),
        reg(2, 3, 9, Some(1), true),
    ];
    assert!(check_fencing(&events).is_empty());
    let finals = HashMap::from([("L".to_string(), 1)]);
    assert!(check_updates(&events, &finals).is_empty());
}

#[test]
fn a_lost_update_is_reported() {
    // Both read 0 and both writes were accepted: one increment is lost.
    let events = vec![
        reg(1, 0, 5, None, true),
        reg(2, 1, 9, None, true),
        reg(2, 2, 9, Some(1), true),
        reg(3, 3, 12, Some(1), true),
    ];
    let finals = HashMap::from([("L".to_string(), 1)]);
    let violations = check_updates(&events, &finals);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().any(|v| v.contains("lost update")));
    assert!(violations
        .iter()
        .any(|v| v.contains("2 writes were acknowledged")));
}

#[test]
fn a_token_that_goes_back_is_reported() {
    // Client 2 asked after client 1's grant (token 40) was acknowledged and
    // released, and got token 12: the cluster forgot entries it acknowledged.
    let history = vec![
        acquired(1, 0, 10, 40),
        released(1, 20, 30),
        acquired(2, 40, 50, 12),
        released(2, 60, 70),
    ];
    assert!(check_mutual_exclusion(&history).is_empty());
    let violations = check_tokens_grow(&history);
    assert_eq!(violations.len(), 1, "{violations:?}");

    // Growing tokens, and a grant that overlapped the earlier one's
    // acknowledgement (so it may legally be older), pass.
    let good = vec![
        acquired(1, 0, 10, 40),
        released(1, 20, 30),
        acquired(2, 5, 50, 38),
        acquired(3, 60, 70, 41),
    ];
    assert!(
        check_tokens_grow(&good).is_empty(),
        "{:?}",
        check_tokens_grow(&good)
    );
}
