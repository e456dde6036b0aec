//! The checker must fire on bad histories: two holders at once, a writer
//! overlapping a reader, a stale token accepted, a lost update, a reader
//! that saw a write during its hold, a token that went back. And it must
//! pass good ones, including a lock freed by expiry, operations whose
//! outcome is unknown and readers holding together.

use std::collections::HashMap;
use std::time::Duration;

use raftlock_chaos::checker::{check_fencing, check_tokens_grow, check_updates};
use raftlock_chaos::history::{Access, LockEvent, LockOp, Outcome, RegisterEvent};
use raftlock_chaos::readers::{check_certain_overlaps, check_reads, check_writer_tokens};

/// The writers' mutex search's violations (inconclusive is not a pass).
fn check_mutual_exclusion(history: &[LockEvent]) -> Vec<String> {
    let findings = raftlock_chaos::checker::check_mutual_exclusion(history);
    assert!(
        findings.inconclusive.is_empty(),
        "{:?}",
        findings.inconclusive
    );
    findings.violations
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lock_event(client: u64, op: LockOp, from: u64, to: Option<u64>, outcome: Outcome) -> LockEvent {
    LockEvent {
        client,
        lock: "L".into(),
        op,
        shared: false,
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

/// A reader's shared grant.
fn acquired_shared(client: u64, from: u64, to: u64, token: u64) -> LockEvent {
    LockEvent {
        shared: true,
        ..acquired(client, from, to, token)
    }
}

fn released_shared(client: u64, from: u64, to: u64) -> LockEvent {
    LockEvent {
        shared: true,
        ..released(client, from, to)
    }
}

fn reg(client: u64, at: u64, token: u64, write: Option<u64>, accepted: bool) -> RegisterEvent {
    RegisterEvent {
        client,
        lock: "L".into(),
        at: ms(at),
        token,
        access: Access::Exclusive,
        write,
        accepted,
        seen: None,
    }
}

/// A reader's read at the start or end of its hold; `seen` is `None` when
/// the register refused it.
fn read(client: u64, at: u64, token: u64, access: Access, seen: Option<u64>) -> RegisterEvent {
    RegisterEvent {
        access,
        accepted: seen.is_some(),
        seen,
        ..reg(client, at, token, None, seen.is_some())
    }
}

/// Exactly one violation, and it says `what`.
fn expect_one(violations: &[String], what: &str) {
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains(what), "{}", violations[0]);
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
    expect_one(&violations, "not linearizable");
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

#[test]
fn a_writer_overlapping_a_reader_is_reported() {
    // Client 2's exclusive grant came back while client 1 still read.
    let history = vec![
        acquired_shared(1, 0, 10, 5),
        acquired(2, 20, 30, 7),
        released_shared(1, 40, 50),
        released(2, 60, 70),
    ];
    let violations = check_certain_overlaps(&history);
    expect_one(
        &violations,
        "client 2 (exclusive) held it from 30ms to 60ms",
    );
    // The writers' search sees one writer only: this is the readers' rule's.
    assert!(check_mutual_exclusion(&history).is_empty());

    // A reader granted while a writer holds is as wrong.
    let history = vec![
        acquired(1, 0, 10, 5),
        acquired_shared(2, 20, 30, 7),
        released(1, 40, 50),
        released_shared(2, 60, 70),
    ];
    expect_one(
        &check_certain_overlaps(&history),
        "client 2 (shared) held it from 30ms to 60ms while client 1 (exclusive)",
    );
}

#[test]
fn a_hold_lost_to_expiry_or_ended_by_an_unanswered_release_is_not_an_overlap() {
    // Reader 1 froze and its session expired, so writer 2 was granted; it
    // learned of the loss only at 90. Reader 3's release got no answer at
    // 100 and writer 4 was granted after that.
    let history = vec![
        acquired_shared(1, 0, 10, 5),
        acquired(2, 20, 30, 9),
        LockEvent {
            shared: true,
            ..lock_event(1, LockOp::Expired, 10, Some(90), Outcome::Ok(None))
        },
        released(2, 40, 50),
        acquired_shared(3, 60, 70, 12),
        LockEvent {
            shared: true,
            ..lock_event(3, LockOp::Release, 100, None, Outcome::Unknown)
        },
        acquired(4, 80, 110, 15),
        released(4, 120, 130),
    ];
    assert!(
        check_certain_overlaps(&history).is_empty(),
        "{:?}",
        check_certain_overlaps(&history)
    );
    assert!(check_mutual_exclusion(&history).is_empty());
    assert!(check_tokens_grow(&history).is_empty());
}

#[test]
fn two_writers_certainly_holding_together_are_reported_without_the_search() {
    let history = vec![
        acquired(1, 0, 10, 5),
        acquired(2, 20, 30, 7),
        released(1, 40, 50),
        released(2, 60, 70),
    ];
    expect_one(
        &check_certain_overlaps(&history),
        "client 2 (exclusive) held it from 30ms to 60ms while client 1 (exclusive)",
    );
}

#[test]
fn overlapping_readers_then_a_writer_pass() {
    // Three readers hold together (two share the token of the entry that
    // granted them both); the writer is granted after the last one left.
    let history = vec![
        acquired_shared(1, 0, 10, 5),
        acquired_shared(2, 2, 12, 5),
        acquired_shared(3, 15, 20, 8),
        released_shared(1, 30, 35),
        acquired(4, 32, 60, 11),
        released_shared(3, 40, 45),
        released_shared(2, 50, 55),
        released(4, 70, 80),
        acquired_shared(5, 85, 90, 14),
        released_shared(5, 95, 99),
    ];
    assert!(
        check_certain_overlaps(&history).is_empty(),
        "{:?}",
        check_certain_overlaps(&history)
    );
    assert!(check_mutual_exclusion(&history).is_empty());
    assert!(
        check_tokens_grow(&history).is_empty(),
        "{:?}",
        check_tokens_grow(&history)
    );

    // Their reads: each saw the same value at both ends of its hold, and
    // the older reader (token 5) may still read after one with token 8.
    let events = vec![
        reg(9, 0, 3, None, true),
        reg(9, 1, 3, Some(1), true),
        read(1, 11, 5, Access::ReadStart, Some(1)),
        read(2, 13, 5, Access::ReadStart, Some(1)),
        read(3, 21, 8, Access::ReadStart, Some(1)),
        read(1, 29, 5, Access::ReadEnd, Some(1)),
        read(3, 39, 8, Access::ReadEnd, Some(1)),
        read(2, 49, 5, Access::ReadEnd, Some(1)),
        reg(4, 61, 11, None, true),
        reg(4, 62, 11, Some(2), true),
        read(5, 91, 14, Access::ReadStart, Some(2)),
        read(5, 94, 14, Access::ReadEnd, Some(2)),
    ];
    assert!(
        check_fencing(&events).is_empty(),
        "{:?}",
        check_fencing(&events)
    );
    assert!(
        check_reads(&events).is_empty(),
        "{:?}",
        check_reads(&events)
    );
    assert!(
        check_writer_tokens(&history, &events).is_empty(),
        "{:?}",
        check_writer_tokens(&history, &events)
    );
    let finals = HashMap::from([("L".to_string(), 2)]);
    assert!(check_updates(&events, &finals).is_empty());
}

#[test]
fn a_reader_that_saw_a_write_during_its_hold_is_reported() {
    // Client 1's session expired while it read; client 2 wrote with a
    // newer token, and the register still let client 1 finish its read.
    let events = vec![
        read(1, 0, 5, Access::ReadStart, Some(0)),
        reg(2, 10, 9, None, true),
        reg(2, 11, 9, Some(1), true),
        read(1, 20, 5, Access::ReadEnd, Some(1)),
    ];
    let violations = check_reads(&events);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations[0].contains("saw a value written under token 9"));
    assert!(violations[1].contains("1 writes were accepted meanwhile"));
    // And the register accepted a reader's token below a writer's.
    assert_eq!(
        check_fencing(&events).len(),
        1,
        "{:?}",
        check_fencing(&events)
    );

    // Refusing that last read as stale is what a fenced register does.
    let mut refused = events.clone();
    refused[3] = read(1, 20, 5, Access::ReadEnd, None);
    assert!(check_reads(&refused).is_empty());
    assert!(check_fencing(&refused).is_empty());
}

#[test]
fn a_reader_whose_value_changed_without_a_write_is_reported() {
    let events = vec![
        reg(9, 0, 2, None, true),
        reg(9, 1, 2, Some(3), true),
        read(1, 2, 5, Access::ReadStart, Some(3)),
        read(2, 5, 5, Access::ReadStart, Some(3)),
        read(2, 8, 5, Access::ReadEnd, Some(3)),
        read(1, 10, 5, Access::ReadEnd, Some(4)),
    ];
    let violations = check_reads(&events);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().all(|v| v.contains("client 1")));
    assert!(
        violations[0].contains("but the last accepted write left 3"),
        "{}",
        violations[0]
    );
    assert!(
        violations[1].contains("Some(3) then Some(4)"),
        "{}",
        violations[1]
    );
}

#[test]
fn a_writer_below_an_accepted_readers_token_is_reported() {
    // A reader with token 8 read, so the writer holding token 6 had lost
    // the lock before the reader got it: its write must be refused.
    let events = vec![
        reg(1, 0, 6, None, true),
        read(2, 5, 8, Access::ReadStart, Some(0)),
        read(2, 6, 8, Access::ReadEnd, Some(0)),
        reg(1, 10, 6, Some(1), true),
    ];
    let violations = check_fencing(&events);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("stale token"), "{}", violations[0]);
}

