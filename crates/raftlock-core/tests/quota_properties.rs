//! Property tests of the quotas: random histories over a few sessions,
//! principals and names, with `SetLimits` entries setting small limits
//! (and sometimes lowering them below what is in use). After every entry:
//! the table passes the full check for tables from outside; the reported
//! use of every quota equals a recount from the table's public views; no
//! entry raises a quota's use above both its limit and its use before;
//! and a `QuotaExceeded` refusal leaves the table exactly as an empty
//! entry would have.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raftlock_core::{
    Command, Limits, LockError, LockMode, LockTable, Outcome, Proposal, Quota, QuotaUsage,
    SecretHash, SessionId, SessionOwner, DEDUP_WINDOW,
};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const SLOTS: u128 = 6;
const MODES: [LockMode; 3] = [
    LockMode::Exclusive,
    LockMode::Shared,
    LockMode::Semaphore { limit: 2 },
];

#[derive(Clone, Debug)]
enum Op {
    /// Opened by principal `p` (`None`: the old way, without an owner).
    Open {
        s: u128,
        p: Option<u8>,
    },
    Close {
        s: u128,
    },
    Expire {
        s: u128,
    },
    Acquire {
        s: u128,
        n: usize,
        m: usize,
        wait: bool,
    },
    Release {
        s: u128,
        n: usize,
    },
    Cancel {
        s: u128,
        n: usize,
    },
    SetLimits(Limits),
    Tick,
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (
        (0u64..7, 1u64..4, 1u64..5, 1u64..4),
        (1u64..4, 1u64..6, 0u64..7, 1u64..10),
    )
        .prop_map(
            |((sessions, per_principal, holds, waits), (waiters, locks, slots, claims))| Limits {
                // 0 now and then: refused as invalid, changing nothing.
                sessions,
                sessions_per_principal: per_principal,
                holds_per_session: holds,
                waits_per_session: waits,
                waiters_per_lock: waiters,
                locks,
                retained_answers: slots * DEDUP_WINDOW as u64,
                claims,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let s = 1..=SLOTS;
    let n = 0..NAMES.len();
    prop_oneof![
        3 => (s.clone(), prop::option::of(0u8..2)).prop_map(|(s, p)| Op::Open { s, p }),
        1 => s.clone().prop_map(|s| Op::Close { s }),
        1 => s.clone().prop_map(|s| Op::Expire { s }),
        8 => (s.clone(), n.clone(), 0..MODES.len(), any::<bool>())
            .prop_map(|(s, n, m, wait)| Op::Acquire { s, n, m, wait }),
        3 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Release { s, n }),
        1 => (s, n).prop_map(|(s, n)| Op::Cancel { s, n }),
        1 => small_limits().prop_map(Op::SetLimits),
        1 => Just(Op::Tick),
    ]
}

struct Harness {
    table: LockTable,
    index: u64,
    time_ms: u64,
    seq: u64,
    /// Each slot's current session id: a reopened slot gets a new one.
    ids: BTreeMap<u128, u128>,
    next_id: u128,
    refusals: usize,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: LockTable::new(),
            index: 0,
            time_ms: 1_000,
            seq: 0,
            ids: BTreeMap::new(),
            next_id: 100,
            refusals: 0,
        }
    }

    fn id(&self, slot: u128) -> SessionId {
        SessionId(self.ids.get(&slot).copied().unwrap_or(slot))
    }

    fn command(&mut self, op: &Op) -> Command {
        self.seq += 1;
        let seq = self.seq;
        let name = |n: usize| NAMES[n].to_string();
        match *op {
            Op::Open { s, p } => {
                if self.table.session(self.id(s)).is_none() {
                    self.next_id += 1;
                    self.ids.insert(s, self.next_id);
                }
                let (session, label) = (self.id(s), format!("slot-{s}"));
                match p {
                    None => Command::OpenSession {
                        session,
                        label,
                        ttl_ms: 5_000,
                        lock_delay_ms: 100,
                    },
                    Some(p) => Command::OpenSessionOwned {
                        session,
                        label,
                        ttl_ms: 5_000,
                        lock_delay_ms: 0,
                        owner: SessionOwner {
                            principal: format!("p{p}"),
                            secret_hash: SecretHash([p; 32]),
                        },
                    },
                }
            }
            Op::Close { s } => Command::CloseSession {
                session: self.id(s),
                seq,
            },
            Op::Expire { s } => Command::ExpireSession {
                session: self.id(s),
            },
            Op::Acquire { s, n, m, wait } => Command::AcquireWith {
                session: self.id(s),
                seq,
                name: name(n),
                wait,
                mode: MODES[m],
            },
            Op::Release { s, n } => Command::Release {
                session: self.id(s),
                seq,
                name: name(n),
            },
            Op::Cancel { s, n } => Command::CancelWait {
                session: self.id(s),
                seq,
                name: name(n),
            },
            Op::SetLimits(limits) => Command::SetLimits(limits),
            Op::Tick => Command::Tick,
        }
    }

    fn step(&mut self, op: &Op, dt: u64) -> Result<(), TestCaseError> {
        self.time_ms += dt;
        self.index += 1;
        let command = self.command(op);
        let before = self.table.clone();
        let used_before = before.quota_usage();
        let applied = self
            .table
            .apply(self.index, &Proposal::single(self.time_ms, command.clone()));
        let response = &applied.responses[0];
        prop_assert_eq!(self.table.check_consistent_at(self.index), Ok(()));
        let used = self.table.quota_usage();
        prop_assert_eq!(used, recount(&self.table), "kept counters != recount");
        let limits = self.table.limits();
        for quota in Quota::ALL {
            let (now, was, limit) = (used.get(quota), used_before.get(quota), limits.get(quota));
            prop_assert!(
                now <= limit.max(was),
                "{} went from {} to {} past its limit {} ({:?})",
                quota,
                was,
                now,
                limit,
                command
            );
        }
        match response {
            Err(LockError::QuotaExceeded {
                quota,
                limit,
                used: whose,
                ..
            }) => {
                self.refusals += 1;
                prop_assert_eq!(*limit, before.limits().get(*quota));
                let more = if *quota == Quota::RetainedAnswers {
                    DEDUP_WINDOW as u64
                } else {
                    1
                };
                prop_assert!(whose + more > *limit);
                // Exactly what an entry with nothing in it would have done.
                let mut expected = before.clone();
                expected.apply(self.index, &Proposal::single(self.time_ms, Command::Tick));
                prop_assert!(expected == self.table, "a quota refusal changed the table");
            }
            Err(LockError::InvalidArgument(_)) if matches!(command, Command::SetLimits(_)) => {
                prop_assert_eq!(self.table.limits(), before.limits());
            }
            Ok(Outcome::LimitsSet) => {
                let Command::SetLimits(asked) = command else {
                    unreachable!()
                };
                prop_assert_eq!(self.table.limits(), asked);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Every quota's use, counted from the table's public views alone.
fn recount(table: &LockTable) -> QuotaUsage {
    let mut per_principal: BTreeMap<String, u64> = BTreeMap::new();
    let mut claims: BTreeMap<SessionId, u64> = BTreeMap::new();
    let mut waits: BTreeMap<SessionId, u64> = BTreeMap::new();
    let mut sessions = 0;
    for (id, _) in table.session_ttls() {
        sessions += 1;
        let principal = table
            .session_owner(id)
            .flatten()
            .map_or(String::new(), |o| o.principal.clone());
        *per_principal.entry(principal).or_default() += 1;
        let held = table.session(id).map_or(0, |s| s.held.len() as u64);
        claims.insert(id, held);
    }
    let locks = table.locks("", usize::MAX);
    let mut waiters_per_lock = 0;
    let mut all_claims = 0;
    for lock in &locks {
        all_claims += (lock.holders.len() + lock.waiters.len()) as u64;
        waiters_per_lock = waiters_per_lock.max(lock.waiters.len() as u64);
        for w in &lock.waiters {
            *claims.entry(w.session).or_default() += 1;
            *waits.entry(w.session).or_default() += 1;
        }
    }
    let mut usage = QuotaUsage::default();
    let per_principal = per_principal.into_values();
    let (claims, waits) = (claims.into_values(), waits.into_values());
    usage.set(Quota::Sessions, sessions);
    usage.set(
        Quota::SessionsPerPrincipal,
        per_principal.max().unwrap_or(0),
    );
    usage.set(Quota::HoldsPerSession, claims.max().unwrap_or(0));
    usage.set(Quota::WaitsPerSession, waits.max().unwrap_or(0));
    usage.set(Quota::WaitersPerLock, waiters_per_lock);
    usage.set(Quota::Locks, locks.len() as u64);
    usage.set(Quota::RetainedAnswers, sessions * DEDUP_WINDOW as u64);
    usage.set(Quota::Claims, all_claims);
    usage
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn quotas_hold_and_refusals_change_nothing(
        ops in prop::collection::vec((op(), 0u64..150), 1..150)
    ) {
        let mut h = Harness::new();
        for (op, dt) in &ops {
            h.step(op, *dt)?;
        }
    }
}

/// The generator does reach the refusals the property is about.
#[test]
fn histories_reach_quota_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec((op(), 0u64..150), 100..150);
    let mut refusals = 0;
    for _ in 0..20 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let mut h = Harness::new();
        for (op, dt) in &ops {
            h.step(op, *dt).unwrap();
        }
        refusals += h.refusals;
    }
    assert!(
        refusals > 20,
        "only {refusals} quota refusals in 20 histories"
    );
}
