//! Property tests of the lock table's safety rules, driven by random
//! command sequences over a few sessions and names.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raftlock_core::{Command, Event, LockError, LockTable, Outcome, Proposal, SessionId};

const NAMES: [&str; 3] = ["a", "results.h5", "x:y:z"];
const SESSIONS: u128 = 4;

#[derive(Clone, Debug)]
enum Op {
    Open {
        s: u128,
        delay_ms: u64,
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
    Tick,
    /// Re-apply an earlier request (a client retry after a leader change).
    Replay {
        back: usize,
    },
    /// Send a new request under an earlier request's (session, seq): a
    /// client whose counter went back (a bug, a restart, two threads).
    Reuse {
        back: usize,
        kind: usize,
        n: usize,
        wait: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 1..=SESSIONS;
    let n = 0..NAMES.len();
    prop_oneof![
        2 => (s.clone(), prop_oneof![Just(0u64), Just(50), Just(400)])
            .prop_map(|(s, delay_ms)| Op::Open { s, delay_ms }),
        1 => s.clone().prop_map(|s| Op::Close { s }),
        1 => s.clone().prop_map(|s| Op::Expire { s }),
        6 => (s.clone(), n.clone(), any::<bool>()).prop_map(|(s, n, wait)| Op::Acquire { s, n, wait }),
        4 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Release { s, n }),
        1 => (s, n.clone()).prop_map(|(s, n)| Op::Cancel { s, n }),
        1 => Just(Op::Tick),
        2 => (1usize..6).prop_map(|back| Op::Replay { back }),
        2 => (1usize..6, 0usize..4, n, any::<bool>())
            .prop_map(|(back, kind, n, wait)| Op::Reuse { back, kind, n, wait }),
    ]
}

/// Drives a table and checks every rule after every step.
struct Harness {
    table: LockTable,
    index: u64,
    time_ms: u64,
    seq: u64,
    history: Vec<(u64, Proposal)>,
    last_token: BTreeMap<String, u64>,
    /// Per name: earliest time a grant is allowed after an expiry.
    delay_until: BTreeMap<String, u64>,
    /// Each slot's current session id: ids are never reused, as in production.
    slot_ids: BTreeMap<u128, u128>,
    next_id: u128,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: LockTable::new(),
            index: 0,
            time_ms: 1_000,
            seq: 0,
            history: Vec::new(),
            last_token: BTreeMap::new(),
            delay_until: BTreeMap::new(),
            slot_ids: BTreeMap::new(),
            next_id: 100,
        }
    }

    fn command(&mut self, op: &Op) -> Option<Command> {
        self.seq += 1;
        let seq = self.seq;
        if let Op::Open { s, .. } = *op {
            let alive = self
                .slot_ids
                .get(&s)
                .is_some_and(|id| self.table.session(SessionId(*id)).is_some());
            if !alive {
                self.next_id += 1;
                self.slot_ids.insert(s, self.next_id);
            }
        }
        let slots = self.slot_ids.clone();
        let id = |s: u128| SessionId(slots.get(&s).copied().unwrap_or(s));
        let name = |n: usize| NAMES[n].to_string();
        Some(match *op {
            Op::Open { s, delay_ms } => Command::OpenSession {
                session: id(s),
                label: format!("client-{}", id(s).0),
                ttl_ms: 5_000,
                lock_delay_ms: delay_ms,
            },
            Op::Close { s } => Command::CloseSession {
                session: id(s),
                seq,
            },
            Op::Expire { s } => Command::ExpireSession { session: id(s) },
            Op::Acquire { s, n, wait } => Command::Acquire {
                session: id(s),
                seq,
                name: name(n),
                wait,
            },
            Op::Release { s, n } => Command::Release {
                session: id(s),
                seq,
                name: name(n),
            },
            Op::Cancel { s, n } => Command::CancelWait {
                session: id(s),
                seq,
                name: name(n),
            },
            Op::Tick => Command::Tick,
            Op::Replay { .. } | Op::Reuse { .. } => return None,
        })
    }

    fn step(&mut self, op: &Op, dt: u64) -> Result<(), TestCaseError> {
        self.time_ms += dt;
        self.index += 1;
        let proposal = match self.command(op) {
            Some(command) => Proposal::single(self.time_ms, command),
            None => {
                let (Op::Replay { back } | Op::Reuse { back, .. }) = *op else {
                    unreachable!()
                };
                let requests: Vec<_> = self
                    .history
                    .iter()
                    .filter(|(_, p)| p.commands[0].request_id().is_some())
                    .map(|(_, p)| p)
                    .collect();
                if requests.len() < back {
                    return Ok(());
                }
                let earlier = requests[requests.len() - back].clone();
                if let Op::Reuse { kind, n, wait, .. } = *op {
                    return self.reuse(&earlier, kind, NAMES[n], wait);
                }
                return self.replay(earlier);
            }
        };
        let before = self.table.clone();
        let applied = self.table.apply(self.index, &proposal);
        self.history.push((self.index, proposal.clone()));
        self.check_step(
            &before,
            &proposal.commands[0],
            &applied.responses[0],
            &applied.events,
        )?;
        self.check_invariants()
    }

    /// A retried request must answer as before and change nothing.
    fn replay(&mut self, proposal: Proposal) -> Result<(), TestCaseError> {
        let (session, _) = proposal.commands[0].request_id().unwrap();
        let before = self.table.clone();
        // The first answer, recomputed on a copy of the history up to it.
        let mut first = LockTable::new();
        let mut first_answer = None;
        for (index, p) in &self.history {
            let a = first.apply(*index, p);
            if p == &proposal {
                first_answer = Some(a.responses[0].clone());
                break;
            }
        }
        // Session ids are 128 random bits and never reused, so a request made
        // before its session existed cannot really be retried into a new one.
        if matches!(first_answer, Some(Err(LockError::UnknownSession(_)))) {
            return Ok(());
        }
        let (applied, expected) = self.apply_without_effect(&before, &proposal)?;
        if before.session(session).is_some() {
            // Within the dedup window the first answer comes back unchanged.
            let response = applied.responses[0].clone();
            if !matches!(response, Err(LockError::StaleRequest { .. })) {
                prop_assert_eq!(Some(response), first_answer);
            }
            prop_assert_eq!(
                &self.table.locks("", usize::MAX),
                &expected.locks("", usize::MAX)
            );
        }
        Ok(())
    }

    /// Applies a request that may only settle lock-delays that ran out, as
    /// any entry does; checks it produced no events of its own and returns
    /// its answer and the table it should leave.
    fn apply_without_effect(
        &mut self,
        before: &LockTable,
        proposal: &Proposal,
    ) -> Result<(raftlock_core::Applied, LockTable), TestCaseError> {
        let applied = self.table.apply(self.index, proposal);
        self.history.push((self.index, proposal.clone()));
        let mut expected = before.clone();
        let settled = expected.apply(
            self.index,
            &Proposal::single(proposal.time_ms, Command::Tick),
        );
        prop_assert_eq!(
            &applied.events,
            &settled.events,
            "a request answered from memory produced events of its own"
        );
        Ok((applied, expected))
    }

    /// A different request under an earlier (session, seq) must be refused
    /// and change nothing; never answered with the earlier request's answer.
    fn reuse(
        &mut self,
        earlier: &Proposal,
        kind: usize,
        name: &str,
        wait: bool,
    ) -> Result<(), TestCaseError> {
        let (session, seq) = earlier.commands[0].request_id().unwrap();
        let name = name.to_string();
        let command = match kind {
            0 => Command::Acquire {
                session,
                seq,
                name,
                wait,
            },
            1 => Command::Release { session, seq, name },
            2 => Command::CancelWait { session, seq, name },
            _ => Command::CloseSession { session, seq },
        };
        // The request this number was first used for (`earlier` may itself be a refused reuse).
        let first = self
            .history
            .iter()
            .map(|(_, p)| p)
            .find(|p| p.commands[0].request_id() == Some((session, seq)))
            .cloned()
            .unwrap();
        if command == first.commands[0] {
            return self.replay(first);
        }
        let before = self.table.clone();
        let proposal = Proposal::single(self.time_ms, command.clone());
        let (applied, expected) = self.apply_without_effect(&before, &proposal)?;
        prop_assert_eq!(
            &self.table.locks("", usize::MAX),
            &expected.locks("", usize::MAX)
        );
        match &applied.responses[0] {
            Err(LockError::SeqReused {
                session: s, seq: q, ..
            }) => {
                prop_assert_eq!((*s, *q), (session, seq));
            }
            Err(LockError::StaleRequest { .. } | LockError::UnknownSession(_)) => {}
            other => {
                // Only a session that is gone (or never was) forgets its numbers.
                prop_assert!(
                    before.session(session).is_none(),
                    "reused seq {} for {:?} answered {:?}",
                    seq,
                    command,
                    other
                );
            }
        }
        self.check_invariants()
    }

    /// The rules one applied entry must keep, judged against the table
    /// `before` it.
    fn check_step(
        &mut self,
        before: &LockTable,
        command: &Command,
        response: &Result<Outcome, LockError>,
        events: &[Event],
    ) -> Result<(), TestCaseError> {
        self.check_grants(before, &grants(command, response, events))?;
        self.check_granted_answer(command, response)?;
        self.check_release(before, command, response)?;
        self.check_session_end(before, command, response)
    }

    /// Every grant (direct or to a waiter) gets a larger token than the last
    /// one for its name, outside its lock-delay, to the head of the queue.
    fn check_grants(
        &mut self,
        before: &LockTable,
        grants: &[(SessionId, String, u64)],
    ) -> Result<(), TestCaseError> {
        let now = self.table.now_ms();
        let mut granted_names = std::collections::BTreeSet::new();
        for (session, name, token) in grants {
            prop_assert!(
                granted_names.insert(name.clone()),
                "{} granted twice in one entry",
                name
            );
            prop_assert_eq!(*token, self.index, "token is the granting entry's index");
            let last = self.last_token.insert(name.clone(), *token).unwrap_or(0);
            prop_assert!(
                *token > last,
                "token for {} went from {} to {}",
                name,
                last,
                token
            );
            let until = self.delay_until.get(name).copied().unwrap_or(0);
            prop_assert!(
                now >= until,
                "{} granted at {} inside its lock-delay until {}",
                name,
                now,
                until
            );
            // FIFO: the grantee was the first waiter still alive after this entry.
            if let Some(view) = before.lock(name) {
                let first_alive = view
                    .waiters
                    .iter()
                    .find(|w| self.table.session(w.session).is_some());
                if let Some(first) = first_alive {
                    prop_assert_eq!(
                        first.session,
                        *session,
                        "grant skipped the queue on {}",
                        name
                    );
                }
            }
        }
        Ok(())
    }

    /// An answer that says "you hold it" is true when it is given.
    fn check_granted_answer(
        &self,
        command: &Command,
        response: &Result<Outcome, LockError>,
    ) -> Result<(), TestCaseError> {
        if let (
            Command::Acquire { session, name, .. } | Command::CancelWait { session, name, .. },
            Ok(Outcome::Granted { token, .. }),
        ) = (command, response)
        {
            prop_assert_eq!(
                self.table.holder(name),
                Some((*session, *token)),
                "answered granted, but the table disagrees on {}",
                name
            );
        }
        Ok(())
    }

    /// Only the holder releases; anyone else is told who holds it and
    /// changes nothing.
    fn check_release(
        &self,
        before: &LockTable,
        command: &Command,
        response: &Result<Outcome, LockError>,
    ) -> Result<(), TestCaseError> {
        match (command, response) {
            (
                Command::Release { session, name, .. },
                Err(LockError::NotHolder {
                    holder_session,
                    holder_label,
                    ..
                }),
            ) => {
                prop_assert_ne!(holder_session, session);
                prop_assert_eq!(before.holder(name).map(|h| h.0), Some(*holder_session));
                prop_assert_eq!(holder_label, &format!("client-{}", holder_session.0));
                prop_assert_eq!(
                    self.table.lock(name),
                    before.lock(name),
                    "refused release changed the lock"
                );
            }
            (Command::Release { session, name, .. }, Ok(Outcome::Released)) => {
                prop_assert_eq!(
                    before.holder(name).map(|h| h.0),
                    Some(*session),
                    "a non-holder released"
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// A session that ends leaves no hold or place in a queue behind, and
    /// its locks pass on; an expiry starts its lock-delay on them.
    fn check_session_end(
        &mut self,
        before: &LockTable,
        command: &Command,
        response: &Result<Outcome, LockError>,
    ) -> Result<(), TestCaseError> {
        let (
            Command::CloseSession { session, .. } | Command::ExpireSession { session },
            Ok(Outcome::SessionEnded { released }),
        ) = (command, response)
        else {
            return Ok(());
        };
        let now = self.table.now_ms();
        let expired = matches!(command, Command::ExpireSession { .. });
        let delay = before.session(*session).unwrap().lock_delay_ms;
        for view in self.table.locks("", usize::MAX) {
            prop_assert!(view.holder.as_ref().map(|h| h.session) != Some(*session));
            prop_assert!(view.waiters.iter().all(|w| w.session != *session));
        }
        for name in released {
            if expired && delay > 0 {
                self.delay_until.insert(name.clone(), now + delay);
            }
            // The next waiter gets it in the same apply (unless a lock-delay holds it back).
            let next = before
                .lock(name)
                .and_then(|v| v.waiters.first().map(|w| w.session));
            let next = next.filter(|n| self.table.session(*n).is_some());
            if let Some(next) = next {
                if !(expired && delay > 0) {
                    prop_assert_eq!(self.table.holder(name).map(|h| h.0), Some(next));
                }
            }
        }
        prop_assert!(self.table.session(*session).is_none());
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.table.check_consistent_at(self.index), Ok(()));
        for view in self.table.locks("", usize::MAX) {
            let mut seen = std::collections::BTreeSet::new();
            for w in &view.waiters {
                prop_assert!(
                    seen.insert(w.session),
                    "session queued twice on {}",
                    view.name
                );
                prop_assert!(self.table.session(w.session).is_some(), "dead waiter");
            }
            if let Some(h) = &view.holder {
                prop_assert!(
                    !seen.contains(&h.session),
                    "holder also waits on {}",
                    view.name
                );
                let s = self.table.session(h.session);
                prop_assert!(
                    s.is_some_and(|s| s.held.contains(&view.name)),
                    "holder's session does not list {}",
                    view.name
                );
            } else if !view.waiters.is_empty() {
                prop_assert!(
                    view.available_at_ms > self.table.now_ms(),
                    "free lock {} has waiters",
                    view.name
                );
            }
        }
        Ok(())
    }
}

/// Every grant one entry made: to waiters (its events) and to the caller
/// (its answer, unless the caller already held the lock).
fn grants(
    command: &Command,
    response: &Result<Outcome, LockError>,
    events: &[Event],
) -> Vec<(SessionId, String, u64)> {
    let mut grants: Vec<(SessionId, String, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Granted {
                session,
                name,
                token,
            } => Some((*session, name.clone(), *token)),
            _ => None,
        })
        .collect();
    if let (
        Command::Acquire { session, name, .. },
        Ok(Outcome::Granted {
            token,
            reentrant: false,
        }),
    ) = (command, response)
    {
        grants.push((*session, name.clone(), *token));
    }
    grants
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lock_rules_hold(ops in prop::collection::vec((op(), 0u64..200), 1..120)) {
        let mut h = Harness::new();
        for (op, dt) in &ops {
            h.step(op, *dt)?;
        }
    }

    #[test]
    fn replicas_agree(ops in prop::collection::vec((op(), 0u64..200), 1..80)) {
        let mut h = Harness::new();
        for (op, dt) in &ops {
            h.step(op, *dt)?;
        }
        let mut replica = LockTable::new();
        for (index, p) in &h.history {
            replica.apply(*index, p);
        }
        prop_assert_eq!(replica, h.table);
    }
}