#[test]
fn a_writer_sharing_an_earlier_readers_token_is_reported() {
    // Client 2 asked after client 1's shared grant (token 5) was
    // acknowledged, yet got token 5 too: a writer is alone in its entry.
    let history = vec![
        acquired_shared(1, 0, 10, 5),
        released_shared(1, 20, 30),
        acquired(2, 40, 50, 5),
        released(2, 60, 70),
    ];
    assert!(check_mutual_exclusion(&history).is_empty());
    let violations = check_tokens_grow(&history);
    expect_one(&violations, "token went back");

    // A reader below a writer granted before it is as wrong.
    let history = vec![
        acquired(1, 0, 10, 5),
        released(1, 20, 30),
        acquired_shared(2, 40, 50, 4),
        released_shared(2, 60, 70),
    ];
    assert_eq!(check_tokens_grow(&history).len(), 1);
}

#[test]
fn a_writer_granted_a_readers_token_is_reported_even_when_they_overlapped_in_asking() {
    // Both asked before either was acknowledged, so the tokens-grow rule
    // cannot object; but an entry that grants a writer grants no one else.
    let history = vec![
        acquired_shared(1, 0, 20, 5),
        acquired(2, 10, 30, 5),
        released_shared(1, 21, 22),
        released(2, 40, 50),
    ];
    let events = vec![
        read(1, 20, 5, Access::ReadStart, Some(0)),
        read(1, 21, 5, Access::ReadEnd, Some(0)),
        reg(2, 31, 5, None, true),
        reg(2, 32, 5, Some(1), true),
    ];
    assert!(check_tokens_grow(&history).is_empty());
    assert!(check_fencing(&events).is_empty());
    let violations = check_writer_tokens(&history, &events);
    assert_eq!(violations.len(), 3, "{violations:?}");
    assert!(violations[0].contains("granted \"L\" exclusively with token 5, a reader's token"));
    assert!(violations[1].contains("used \"L\" as a writer at 31ms with token 5"));
}

#[test]
fn write_tokens_that_do_not_grow_are_reported() {
    // Two writers wrote under the same token: the fenced register accepts
    // an equal token, but no two writers' grants share one.
    let events = vec![
        reg(1, 0, 7, None, true),
        reg(1, 1, 7, Some(1), true),
        reg(2, 2, 7, None, true),
        reg(2, 3, 7, Some(2), true),
    ];
    assert!(check_fencing(&events).is_empty());
    expect_one(
        &check_writer_tokens(&[], &events),
        "client 2 wrote under token 7 after client 1 wrote under 7",
    );
}
