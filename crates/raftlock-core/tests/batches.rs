//! Property tests for entries that carry many commands, as the leader's
//! batcher proposes them: tokens stay strictly increasing per name (an
//! entry grants a name at most once), and a grant held back because of
//! that rule happens in the very next entry.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use raftlock_core::{Command, Event, LockTable, Outcome, Proposal, SessionId};

const NAMES: [&str; 2] = ["a", "b"];
const SESSIONS: u128 = 4;

fn command() -> impl Strategy<Value = (u128, u8, usize, bool)> {
    (1..=SESSIONS, 0u8..7, 0..NAMES.len(), any::<bool>())
}

/// Turns a generated tuple into a command; `slots` maps a session slot to
/// its current id (ids are never reused, as in production).
fn to_command(
    (slot, kind, n, wait): (u128, u8, usize, bool),
    seq: u64,
    slots: &mut BTreeMap<u128, u128>,
    next_id: &mut u128,
) -> Command {
    let session = SessionId(*slots.entry(slot).or_insert(slot));
    let name = NAMES[n].to_string();
    match kind {
        0 => {
            *next_id += 1;
            slots.insert(slot, *next_id);
            Command::OpenSession {
                session: SessionId(*next_id),
                label: format!("s{next_id}"),
                ttl_ms: 5_000,
                lock_delay_ms: if wait { 0 } else { 30 },
            }
        }
        1 => Command::CloseSession { session, seq },
        2 => Command::ExpireSession { session },
        3 | 4 => Command::Acquire {
            session,
            seq,
            name,
            wait,
        },
        5 => Command::Release { session, seq, name },
        _ => Command::CancelWait { session, seq, name },
    }
}

/// Names granted by one entry, from its events and its direct grants.
fn grants(
    proposal: &Proposal,
    responses: &[raftlock_core::Response],
    events: &[Event],
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Granted { name, token, .. } => Some((name.clone(), *token)),
            _ => None,
        })
        .collect();
    for (command, response) in proposal.commands.iter().zip(responses) {
        if let (
            Command::Acquire { name, .. },
            Ok(Outcome::Granted {
                token,
                reentrant: false,
            }),
        ) = (command, response)
        {
            out.push((name.clone(), *token));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn batched_entries_keep_tokens_strictly_increasing(
        entries in prop::collection::vec(
            (prop::collection::vec(command(), 1..8), 0u64..40),
            1..60,
        )
    ) {
        let mut table = LockTable::new();
        let (mut slots, mut next_id, mut seq) = (BTreeMap::new(), 100u128, 0u64);
        for slot in 1..=SESSIONS {
            let open = to_command((slot, 0, 0, true), 0, &mut slots, &mut next_id);
            table.apply(slot as u64, &Proposal::single(0, open));
        }
        let mut last_token: BTreeMap<String, u64> = BTreeMap::new();
        let mut index = SESSIONS as u64;
        let mut time_ms = 0;
        for (batch, dt) in &entries {
            index += 1;
            time_ms += dt;
            let commands = batch
                .iter()
                .map(|c| {
                    seq += 1;
                    to_command(*c, seq, &mut slots, &mut next_id)
                })
                .collect();
            let proposal = Proposal { time_ms, commands };
            let applied = table.apply(index, &proposal);
            prop_assert_eq!(applied.responses.len(), proposal.commands.len());
            prop_assert_eq!(table.check_consistent_at(index), Ok(()));

            let mut seen = BTreeSet::new();
            for (name, token) in grants(&proposal, &applied.responses, &applied.events) {
                prop_assert!(seen.insert(name.clone()), "{} granted twice in entry {}", name, index);
                prop_assert_eq!(token, index);
                let last = last_token.insert(name.clone(), token).unwrap_or(0);
                prop_assert!(token > last, "token for {} went from {} to {}", name, last, token);
            }
            for view in table.locks("", usize::MAX) {
                if let Some(h) = &view.holder {
                    let s = table.session(h.session);
                    prop_assert!(s.is_some_and(|s| s.held.contains(&view.name)));
                    prop_assert!(view.waiters.iter().all(|w| w.session != h.session));
                } else if !view.waiters.is_empty() {
                    // Held back (lock-delay, or granted earlier in this
                    // entry): a Tick is due no later than it can be granted.
                    prop_assert!(view.available_at_ms >= table.now_ms());
                    prop_assert!(table.next_delay_end_ms().is_some_and(|at| at <= view.available_at_ms));
                }
            }
        }
        // One later entry settles everything: no free lock keeps waiters.
        table.apply(index + 1, &Proposal::single(time_ms + 1_000, Command::Tick));
        for view in table.locks("", usize::MAX) {
            prop_assert!(view.holder.is_some() || view.waiters.is_empty(), "{} stuck", view.name);
        }
    }
}

/// Release hands the lock to B; B's session closes in the same entry. C
/// must not get the same token: it is granted by the next entry instead.
#[test]
fn a_lock_freed_twice_in_one_entry_is_granted_by_the_next() {
    let mut t = LockTable::new();
    let (a, b, c) = (SessionId(1), SessionId(2), SessionId(3));
    for (i, s) in [a, b, c].into_iter().enumerate() {
        let open = Command::OpenSession {
            session: s,
            label: format!("{s}"),
            ttl_ms: 1000,
            lock_delay_ms: 0,
        };
        t.apply(i as u64 + 1, &Proposal::single(0, open));
    }
    let acquire = |session, seq| Command::Acquire {
        session,
        seq,
        name: "n".into(),
        wait: true,
    };
    t.apply(4, &Proposal::single(0, acquire(a, 1)));
    t.apply(5, &Proposal::single(0, acquire(b, 1)));
    t.apply(6, &Proposal::single(0, acquire(c, 1)));
    let release = Command::Release {
        session: a,
        seq: 2,
        name: "n".into(),
    };
    let close = Command::CloseSession { session: b, seq: 2 };
    let got = t.apply(
        7,
        &Proposal {
            time_ms: 5,
            commands: vec![release, close],
        },
    );
    assert_eq!(got.responses[0], Ok(Outcome::Released));
    assert!(got.events.contains(&Event::Granted {
        session: b,
        name: "n".into(),
        token: 7
    }));
    assert_eq!(t.holder("n"), None);
    assert_eq!(t.next_delay_end_ms(), Some(5));
    let got = t.apply(8, &Proposal::single(5, Command::Tick));
    assert_eq!(
        got.events,
        vec![Event::Granted {
            session: c,
            name: "n".into(),
            token: 8
        }]
    );
}
