//! Property tests of lock modes (exclusive, shared, semaphore) and of the
//! change-event stream, driven by random entries of one to a few commands.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use raftlock_core::{
    Command, LockError, LockEvent, LockMirror, LockMode, LockTable, LockView, MirroredLock,
    Outcome, Proposal, SessionId,
};

const NAMES: [&str; 3] = ["rw", "sem", "any"];
const SESSIONS: u128 = 5;
const MODES: [LockMode; 4] = [
    LockMode::Exclusive,
    LockMode::Shared,
    LockMode::Semaphore { limit: 2 },
    LockMode::Semaphore { limit: 3 },
];

#[derive(Clone, Copy, Debug)]
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
    Tick,
}

/// Mostly read/write modes on "rw" and semaphore modes on "sem"; anything
/// on "any", so names change kind and mode conflicts happen.
fn acquire() -> impl Strategy<Value = Op> {
    (
        1..=SESSIONS,
        0..NAMES.len(),
        0..MODES.len(),
        0..10u8,
        any::<bool>(),
    )
        .prop_map(|(s, n, m, skew, wait)| {
            let m = match (n, skew) {
                (0, 0..=8) => m % 2,
                (1, 0..=7) => 2,
                (1, 8) => 3,
                _ => m,
            };
            Op::Acquire { s, n, m, wait }
        })
}

fn op() -> impl Strategy<Value = Op> {
    let s = 1..=SESSIONS;
    let n = 0..NAMES.len();
    prop_oneof![
        2 => (s.clone(), prop_oneof![Just(0u64), Just(0), Just(50)])
            .prop_map(|(s, delay_ms)| Op::Open { s, delay_ms }),
        1 => s.clone().prop_map(|s| Op::Close { s }),
        1 => s.clone().prop_map(|s| Op::Expire { s }),
        8 => acquire(),
        5 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Release { s, n }),
        3 => (s, n).prop_map(|(s, n)| Op::Cancel { s, n }),
        1 => Just(Op::Tick),
    ]
}

/// An entry: one command half the time, else a batch of up to four.
fn entry() -> impl Strategy<Value = (Vec<Op>, u64)> {
    let ops = prop_oneof![
        prop::collection::vec(op(), 1..=1),
        prop::collection::vec(op(), 2..=4)
    ];
    (ops, 0u64..80)
}

