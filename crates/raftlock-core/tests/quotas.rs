//! Worked examples of each quota: the refusal names the quota, its flag
//! and whose use it is; nothing changes; lowering a limit evicts nothing.

use raftlock_core::{
    Command, Limits, LockError, LockMode, LockTable, Outcome, Proposal, Quota, SecretHash,
    SessionId, SessionOwner, DEDUP_WINDOW,
};

struct T {
    table: LockTable,
    index: u64,
}

impl T {
    fn new(limits: Limits) -> Self {
        let mut t = T {
            table: LockTable::new(),
            index: 0,
        };
        assert_eq!(t.run(Command::SetLimits(limits)), Ok(Outcome::LimitsSet));
        t
    }

    fn run(&mut self, command: Command) -> Result<Outcome, LockError> {
        self.index += 1;
        let applied = self.table.apply(self.index, &Proposal::single(0, command));
        applied.responses[0].clone()
    }

    fn open(&mut self, s: u128, principal: Option<&str>) -> Result<Outcome, LockError> {
        let (session, label) = (SessionId(s), format!("s{s}"));
        self.run(match principal {
            None => Command::OpenSession {
                session,
                label,
                ttl_ms: 5_000,
                lock_delay_ms: 0,
            },
            Some(p) => Command::OpenSessionOwned {
                session,
                label,
                ttl_ms: 5_000,
                lock_delay_ms: 0,
                owner: SessionOwner {
                    principal: p.into(),
                    secret_hash: SecretHash([1; 32]),
                },
            },
        })
    }

    fn acquire(&mut self, s: u128, seq: u64, name: &str) -> Result<Outcome, LockError> {
        self.run(Command::AcquireWith {
            session: SessionId(s),
            seq,
            name: name.into(),
            wait: true,
            mode: LockMode::Exclusive,
        })
    }

    /// Runs `command`, expects it refused by `quota` with `detail`, and
    /// the table unchanged.
    fn refused(&mut self, command: Command, quota: Quota, used: u64, detail: &str) {
        let before = self.table.clone();
        let got = self.run(command);
        let Err(LockError::QuotaExceeded {
            quota: q,
            limit,
            used: u,
            detail: d,
        }) = &got
        else {
            panic!("expected {quota} refused, got {got:?}");
        };
        assert_eq!((*q, *u, d.as_str()), (quota, used, detail));
        assert_eq!(*limit, self.table.limits().get(quota));
        let message = got.unwrap_err().to_string();
        assert!(message.contains(quota.flag()), "{message}");
        assert_eq!(self.table, before, "refusal changed the table");
    }
}

fn limits() -> Limits {
    Limits {
        sessions: 3,
        sessions_per_principal: 2,
        holds_per_session: 3,
        waits_per_session: 1,
        waiters_per_lock: 1,
        locks: 3,
        retained_answers: 3 * DEDUP_WINDOW as u64,
        claims: 1_000,
    }
}

fn open(s: u128) -> Command {
    Command::OpenSession {
        session: SessionId(s),
        label: String::new(),
        ttl_ms: 5_000,
        lock_delay_ms: 0,
    }
}

fn acquire(s: u128, seq: u64, name: &str) -> Command {
    Command::Acquire {
        session: SessionId(s),
        seq,
        name: name.into(),
        wait: true,
    }
}

#[test]
fn sessions_are_bounded_globally_and_per_principal() {
    let mut t = T::new(limits());
    t.open(1, Some("alice")).unwrap();
    t.open(2, Some("alice")).unwrap();
    let third = Command::OpenSessionOwned {
        session: SessionId(3),
        label: String::new(),
        ttl_ms: 5_000,
        lock_delay_ms: 0,
        owner: SessionOwner {
            principal: "alice".into(),
            secret_hash: SecretHash([2; 32]),
        },
    };
    t.refused(
        third,
        Quota::SessionsPerPrincipal,
        2,
        ", principal \"alice\"",
    );
    t.open(3, None).unwrap();
    t.refused(open(4), Quota::Sessions, 3, "");
    // Each session reserves its retry window: the answers quota binds first.
    let mut tight = limits();
    tight.sessions = 10;
    t.run(Command::SetLimits(tight)).unwrap();
    t.refused(open(4), Quota::RetainedAnswers, 3 * DEDUP_WINDOW as u64, "");
    // A session that ends makes room.
    t.run(Command::CloseSession {
        session: SessionId(3),
        seq: 0,
    })
    .unwrap();
    t.open(4, None).unwrap();
}

