//! Tables from outside: generated tables (laid out as a snapshot holds
//! them, mostly consistent, with random faults) are decoded and checked;
//! every one that passes `check_consistent_at` is then driven through
//! random commands of every kind. None may panic, and each must still pass
//! the check after every entry.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use raftlock_core::{
    Command, Limits, LockMode, LockTable, Outcome, Proposal, SecretHash, SessionId, SessionOwner,
};
use serde::Serialize;

/// The snapshot layout of a table, mirrored field for field.
#[derive(Serialize)]
struct Table {
    now_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<String, Lock>,
    delayed: BTreeSet<(u64, String)>,
    limits: Limits,
}

#[derive(Serialize)]
struct Session {
    label: String,
    ttl_ms: u64,
    lock_delay_ms: u64,
    held: BTreeSet<String>,
    waiting: BTreeSet<String>,
    recent: Vec<Remembered>,
    evicted_through: u64,
    owner: Option<SessionOwner>,
}

#[derive(Serialize)]
struct Remembered {
    seq: u64,
    digest: u64,
    response: Result<Outcome, raftlock_core::LockError>,
}

#[derive(Serialize, Default)]
struct Lock {
    holders: Vec<Holder>,
    waiters: Vec<Waiter>,
    available_at_ms: u64,
}

#[derive(Serialize)]
struct Holder {
    session: SessionId,
    mode: LockMode,
    token: u64,
    since_ms: u64,
}

#[derive(Serialize)]
struct Waiter {
    session: SessionId,
    mode: LockMode,
}

const NOW: u64 = 10_000;
const LAST_APPLIED: u64 = 50;
const NAMES: [&str; 3] = ["a", "b", "c"];
const MODES: [LockMode; 4] = [
    LockMode::Exclusive,
    LockMode::Shared,
    LockMode::Semaphore { limit: 2 },
    LockMode::Semaphore { limit: 1 },
];

/// One name's plan: per session slot, 0 = nothing, 1 = holds, 2 = waits;
/// the mode index, token, since-time, and lock-delay end.
type LockPlan = (Vec<u8>, usize, u64, u64, u64);

#[derive(Clone, Debug)]
struct Plan {
    sessions: usize,
    locks: Vec<LockPlan>,
    /// Small faults, applied by index: 0 = none.
    faults: Vec<u8>,
    limits: (u64, u64, u64),
    answers: usize,
}

fn plan() -> impl Strategy<Value = Plan> {
    let lock = (
        prop::collection::vec(0u8..3, 5),
        0..MODES.len(),
        0u64..60,
        0u64..12_000,
        prop_oneof![Just(0u64), 0u64..NOW, NOW..NOW + 70_000],
    );
    (
        1usize..6,
        prop::collection::vec(lock, 0..4),
        prop::collection::vec(0u8..12, 0..3),
        (1u64..4, 1u64..4, 1u64..4),
        0usize..70,
    )
        .prop_map(|(sessions, locks, faults, limits, answers)| Plan {
            sessions,
            locks,
            faults,
            limits,
            answers,
        })
}

fn build(plan: &Plan) -> Table {
    let ids: Vec<SessionId> = (1..=plan.sessions as u128).map(SessionId).collect();
    let mut sessions: BTreeMap<SessionId, Session> = ids
        .iter()
        .map(|id| {
            let owner = (id.0 % 2 == 0).then(|| SessionOwner {
                principal: format!("p{}", id.0 % 3),
                secret_hash: SecretHash([1; 32]),
            });
            let recent = (1..=plan.answers.min(64) as u64)
                .map(|seq| Remembered {
                    seq,
                    digest: seq,
                    response: Ok(Outcome::Released),
                })
                .collect();
            let session = Session {
                label: format!("s{}", id.0),
                ttl_ms: 5_000,
                lock_delay_ms: 100,
                held: BTreeSet::new(),
                waiting: BTreeSet::new(),
                recent,
                evicted_through: 0,
                owner,
            };
            (*id, session)
        })
        .collect();
    let mut locks = BTreeMap::new();
    let mut delayed = BTreeSet::new();
    for (name, (roles, mode, token, since, available)) in NAMES.iter().zip(&plan.locks) {
        let mut lock = Lock {
            available_at_ms: *available,
            ..Lock::default()
        };
        for (id, role) in ids.iter().zip(roles) {
            let s = sessions.get_mut(id).unwrap();
            if *role == 1 {
                lock.holders.push(Holder {
                    session: *id,
                    mode: MODES[*mode],
                    token: *token,
                    since_ms: *since,
                });
                s.held.insert(name.to_string());
            } else if *role == 2 {
                lock.waiters.push(Waiter {
                    session: *id,
                    mode: MODES[*mode],
                });
                s.waiting.insert(name.to_string());
            }
        }
        if *available > 0 {
            delayed.insert((*available, name.to_string()));
        }
        locks.insert(name.to_string(), lock);
    }
    let (small, medium, large) = plan.limits;
    let limits = Limits {
        sessions: 3 + small,
        sessions_per_principal: small,
        holds_per_session: medium,
        waits_per_session: small,
        waiters_per_lock: medium,
        locks: 2 + large,
        retained_answers: 64 * (3 + large),
        claims: 1 << 20,
    };
    let mut table = Table {
        now_ms: NOW,
        sessions,
        locks,
        delayed,
        limits,
    };
    for fault in &plan.faults {
        damage(&mut table, *fault);
    }
    table
}

