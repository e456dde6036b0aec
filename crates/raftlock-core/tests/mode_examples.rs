//! Worked examples of shared locks, semaphores and their change events.

use raftlock_core::{
    Command, LeaveReason, LockError, LockEvent, LockKind, LockMode, LockTable, Outcome, Proposal,
    Response, SessionId,
};

const SHARED: LockMode = LockMode::Shared;
const EXCLUSIVE: LockMode = LockMode::Exclusive;

/// A table with sessions 1..=n open (no lock-delay), at index n.
fn table(n: u128) -> (LockTable, u64) {
    let mut t = LockTable::new();
    for s in 1..=n {
        let open = Command::OpenSession {
            session: SessionId(s),
            label: format!("s{s}"),
            ttl_ms: 5_000,
            lock_delay_ms: 0,
        };
        t.apply(s as u64, &Proposal::single(0, open));
    }
    (t, n as u64)
}

fn acquire(s: u128, mode: LockMode, wait: bool) -> Command {
    Command::AcquireWith {
        session: SessionId(s),
        seq: 0,
        name: "n".into(),
        wait,
        mode,
    }
}

fn release(s: u128) -> Command {
    Command::Release {
        session: SessionId(s),
        seq: 0,
        name: "n".into(),
    }
}

/// Applies one command as the next entry: its answer and change events.
fn step(t: &mut LockTable, index: &mut u64, command: Command) -> (Response, Vec<LockEvent>) {
    *index += 1;
    let (applied, events) = t.apply_with_events(*index, &Proposal::single(0, command));
    (applied.responses[0].clone(), events)
}

/// A step that must succeed, for setting a scene.
fn ok(t: &mut LockTable, index: &mut u64, command: Command) -> Vec<LockEvent> {
    let (answer, events) = step(t, index, command);
    assert!(answer.is_ok(), "{answer:?}");
    events
}

fn granted(s: u128, mode: LockMode, token: u64) -> LockEvent {
    LockEvent::Granted {
        name: "n".into(),
        session: SessionId(s),
        mode,
        token,
    }
}

