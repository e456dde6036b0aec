//! Worked examples of the lock rules the properties in `properties.rs`
//! check over random histories: a waiter granted by the releasing entry,
//! a lock-delay holding back a waiter, bad input refused, a reused
//! request number refused.

use raftlock_core::{Command, Event, LockError, LockTable, Outcome, Proposal, SessionId};

fn at(time_ms: u64, command: Command) -> Proposal {
    Proposal::single(time_ms, command)
}

fn open(session: SessionId, lock_delay_ms: u64) -> Command {
    Command::OpenSession {
        session,
        label: format!("{session}"),
        ttl_ms: 1000,
        lock_delay_ms,
    }
}

fn acquire(session: SessionId, seq: u64, name: &str, wait: bool) -> Command {
    Command::Acquire {
        session,
        seq,
        name: name.into(),
        wait,
    }
}

fn release(session: SessionId, seq: u64, name: &str) -> Command {
    Command::Release {
        session,
        seq,
        name: name.into(),
    }
}

fn granted(session: SessionId, token: u64) -> Event {
    Event::Granted {
        session,
        name: "n".into(),
        token,
    }
}

#[test]
fn waiter_is_granted_in_the_releasing_entry() {
    let mut t = LockTable::new();
    let (a, b) = (SessionId(1), SessionId(2));
    t.apply(1, &at(0, open(a, 0)));
    t.apply(2, &at(0, open(b, 0)));
    let got = t.apply(3, &at(0, acquire(a, 1, "n", true)));
    assert_eq!(
        got.responses[0],
        Ok(Outcome::Granted {
            token: 3,
            reentrant: false
        })
    );
    let got = t.apply(4, &at(0, acquire(b, 1, "n", true)));
    assert_eq!(got.responses[0], Ok(Outcome::Queued { position: 0 }));
    let got = t.apply(5, &at(0, release(a, 2, "n")));
    assert_eq!(got.responses[0], Ok(Outcome::Released));
    assert_eq!(got.events, vec![granted(b, 5)]);
}

#[test]
fn lock_delay_holds_back_the_waiter_until_a_tick() {
    let mut t = LockTable::new();
    let (a, b) = (SessionId(1), SessionId(2));
    t.apply(1, &at(0, open(a, 500)));
    t.apply(2, &at(0, open(b, 0)));
    t.apply(3, &at(0, acquire(a, 1, "n", false)));
    t.apply(4, &at(0, acquire(b, 1, "n", true)));
    let got = t.apply(5, &at(100, Command::ExpireSession { session: a }));
    let lost = Event::Lost {
        session: a,
        name: "n".into(),
        token: 3,
    };
    assert!(got.events.contains(&lost));
    assert_eq!(t.holder("n"), None);
    assert_eq!(t.next_delay_end_ms(), Some(600));
    t.apply(6, &at(599, Command::Tick));
    assert_eq!(t.holder("n"), None);
    let got = t.apply(7, &at(600, Command::Tick));
    assert_eq!(got.events, vec![granted(b, 7)]);
}

#[test]
fn bad_input_is_refused_without_change() {
    let mut t = LockTable::new();
    let s = SessionId(7);
    let too_short = Command::OpenSession {
        session: s,
        label: "x".into(),
        ttl_ms: 10,
        lock_delay_ms: 0,
    };
    assert!(t.apply(1, &at(0, too_short)).responses[0].is_err());
    t.apply(2, &at(0, open(s, 0)));
    let empty = t.apply(3, &at(0, acquire(s, 1, "", false)));
    assert!(matches!(empty.responses[0], Err(LockError::InvalidName(_))));
    let long = t.apply(4, &at(0, acquire(s, 2, &"x".repeat(513), false)));
    assert!(matches!(long.responses[0], Err(LockError::InvalidName(_))));
    let unknown = t.apply(5, &at(0, release(SessionId(9), 1, "n")));
    assert_eq!(
        unknown.responses[0],
        Err(LockError::UnknownSession(SessionId(9)))
    );
    let unheld = t.apply(6, &at(0, release(s, 3, "n")));
    assert_eq!(
        unheld.responses[0],
        Err(LockError::NotHeld { name: "n".into() })
    );
    assert_eq!(t.lock_count(), 0);
}

#[test]
fn a_reused_seq_is_refused_not_answered_with_the_first_grant() {
    let mut t = LockTable::new();
    let s = SessionId(7);
    t.apply(1, &at(0, open(s, 0)));
    let first = t.apply(2, &at(0, acquire(s, 1, "A", true)));
    let grant = Ok(Outcome::Granted {
        token: 2,
        reentrant: false,
    });
    assert_eq!(first.responses[0], grant);
    // A different name, a different wait mode, a different call: all refused.
    for (index, command) in [
        (3, acquire(s, 1, "B", true)),
        (4, acquire(s, 1, "A", false)),
        (5, release(s, 1, "A")),
        (6, Command::CloseSession { session: s, seq: 1 }),
    ] {
        let got = t.apply(index, &at(0, command));
        assert!(
            matches!(&got.responses[0], Err(LockError::SeqReused { session, seq: 1, .. }) if *session == s),
            "{:?}",
            got.responses[0]
        );
    }
    assert_eq!(t.holder("B"), None);
    assert_eq!(t.holder("A"), Some((s, 2)));
    assert!(t.session(s).is_some());
    // The same request again is a retry: its first answer.
    let retry = t.apply(7, &at(0, acquire(s, 1, "A", true)));
    assert_eq!(retry.responses[0], grant);
}