/// One small fault of the kind a damaged or hostile snapshot may carry.
fn damage(t: &mut Table, fault: u8) {
    let first_lock = t.locks.values_mut().next();
    match (fault, first_lock) {
        (1, Some(l)) => l.available_at_ms = NOW + 1,
        (2, Some(l)) => {
            if let Some(w) = l.waiters.pop() {
                l.holders.push(Holder {
                    session: w.session,
                    mode: w.mode,
                    token: 1,
                    since_ms: 0,
                });
            }
        }
        (3, Some(l)) => l
            .holders
            .iter_mut()
            .for_each(|h| h.token = LAST_APPLIED + 1),
        (4, _) => t.limits.locks = 0,
        (5, _) => {
            t.delayed.insert((5, "a".into()));
        }
        (6, _) => {
            if let Some(s) = t.sessions.values_mut().next() {
                s.waiting.insert("b".into());
            }
        }
        (7, _) => t.now_ms = 0,
        (8, _) => {
            t.locks.insert(String::new(), Lock::default());
        }
        _ => {}
    }
}

fn command(kind: u8, s: u128, n: usize, m: usize, seq: u64) -> Command {
    let (session, name) = (SessionId(s), NAMES[n].to_string());
    match kind {
        0 => Command::OpenSession {
            session,
            label: String::new(),
            ttl_ms: 5_000,
            lock_delay_ms: 200,
        },
        1 => Command::CloseSession { session, seq },
        2 => Command::ExpireSession { session },
        3 | 4 => Command::AcquireWith {
            session,
            seq,
            name,
            wait: kind == 3,
            mode: MODES[m],
        },
        5 => Command::Release { session, seq, name },
        6 => Command::CancelWait { session, seq, name },
        7 => Command::Tick,
        8 => Command::SetLimits(Limits::default()),
        _ => Command::AsSession {
            principal: format!("p{}", s % 3),
            secret_hash: SecretHash([1; 32]),
            command: Box::new(Command::Release { session, seq, name }),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn a_table_that_passes_the_check_takes_any_command(
        plan in plan(),
        commands in prop::collection::vec(
            (0u8..10, 1u128..8, 0..NAMES.len(), 0..MODES.len(), 0u64..80, 0u64..3_000),
            1..40,
        ),
    ) {
        let bytes = bincode::serialize(&build(&plan)).unwrap();
        let Ok(mut table) = bincode::deserialize::<LockTable>(&bytes) else {
            return Ok(()); // refused at decoding: fine
        };
        if table.check_consistent_at(LAST_APPLIED).is_err() {
            return Ok(());
        }
        let mut time = table.now_ms();
        for (i, (kind, s, n, m, seq, dt)) in commands.into_iter().enumerate() {
            let index = LAST_APPLIED + 1 + i as u64;
            time += dt;
            table.apply(index, &Proposal::single(time, command(kind, s, n, m, seq)));
            prop_assert_eq!(table.check_consistent_at(index), Ok(()));
        }
    }
}

/// The generator makes tables that pass, and tables that each fault fails.
#[test]
fn generated_tables_pass_unless_damaged() {
    let plan = Plan {
        sessions: 4,
        locks: vec![
            (vec![1, 2, 2, 0, 0], 0, 7, 500, 0),
            (vec![1, 1, 0, 2, 0], 1, 9, 600, NOW + 500),
            (vec![0, 0, 0, 0, 0], 0, 0, 0, NOW + 900),
        ],
        faults: vec![],
        limits: (1, 1, 1),
        answers: 64,
    };
    let decode = |plan: &Plan| {
        let bytes = bincode::serialize(&build(plan)).unwrap();
        bincode::deserialize::<LockTable>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| t.check_consistent_at(LAST_APPLIED))
    };
    assert_eq!(decode(&plan), Ok(()));
    for fault in 1..=8 {
        let damaged = Plan {
            faults: vec![fault],
            ..plan.clone()
        };
        assert!(decode(&damaged).is_err(), "fault {fault} passed the check");
    }
}

/// Enough generated tables pass the check for the property to mean
/// something.
#[test]
fn many_generated_tables_pass() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = plan();
    let mut passed = 0;
    for _ in 0..1_000 {
        let plan = strategy.new_tree(&mut runner).unwrap().current();
        let bytes = bincode::serialize(&build(&plan)).unwrap();
        if bincode::deserialize::<LockTable>(&bytes)
            .is_ok_and(|t| t.check_consistent_at(LAST_APPLIED).is_ok())
        {
            passed += 1;
        }
    }
    assert!(passed > 250, "only {passed} of 1000 generated tables pass");
}