#[test]
fn holds_waits_queues_and_names_are_bounded() {
    let mut t = T::new(Limits {
        sessions_per_principal: 3,
        ..limits()
    });
    t.open(1, None).unwrap();
    t.open(2, None).unwrap();
    t.open(3, None).unwrap();
    for (seq, name) in [(1, "a"), (2, "b"), (3, "c")] {
        t.acquire(1, seq, name).unwrap();
    }
    let s2 = format!(", session {}", SessionId(2));
    t.refused(acquire(2, 1, "d"), Quota::Locks, 3, ", new lock \"d\"");
    // A name already in the table is no new name.
    assert_eq!(t.acquire(2, 2, "a"), Ok(Outcome::Queued { position: 0 }));
    t.refused(acquire(2, 3, "b"), Quota::WaitsPerSession, 1, &s2);
    t.refused(acquire(3, 1, "a"), Quota::WaitersPerLock, 1, ", lock \"a\"");
    // Asking again for what it already has is no growth.
    assert!(matches!(t.acquire(1, 4, "a"), Ok(Outcome::Granted { .. })));
    t.run(Command::Release {
        session: SessionId(1),
        seq: 5,
        name: "c".into(),
    })
    .unwrap();
    t.acquire(2, 6, "c").unwrap();
    // Asking again is no growth, even at the waits quota.
    assert!(matches!(t.acquire(2, 7, "c"), Ok(Outcome::Granted { .. })));
    assert_eq!(t.acquire(2, 8, "a"), Ok(Outcome::Queued { position: 0 }));
    assert_eq!(t.acquire(1, 9, "c"), Ok(Outcome::Queued { position: 0 }));
}

#[test]
fn a_wait_counts_as_a_hold_so_a_grant_never_passes_the_quota() {
    let mut l = limits();
    l.holds_per_session = 2;
    l.waits_per_session = 5;
    l.waiters_per_lock = 5;
    l.locks = 10;
    l.sessions_per_principal = 3;
    let mut t = T::new(l);
    t.open(1, None).unwrap();
    t.open(2, None).unwrap();
    t.acquire(1, 1, "a").unwrap();
    t.acquire(1, 2, "b").unwrap();
    t.acquire(2, 1, "x").unwrap();
    assert_eq!(t.acquire(2, 2, "a"), Ok(Outcome::Queued { position: 0 }));
    let s2 = format!(", session {}", SessionId(2));
    t.refused(acquire(2, 3, "b"), Quota::HoldsPerSession, 2, &s2);
    // The refusal was not remembered: once room is made, the same request
    // (a retry) runs afresh.
    t.run(Command::CancelWait {
        session: SessionId(2),
        seq: 4,
        name: "a".into(),
    })
    .unwrap();
    assert_eq!(t.acquire(2, 3, "b"), Ok(Outcome::Queued { position: 0 }));
}

#[test]
fn lowering_a_limit_evicts_nothing_and_stops_growth() {
    let mut t = T::new(Limits::default());
    for s in 1..=3 {
        t.open(s, None).unwrap();
        t.acquire(s, 1, &format!("n{s}")).unwrap();
    }
    let low = Limits {
        sessions: 1,
        locks: 2,
        ..Limits::default()
    };
    t.run(Command::SetLimits(low)).unwrap();
    assert_eq!(t.table.session_count(), 3);
    assert_eq!(t.table.lock_count(), 3);
    assert_eq!(t.table.quota_usage().get(Quota::Sessions), 3);
    t.refused(open(4), Quota::Sessions, 3, "");
    t.refused(acquire(1, 2, "new"), Quota::Locks, 3, ", new lock \"new\"");
    // Work on what exists goes on: queue behind an existing name.
    assert_eq!(t.acquire(1, 3, "n2"), Ok(Outcome::Queued { position: 0 }));
}

#[test]
fn absurd_limits_are_refused() {
    let mut t = T::new(limits());
    for quota in Quota::ALL {
        for bad in [0, raftlock_core::MAX_LIMIT + 1] {
            let mut l = limits();
            l.set(quota, bad);
            let got = t.run(Command::SetLimits(l));
            assert!(
                matches!(&got, Err(LockError::InvalidArgument(m)) if m.contains(quota.flag())),
                "{quota} = {bad}: {got:?}"
            );
        }
    }
    let mut l = limits();
    l.retained_answers = DEDUP_WINDOW as u64 - 1;
    assert!(t.run(Command::SetLimits(l)).is_err());
    assert_eq!(t.table.limits(), limits());
    assert!(Limits::default().validate().is_ok());
}

#[test]
fn claims_over_all_sessions_are_bounded() {
    let mut t = T::new(Limits {
        claims: 3,
        ..limits()
    });
    t.open(1, None).unwrap();
    t.open(2, None).unwrap();
    t.acquire(1, 1, "a").unwrap();
    t.acquire(1, 2, "b").unwrap();
    // A wait is a claim too: it may turn into a hold without asking.
    assert_eq!(t.acquire(2, 1, "a"), Ok(Outcome::Queued { position: 0 }));
    assert_eq!(t.table.quota_usage().get(Quota::Claims), 3);
    t.refused(acquire(2, 2, "b"), Quota::Claims, 3, "");
    t.refused(acquire(1, 3, "c"), Quota::Claims, 3, "");
    // Releasing makes room (the waiter on "a" takes the hold).
    assert_eq!(t.run(release(1, 4, "a")), Ok(Outcome::Released));
    assert_eq!(t.table.quota_usage().get(Quota::Claims), 2);
    assert!(matches!(t.acquire(1, 5, "c"), Ok(Outcome::Granted { .. })));
}

fn release(s: u128, seq: u64, name: &str) -> Command {
    Command::Release {
        session: SessionId(s),
        seq,
        name: name.into(),
    }
}