struct Harness {
    table: LockTable,
    /// Applies the same entries, to check replicas agree.
    replica: LockTable,
    /// Rebuilt from nothing but the events.
    mirror: LockMirror,
    index: u64,
    time_ms: u64,
    seq: u64,
    /// Each slot's current session id: ids are never reused.
    slots: BTreeMap<u128, u128>,
    next_id: u128,
    /// Per name, the entry index of its latest grant.
    last_grant: BTreeMap<String, u64>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: LockTable::new(),
            replica: LockTable::new(),
            mirror: LockMirror::new(),
            index: 0,
            time_ms: 1_000,
            seq: 0,
            slots: BTreeMap::new(),
            next_id: 100,
            last_grant: BTreeMap::new(),
        }
    }

    fn command(&mut self, op: Op) -> Command {
        self.seq += 1;
        let seq = self.seq;
        if let Op::Open { s, .. } = op {
            self.next_id += 1;
            self.slots.insert(s, self.next_id);
        }
        let slots = &self.slots;
        let id = |s: u128| SessionId(slots.get(&s).copied().unwrap_or(s));
        let name = |n: usize| NAMES[n].to_string();
        match op {
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
            // Exclusive acquires go both ways: the old command and the new.
            Op::Acquire { s, n, m: 0, wait } if seq.is_multiple_of(2) => Command::Acquire {
                session: id(s),
                seq,
                name: name(n),
                wait,
            },
            Op::Acquire { s, n, m, wait } => Command::AcquireWith {
                session: id(s),
                seq,
                name: name(n),
                wait,
                mode: MODES[m],
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
        }
    }

    fn step(&mut self, ops: &[Op], dt: u64) -> Result<(), TestCaseError> {
        self.index += 1;
        self.time_ms += dt;
        let commands: Vec<Command> = ops.iter().map(|op| self.command(*op)).collect();
        let proposal = Proposal {
            time_ms: self.time_ms,
            commands,
        };
        let before = self.table.clone();
        let (applied, events) = self.table.apply_with_events(self.index, &proposal);
        let (replica_applied, replica_events) =
            self.replica.apply_with_events(self.index, &proposal);
        prop_assert_eq!(&applied, &replica_applied, "replicas answered differently");
        prop_assert_eq!(&events, &replica_events, "replicas saw different events");
        prop_assert_eq!(&self.table, &self.replica, "replicas diverged");
        prop_assert_eq!(self.table.check_consistent_at(self.index), Ok(()));

        self.check_events(&events)?;
        self.check_holders()?;
        if let ([command], [response]) = (&proposal.commands[..], &applied.responses[..]) {
            self.check_answer(&before, command, response)?;
        }
        Ok(())
    }

    /// Tokens, FIFO order and completeness, through the event stream.
    fn check_events(&mut self, events: &[LockEvent]) -> Result<(), TestCaseError> {
        let mut exclusive_in_entry = BTreeSet::new();
        let mut granted_in_entry = BTreeSet::new();
        for event in events {
            if let LockEvent::Granted {
                name,
                session,
                mode,
                token,
            } = event
            {
                prop_assert_eq!(*token, self.index, "token is the granting entry's index");
                let last = self.last_grant.insert(name.clone(), *token).unwrap_or(0);
                prop_assert!(*token >= last, "token for {} went back", name);
                if *token == last {
                    // Shares an earlier grant's entry: both must be non-exclusive.
                    prop_assert!(granted_in_entry.contains(name));
                }
                if *mode == LockMode::Exclusive {
                    prop_assert!(
                        !granted_in_entry.contains(name),
                        "{} granted exclusive after another grant with the same token",
                        name
                    );
                    exclusive_in_entry.insert(name.clone());
                } else {
                    prop_assert!(
                        !exclusive_in_entry.contains(name),
                        "{} granted again after an exclusive grant with the same token",
                        name
                    );
                }
                granted_in_entry.insert(name.clone());
                // FIFO: a grant goes to the front waiter, or to a newcomer
                // only when nobody waits.
                let waiters = self
                    .mirror
                    .locks()
                    .get(name)
                    .map(|l| l.waiters.clone())
                    .unwrap_or_default();
                if let Some(front) = waiters.first() {
                    prop_assert_eq!(front.0, *session, "grant on {} skipped the queue", name);
                }
            }
            if let Err(e) = self.mirror.apply(event) {
                return Err(TestCaseError::fail(format!("event stream: {e}")));
            }
        }
        // Replaying every event from an empty table gives its holders and queues.
        prop_assert_eq!(self.mirror.locks(), &mirrored(&self.table));
        let mut from_state = LockMirror::new();
        for event in self.table.state_events("") {
            from_state
                .apply(&event)
                .map_err(|e| TestCaseError::fail(format!("state events: {e}")))?;
        }
        prop_assert_eq!(from_state.locks(), self.mirror.locks());
        Ok(())
    }

    fn check_holders(&self) -> Result<(), TestCaseError> {
        let now = self.table.now_ms();
        for view in self.table.locks("", usize::MAX) {
            let modes: Vec<LockMode> = view.holders.iter().map(|h| h.mode).collect();
            if modes.contains(&LockMode::Exclusive) {
                prop_assert_eq!(
                    modes.len(),
                    1,
                    "exclusive holder not alone on {}",
                    view.name
                );
            }
            if let Some(limit) = view.limit() {
                prop_assert!(
                    modes.len() <= limit as usize,
                    "{} over its limit",
                    view.name
                );
            }
            let kinds: BTreeSet<String> = modes
                .iter()
                .chain(view.waiters.iter().map(|w| &w.mode))
                .map(|m| format!("{:?}", m.kind()))
                .collect();
            prop_assert!(kinds.len() <= 1, "{} mixes kinds", view.name);
            prop_assert_eq!(view.holder.as_ref(), view.holders.first());
            // Settled: the front waiter is not admitted, or must wait out a
            // delay (a lock-delay, or the next entry for the token rule).
            if let Some(front) = view.waiters.first() {
                prop_assert!(
                    !admits(&view, front.mode) || view.available_at_ms >= now,
                    "{} could grant its front waiter",
                    view.name
                );
                prop_assert!(
                    self.table
                        .next_delay_end_ms()
                        .is_some_and(|at| at <= view.available_at_ms.max(now))
                        || !admits(&view, front.mode)
                );
            }
        }
        Ok(())
    }

    /// The answer to a lone command is true of the table before and after.
    fn check_answer(
        &self,
        before: &LockTable,
        command: &Command,
        response: &Result<Outcome, LockError>,
    ) -> Result<(), TestCaseError> {
        let (session, name, mode) = match command {
            Command::Acquire { session, name, .. } => (*session, name, LockMode::Exclusive),
            Command::AcquireWith {
                session,
                name,
                mode,
                ..
            } => (*session, name, *mode),
            _ => return Ok(()),
        };
        let old = before.lock(name);
        let old_kind = old.as_ref().and_then(|v| v.kind);
        let held_before = before.held_by(name, session);
        match response {
            Ok(Outcome::Granted {
                token,
                reentrant: false,
            }) => {
                prop_assert_eq!(*token, self.index);
                prop_assert_eq!(self.table.held_by(name, session), Some((mode, *token)));
                prop_assert!(old.is_none_or(|v| v.waiters.is_empty()), "jumped the queue");
            }
            Ok(Outcome::Granted {
                token,
                reentrant: true,
            }) => prop_assert_eq!(held_before, Some((mode, *token))),
            Ok(Outcome::Queued { .. }) | Ok(Outcome::Busy { .. }) => {
                prop_assert!(held_before.is_none());
                prop_assert!(old_kind.is_none_or(|k| k == mode.kind()));
            }
            Err(LockError::ModeConflict {
                in_use_as, asked, ..
            }) => {
                prop_assert_eq!(*asked, mode);
                prop_assert_eq!(old_kind, Some(*in_use_as));
                prop_assert_ne!(*in_use_as, mode.kind());
            }
            Err(LockError::OwnModeConflict {
                current,
                asked,
                waiting,
                ..
            }) => {
                prop_assert_ne!(current, asked);
                prop_assert_eq!(old_kind, Some(current.kind()));
                let waited = old
                    .as_ref()
                    .and_then(|v| v.waiters.iter().find(|w| w.session == session))
                    .map(|w| w.mode);
                if *waiting {
                    prop_assert_eq!(waited, Some(*current));
                } else {
                    prop_assert_eq!(held_before.map(|h| h.0), Some(*current));
                }
            }
            Err(LockError::UnknownSession(_)) => {
                prop_assert!(before.session(session).is_none())
            }
            other => prop_assert!(false, "unexpected answer {:?}", other),
        }
        if response.is_err() || matches!(response, Ok(Outcome::Busy { .. })) {
            // A refusal changes nothing but what the entry's own tick settles.
            let mut expected = before.clone();
            expected.apply(self.index, &Proposal::single(self.time_ms, Command::Tick));
            prop_assert_eq!(
                self.table.locks("", usize::MAX),
                expected.locks("", usize::MAX)
            );
        }
        Ok(())
    }
}