fn holders(t: &LockTable) -> Vec<(u128, LockMode, u64)> {
    t.lock("n")
        .map(|v| {
            v.holders
                .iter()
                .map(|h| (h.session.0, h.mode, h.token))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn readers_at_the_front_are_granted_together_and_a_writer_alone() {
    let (mut t, mut i) = table(5);
    ok(&mut t, &mut i, acquire(1, EXCLUSIVE, true));
    for (s, mode) in [(2, SHARED), (3, SHARED), (4, EXCLUSIVE), (5, SHARED)] {
        let (answer, _) = step(&mut t, &mut i, acquire(s, mode, true));
        assert!(matches!(answer, Ok(Outcome::Queued { .. })), "{answer:?}");
    }
    let (answer, events) = step(&mut t, &mut i, release(1));
    assert_eq!(answer, Ok(Outcome::Released));
    let token = i;
    assert_eq!(
        events,
        vec![
            LockEvent::Released {
                name: "n".into(),
                session: SessionId(1),
                token: 6
            },
            granted(2, SHARED, token),
            granted(3, SHARED, token),
        ]
    );
    assert_eq!(holders(&t), vec![(2, SHARED, token), (3, SHARED, token)]);
    ok(&mut t, &mut i, release(2));
    assert_eq!(t.held_by("n", SessionId(4)), None);
    let (_, events) = step(&mut t, &mut i, release(3));
    assert_eq!(events[1], granted(4, EXCLUSIVE, i));
    let (_, events) = step(&mut t, &mut i, release(4));
    assert_eq!(events[1], granted(5, SHARED, i));
}

#[test]
fn a_queued_writer_holds_back_later_readers() {
    let (mut t, mut i) = table(3);
    ok(&mut t, &mut i, acquire(1, SHARED, true));
    ok(&mut t, &mut i, acquire(2, EXCLUSIVE, true));
    let (answer, _) = step(&mut t, &mut i, acquire(3, SHARED, false));
    assert_eq!(
        answer,
        Ok(Outcome::Busy {
            holder: Some((SessionId(1), "s1".into())),
            available_at_ms: 0
        })
    );
    let (answer, _) = step(&mut t, &mut i, acquire(3, SHARED, true));
    assert_eq!(answer, Ok(Outcome::Queued { position: 1 }));
    let (_, events) = step(&mut t, &mut i, release(1));
    assert_eq!(events[1], granted(2, EXCLUSIVE, i));
    assert_eq!(events.len(), 2);
}

#[test]
fn a_writer_leaving_the_front_lets_the_readers_behind_it_in() {
    let (mut t, mut i) = table(3);
    ok(&mut t, &mut i, acquire(1, SHARED, true));
    ok(&mut t, &mut i, acquire(2, EXCLUSIVE, true));
    ok(&mut t, &mut i, acquire(3, SHARED, true));
    let cancel = Command::CancelWait {
        session: SessionId(2),
        seq: 0,
        name: "n".into(),
    };
    let (answer, events) = step(&mut t, &mut i, cancel);
    assert_eq!(answer, Ok(Outcome::WaitCancelled));
    let left = LockEvent::LeftQueue {
        name: "n".into(),
        session: SessionId(2),
        reason: LeaveReason::Cancelled,
    };
    assert_eq!(events, vec![left, granted(3, SHARED, i)]);
}

#[test]
fn there_are_no_upgrades_or_downgrades() {
    let (mut t, mut i) = table(3);
    ok(&mut t, &mut i, acquire(1, SHARED, true));
    let (answer, _) = step(&mut t, &mut i, acquire(1, EXCLUSIVE, true));
    assert_eq!(
        answer,
        Err(LockError::OwnModeConflict {
            name: "n".into(),
            current: SHARED,
            asked: EXCLUSIVE,
            waiting: false
        })
    );
    let (answer, _) = step(&mut t, &mut i, acquire(1, SHARED, true));
    assert_eq!(
        answer,
        Ok(Outcome::Granted {
            token: 4,
            reentrant: true
        })
    );
    ok(&mut t, &mut i, acquire(2, EXCLUSIVE, true));
    let (answer, _) = step(&mut t, &mut i, acquire(2, SHARED, true));
    assert!(matches!(
        answer,
        Err(LockError::OwnModeConflict { waiting: true, .. })
    ));
    // A semaphore acquire on a read/write lock names what the lock is.
    let (answer, _) = step(
        &mut t,
        &mut i,
        acquire(3, LockMode::Semaphore { limit: 2 }, true),
    );
    assert_eq!(
        answer,
        Err(LockError::ModeConflict {
            name: "n".into(),
            in_use_as: LockKind::ReadWrite,
            asked: LockMode::Semaphore { limit: 2 }
        })
    );
}

#[test]
fn a_semaphore_keeps_its_limit_while_in_use_and_grants_up_to_it() {
    let (mut t, mut i) = table(4);
    let two = LockMode::Semaphore { limit: 2 };
    for s in 1..=2 {
        let (answer, _) = step(&mut t, &mut i, acquire(s, two, true));
        assert!(matches!(answer, Ok(Outcome::Granted { .. })));
    }
    let (answer, _) = step(&mut t, &mut i, acquire(3, two, true));
    assert_eq!(answer, Ok(Outcome::Queued { position: 0 }));
    let three = LockMode::Semaphore { limit: 3 };
    let (answer, _) = step(&mut t, &mut i, acquire(4, three, true));
    let refusal = answer.unwrap_err();
    assert!(refusal.to_string().contains("limit 2"), "{refusal}");
    let (answer, _) = step(&mut t, &mut i, acquire(4, SHARED, true));
    assert!(matches!(answer, Err(LockError::ModeConflict { .. })));
    let zero = LockMode::Semaphore { limit: 0 };
    let (answer, _) = step(&mut t, &mut i, acquire(4, zero, true));
    assert!(matches!(answer, Err(LockError::InvalidArgument(_))));

    // Expiry frees a slot and the next waiter gets it in the same entry.
    let (_, events) = step(
        &mut t,
        &mut i,
        Command::ExpireSession {
            session: SessionId(1),
        },
    );
    let expired = LockEvent::Expired {
        name: "n".into(),
        session: SessionId(1),
        token: 5,
        available_at_ms: 0,
    };
    assert_eq!(events, vec![expired, granted(3, two, i)]);

    // Once nobody holds or waits, the name takes a new limit.
    ok(&mut t, &mut i, release(2));
    ok(&mut t, &mut i, release(3));
    assert_eq!(t.lock("n"), None);
    let (answer, _) = step(&mut t, &mut i, acquire(4, three, false));
    assert!(matches!(answer, Ok(Outcome::Granted { .. })));
    assert_eq!(t.lock("n").unwrap().limit(), Some(3));
}

/// Readers granted in an entry share its token; a writer freed to go in
/// the same entry waits for the next, so its token is greater.
#[test]
fn a_writer_after_readers_in_one_entry_waits_for_the_next() {
    let (mut t, mut i) = table(3);
    ok(&mut t, &mut i, acquire(1, EXCLUSIVE, true));
    ok(&mut t, &mut i, acquire(2, SHARED, true));
    ok(&mut t, &mut i, acquire(3, EXCLUSIVE, true));
    i += 1;
    let batch = Proposal {
        time_ms: 0,
        commands: vec![release(1), release(2)],
    };
    let (_, events) = t.apply_with_events(i, &batch);
    assert_eq!(events[1], granted(2, SHARED, i));
    assert_eq!(t.held_by("n", SessionId(3)), None);
    assert_eq!(t.next_delay_end_ms(), Some(0));
    let (_, events) = step(&mut t, &mut i, Command::Tick);
    assert_eq!(events, vec![granted(3, EXCLUSIVE, i)]);
}

#[test]
fn the_state_under_a_prefix_renders_as_events() {
    let (mut t, mut i) = table(2);
    for (s, name, mode) in [(1, "a/x", SHARED), (2, "a/x", SHARED), (1, "b", EXCLUSIVE)] {
        i += 1;
        let command = Command::AcquireWith {
            session: SessionId(s),
            seq: 0,
            name: name.into(),
            wait: true,
            mode,
        };
        t.apply(i, &Proposal::single(0, command));
    }
    i += 1;
    let command = Command::AcquireWith {
        session: SessionId(2),
        seq: 0,
        name: "b".into(),
        wait: true,
        mode: EXCLUSIVE,
    };
    t.apply(i, &Proposal::single(0, command));
    let grant = |s: u128, name: &str, mode, token| LockEvent::Granted {
        name: name.into(),
        session: SessionId(s),
        mode,
        token,
    };
    assert_eq!(
        t.state_events("a/"),
        vec![grant(1, "a/x", SHARED, 3), grant(2, "a/x", SHARED, 4)]
    );
    let queued = LockEvent::Queued {
        name: "b".into(),
        session: SessionId(2),
        mode: EXCLUSIVE,
    };
    assert_eq!(
        t.state_events("b"),
        vec![grant(1, "b", EXCLUSIVE, 5), queued]
    );
    assert_eq!(t.state_events("").len(), 4);
}
