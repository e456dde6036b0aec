//! Property tests of session ownership: a command sent as a session
//! ([`Command::AsSession`]) by anyone but the session's owner changes
//! nothing and is refused, even when it replays a request the owner made;
//! sent by the owner it does exactly what the bare command does.
//!
//! (A file of its own beside `properties.rs` and `modes.rs`: the same kind
//! of random histories, over owned, owner-less and closed sessions.)

use proptest::prelude::*;
use raftlock_core::{
    Command, LockError, LockMode, LockTable, Proposal, SecretHash, SessionId, SessionOwner,
};

const NAMES: [&str; 2] = ["a", "b"];
/// Sessions 1 and 2 are owned (by "p1" and "p2"); session 3 was opened
/// the old way, with no owner.
const SESSIONS: u128 = 3;

fn owner_of(s: u128) -> Option<SessionOwner> {
    (s < SESSIONS).then(|| SessionOwner {
        principal: format!("p{s}"),
        secret_hash: SecretHash([s as u8; 32]),
    })
}

/// A session-acting command: what a client may send as a session.
#[derive(Clone, Debug)]
enum Act {
    Close,
    Acquire { n: usize, wait: bool, shared: bool },
    Release { n: usize },
    Cancel { n: usize },
}

#[derive(Clone, Debug)]
enum Op {
    Open {
        s: u128,
    },
    Expire {
        s: u128,
    },
    /// The owner acts (the way every real client does).
    Owner {
        s: u128,
        act: Act,
    },
    /// Someone else acts as session `s`: another principal, a wrong or
    /// empty secret, or the owner's secret from another principal.
    Intruder {
        s: u128,
        act: Act,
        how: usize,
    },
    /// Someone else replays one of the owner's earlier requests.
    IntruderReplay {
        back: usize,
        how: usize,
    },
}