/// Whether a view's holders admit one more in `mode` (the rule restated).
fn admits(view: &LockView, mode: LockMode) -> bool {
    let holders = &view.holders;
    match mode {
        LockMode::Exclusive => holders.is_empty(),
        LockMode::Shared => holders.iter().all(|h| h.mode == LockMode::Shared),
        LockMode::Semaphore { limit } => holders.len() < limit as usize,
    }
}

/// The table's holders and queues in the shape a mirror keeps them.
fn mirrored(table: &LockTable) -> BTreeMap<String, MirroredLock> {
    table
        .locks("", usize::MAX)
        .into_iter()
        .filter(|v| v.kind.is_some())
        .map(|v| {
            let lock = MirroredLock {
                holders: v
                    .holders
                    .iter()
                    .map(|h| (h.session, h.mode, h.token))
                    .collect(),
                waiters: v.waiters.iter().map(|w| (w.session, w.mode)).collect(),
            };
            (v.name, lock)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mode_rules_hold_and_events_rebuild_the_table(
        entries in prop::collection::vec(entry(), 1..100)
    ) {
        let mut h = Harness::new();
        let open_all: Vec<Op> = (1..=SESSIONS).map(|s| Op::Open { s, delay_ms: 0 }).collect();
        h.step(&open_all, 0)?;
        for (ops, dt) in &entries {
            h.step(ops, *dt)?;
        }
        // One later entry settles every delay: no front waiter is admitted.
        h.step(&[Op::Tick], 1_000)?;
        for view in h.table.locks("", usize::MAX) {
            if let Some(front) = view.waiters.first() {
                prop_assert!(!admits(&view, front.mode), "{} stuck", view.name);
            }
        }
    }

    /// Readers hold; a writer queues; then an endless stream of readers
    /// comes and goes. No reader is let in past the writer, and the writer
    /// is granted in the entry where the last reader that held before it
    /// leaves.
    #[test]
    fn a_writer_is_not_starved_by_readers(
        stream in prop::collection::vec((0u128..6, any::<bool>()), 1..150),
        leave_at in prop::collection::vec(0usize..150, 3),
    ) {
        let mut t = LockTable::new();
        let mut index = 0;
        let mut apply = |t: &mut LockTable, c: Command| {
            index += 1;
            let (applied, _) = t.apply_with_events(index, &Proposal::single(0, c));
            (index, applied.responses.into_iter().next().unwrap())
        };
        let open = |s: u128| Command::OpenSession {
            session: SessionId(s), label: String::new(), ttl_ms: 5_000, lock_delay_ms: 0,
        };
        let shared = |s: u128, seq: u64| Command::AcquireWith {
            session: SessionId(s), seq, name: "n".into(), wait: true, mode: LockMode::Shared,
        };
        let release = |s: u128, seq: u64| Command::Release {
            session: SessionId(s), seq, name: "n".into(),
        };
        // Readers 1..=3 hold; the writer is 10; the stream's readers are 20...
        for s in [1, 2, 3, 10].into_iter().chain(20..26) {
            prop_assert!(apply(&mut t, open(s)).1.is_ok());
        }
        for s in 1..=3 {
            prop_assert!(apply(&mut t, shared(s, 1)).1.is_ok());
        }
        let writer = SessionId(10);
        let queued = apply(&mut t, Command::Acquire {
            session: writer, seq: 1, name: "n".into(), wait: true,
        });
        prop_assert_eq!(queued.1, Ok(Outcome::Queued { position: 0 }));
        let mut holding: BTreeSet<u128> = (1..=3).collect();
        let mut seq = 10;
        let mut granted_at = None;
        for (step, (reader, hold)) in stream.iter().enumerate() {
            seq += 1;
            let reader = 20 + reader;
            let command = if *hold { shared(reader, seq) } else { release(reader, seq) };
            let (_, answer) = apply(&mut t, command);
            if *hold && granted_at.is_none() {
                prop_assert!(
                    !matches!(answer, Ok(Outcome::Granted { reentrant: false, .. })),
                    "a reader passed the queued writer"
                );
            }
            for (early, at) in leave_at.iter().enumerate() {
                let early = early as u128 + 1;
                if *at == step && holding.remove(&early) {
                    let (i, _) = apply(&mut t, release(early, seq));
                    if holding.is_empty() {
                        granted_at = Some(i);
                    }
                }
            }
            if let Some(i) = granted_at {
                prop_assert_eq!(t.held_by("n", writer), Some((LockMode::Exclusive, i)));
            } else {
                prop_assert_eq!(t.held_by("n", writer), None);
            }
        }
    }
}