fn act() -> impl Strategy<Value = Act> {
    let n = 0..NAMES.len();
    prop_oneof![
        1 => Just(Act::Close),
        5 => (n.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(n, wait, shared)| Act::Acquire { n, wait, shared }),
        3 => n.clone().prop_map(|n| Act::Release { n }),
        1 => n.prop_map(|n| Act::Cancel { n }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let s = 1..=SESSIONS;
    prop_oneof![
        2 => s.clone().prop_map(|s| Op::Open { s }),
        1 => s.clone().prop_map(|s| Op::Expire { s }),
        6 => (s.clone(), act()).prop_map(|(s, act)| Op::Owner { s, act }),
        4 => (s, act(), 0usize..4).prop_map(|(s, act, how)| Op::Intruder { s, act, how }),
        2 => (1usize..6, 0usize..4).prop_map(|(back, how)| Op::IntruderReplay { back, how }),
    ]
}

/// A claim that is not `s`'s owner: which way it is wrong is `how`.
fn intruder(s: u128, how: usize) -> (String, SecretHash) {
    let own = owner_of(s).unwrap_or_else(|| SessionOwner {
        principal: String::new(),
        secret_hash: SecretHash([0; 32]),
    });
    match how {
        0 => ("mallory".into(), SecretHash([0xee; 32])),
        1 => (own.principal, SecretHash([0xee; 32])),
        2 => ("mallory".into(), own.secret_hash),
        _ => {
            let mut near = own.secret_hash;
            near.0[31] ^= 1;
            (own.principal, near)
        }
    }
}

fn bare(session: SessionId, seq: u64, act: &Act) -> Command {
    let name = |n: &usize| NAMES[*n].to_string();
    match act {
        Act::Close => Command::CloseSession { session, seq },
        Act::Acquire { n, wait, shared } => Command::AcquireWith {
            session,
            seq,
            name: name(n),
            wait: *wait,
            mode: if *shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
        },
        Act::Release { n } => Command::Release {
            session,
            seq,
            name: name(n),
        },
        Act::Cancel { n } => Command::CancelWait {
            session,
            seq,
            name: name(n),
        },
    }
}

fn wrap(principal: String, secret_hash: SecretHash, command: Command) -> Command {
    Command::AsSession {
        principal,
        secret_hash,
        command: Box::new(command),
    }
}

struct Harness {
    table: LockTable,
    index: u64,
    time_ms: u64,
    seq: u64,
    /// Slot -> its current session id (ids are never reused).
    ids: [u128; SESSIONS as usize + 1],
    next_id: u128,
    /// The owner's requests so far, for replays.
    requests: Vec<(u128, Command)>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: LockTable::new(),
            index: 0,
            time_ms: 1_000,
            seq: 0,
            ids: [0; SESSIONS as usize + 1],
            next_id: 100,
            requests: Vec::new(),
        }
    }

    fn id(&self, s: u128) -> SessionId {
        SessionId(self.ids[s as usize])
    }

    fn next(&mut self, dt: u64) -> (u64, u64) {
        self.index += 1;
        self.time_ms += dt;
        self.seq += 1;
        (self.index, self.seq)
    }

    fn step(&mut self, op: &Op, dt: u64) -> Result<(), TestCaseError> {
        let (index, seq) = self.next(dt);
        match op {
            Op::Open { s } => {
                if self.table.session(self.id(*s)).is_none() {
                    self.next_id += 1;
                    self.ids[*s as usize] = self.next_id;
                }
                let (session, label) = (self.id(*s), format!("slot {s}"));
                let command = match owner_of(*s) {
                    Some(owner) => Command::OpenSessionOwned {
                        session,
                        label,
                        ttl_ms: 5_000,
                        lock_delay_ms: 0,
                        owner,
                    },
                    None => Command::OpenSession {
                        session,
                        label,
                        ttl_ms: 5_000,
                        lock_delay_ms: 0,
                    },
                };
                self.table
                    .apply(index, &Proposal::single(self.time_ms, command));
                Ok(())
            }
            Op::Expire { s } => {
                let command = Command::ExpireSession {
                    session: self.id(*s),
                };
                self.table
                    .apply(index, &Proposal::single(self.time_ms, command));
                Ok(())
            }
            Op::Owner { s, act } => {
                let command = bare(self.id(*s), seq, act);
                self.requests.push((*s, command.clone()));
                self.owner_acts(index, *s, command)
            }
            Op::Intruder { s, act, how } => {
                let command = bare(self.id(*s), seq, act);
                self.intruder_acts(index, *s, command, *how)
            }
            Op::IntruderReplay { back, how } => {
                let Some((s, command)) = self
                    .requests
                    .len()
                    .checked_sub(*back)
                    .map(|i| self.requests[i].clone())
                else {
                    return Ok(());
                };
                self.intruder_acts(index, s, command, *how)
            }
        }
    }

    /// The owner's wrapped command does what the bare command does.
    fn owner_acts(&mut self, index: u64, s: u128, command: Command) -> Result<(), TestCaseError> {
        let (principal, hash) = match owner_of(s) {
            Some(owner) => (owner.principal, owner.secret_hash),
            // Owner-less: any claim is as good as another.
            None => ("anyone".into(), SecretHash([0x42; 32])),
        };
        let mut unwrapped = self.table.clone();
        let plain = Proposal::single(self.time_ms, command.clone());
        let want = unwrapped.apply_with_events(index, &plain);
        let wrapped = Proposal::single(self.time_ms, wrap(principal, hash, command));
        let got = self.table.apply_with_events(index, &wrapped);
        prop_assert_eq!(got, want);
        prop_assert_eq!(&self.table, &unwrapped);
        Ok(())
    }

    /// Anyone else's command is refused and changes nothing: the table is
    /// what an entry with no commands would leave.
    fn intruder_acts(
        &mut self,
        index: u64,
        s: u128,
        command: Command,
        how: usize,
    ) -> Result<(), TestCaseError> {
        let session = command.request_id().map(|(session, _)| session);
        let (principal, hash) = intruder(s, how);
        let mut expected = self.table.clone();
        let settled =
            expected.apply_with_events(index, &Proposal::single(self.time_ms, Command::Tick));
        let owned = session
            .and_then(|id| self.table.session_owner(id))
            .flatten()
            .is_some();
        let exists = session.is_some_and(|id| self.table.session(id).is_some());
        let wrapped = Proposal::single(self.time_ms, wrap(principal, hash, command.clone()));
        let (applied, changes) = self.table.apply_with_events(index, &wrapped);
        if !exists {
            let unknown = LockError::UnknownSession(session.unwrap_or(SessionId(0)));
            prop_assert_eq!(&applied.responses, &vec![Err(unknown)]);
        } else if owned {
            let refusal = LockError::NotSessionOwner {
                session: session.unwrap_or(SessionId(0)),
                request: command.describe(),
            };
            prop_assert_eq!(&applied.responses, &vec![Err(refusal)]);
        } else {
            // An owner-less session takes anyone: nothing to check here
            // beyond what `owner_acts` checks.
            return Ok(());
        }
        prop_assert_eq!(
            &self.table,
            &expected,
            "a refused command changed the table"
        );
        prop_assert_eq!((applied.events, changes), (settled.0.events, settled.1));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn only_the_owner_acts_as_a_session(ops in prop::collection::vec((op(), 0u64..100), 1..100)) {
        let mut h = Harness::new();
        for (op, dt) in &ops {
            h.step(op, *dt)?;
            prop_assert_eq!(h.table.check_consistent_at(h.index), Ok(()));
        }
    }
}

/// The owner's retry still gets its first answer after an intruder's
/// replay was refused: the refusal was not remembered in its place.
#[test]
fn a_refused_replay_neither_learns_nor_spoils_the_first_answer() {
    let mut t = LockTable::new();
    let s = SessionId(7);
    let owner = owner_of(1).unwrap();
    let open = Command::OpenSessionOwned {
        session: s,
        label: "a".into(),
        ttl_ms: 5_000,
        lock_delay_ms: 0,
        owner: owner.clone(),
    };
    t.apply(1, &Proposal::single(0, open));
    let acquire = bare(
        s,
        1,
        &Act::Acquire {
            n: 0,
            wait: false,
            shared: false,
        },
    );
    let as_owner = wrap(owner.principal.clone(), owner.secret_hash, acquire.clone());
    let first = t.apply(2, &Proposal::single(0, as_owner.clone())).responses;
    let (principal, hash) = intruder(1, 3);
    let stolen = t.apply(3, &Proposal::single(0, wrap(principal, hash, acquire)));
    assert!(matches!(
        stolen.responses[0],
        Err(LockError::NotSessionOwner { .. })
    ));
    let retry = t.apply(4, &Proposal::single(0, as_owner)).responses;
    assert_eq!(retry, first);
}

/// Only session-acting commands may be wrapped; anything else is an
/// error, never a panic, and changes nothing.
#[test]
fn wrapping_anything_else_is_refused() {
    let mut t = LockTable::new();
    let s = SessionId(7);
    let owner = owner_of(1).unwrap();
    let open = Command::OpenSessionOwned {
        session: s,
        label: "a".into(),
        ttl_ms: 5_000,
        lock_delay_ms: 0,
        owner: owner.clone(),
    };
    t.apply(1, &Proposal::single(0, open.clone()));
    let release = bare(s, 1, &Act::Release { n: 0 });
    let nested = wrap(
        owner.principal.clone(),
        owner.secret_hash,
        wrap(owner.principal.clone(), owner.secret_hash, release),
    );
    for inner in [
        Command::Tick,
        Command::ExpireSession { session: s },
        open,
        nested,
    ] {
        let before = t.clone();
        let command = wrap(owner.principal.clone(), owner.secret_hash, inner);
        let got = t.apply(2, &Proposal::single(0, command));
        assert!(
            matches!(got.responses[0], Err(LockError::InvalidArgument(_))),
            "{:?}",
            got.responses
        );
        assert_eq!(t, before);
    }
}
