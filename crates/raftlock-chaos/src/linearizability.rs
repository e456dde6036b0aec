//! Is one lock's history linearizable against a readers-writer lock (a
//! mutex when every acquire is exclusive)? A Wing & Gong style search (with
//! Lowe's memoization) over the order in which concurrent operations could
//! have taken effect.
//!
//! Operations whose outcome is unknown may take effect at any time after
//! they were invoked, or never.

use std::collections::{BTreeSet, HashSet};

use crate::history::At;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutexOp {
    pub client: u64,
    pub acquire: bool,
    /// A shared (reader's) acquire; readers may hold the lock together.
    pub shared: bool,
    pub invoked: At,
    /// `None`: no answer came back; it may or may not have taken effect.
    pub returned: Option<At>,
}

/// The first stretch of history that no mutex could have produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub from: At,
    pub to: At,
    pub holders: Holders,
    /// The operations that could have gone next, none of which fits.
    pub stuck: Vec<MutexOp>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not linearizable between {:?} and {:?}: holders then {:?}; none of these fits:",
            self.from, self.to, self.holders
        )?;
        for op in &self.stuck {
            let what = match (op.acquire, op.shared) {
                (true, false) => "acquire",
                (true, true) => "acquire shared",
                (false, _) => "release",
            };
            write!(
                f,
                " [client {} {what} {:?}..{:?}]",
                op.client, op.invoked, op.returned
            )?;
        }
        Ok(())
    }
}

/// Who holds the lock at a point of the search.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Holders {
    #[default]
    Free,
    Writer(u64),
    /// Never empty: the last reader out frees the lock.
    Readers(BTreeSet<u64>),
}

/// The lock after `op`, or `None` if the lock could not have done it.
fn step(holders: &Holders, op: &MutexOp) -> Option<Holders> {
    match (holders, op.acquire, op.shared) {
        (Holders::Free, true, false) => Some(Holders::Writer(op.client)),
        (Holders::Free, true, true) => Some(Holders::Readers(BTreeSet::from([op.client]))),
        (Holders::Readers(r), true, true) if !r.contains(&op.client) => {
            let mut r = r.clone();
            r.insert(op.client);
            Some(Holders::Readers(r))
        }
        (Holders::Writer(w), false, _) if *w == op.client => Some(Holders::Free),
        (Holders::Readers(r), false, _) if r.contains(&op.client) => {
            let mut r = r.clone();
            r.remove(&op.client);
            Some(if r.is_empty() {
                Holders::Free
            } else {
                Holders::Readers(r)
            })
        }
        _ => None,
    }
}

/// Zobrist keys: the set of linearized operations hashes to the xor of
/// their keys, so the search can remember visited (set, state) pairs.
fn key(i: usize) -> u128 {
    let mut x = (i as u128).wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834);
    x ^= x >> 67;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9_94d0_49bb_1331_11eb);
    x ^= x >> 59;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb_bf58_476d_1ce4_e5b9);
    x ^ (x >> 61)
}

/// The operations not linearized yet: those with an answer, by return
/// and by invocation; and those without one (they never force anything).
#[derive(Default)]
struct Pending {
    by_return: BTreeSet<(At, usize)>,
    by_invoke: BTreeSet<(At, usize)>,
    open_ended: BTreeSet<(At, usize)>,
}

impl Pending {
    fn take(&mut self, ops: &[MutexOp], i: usize) {
        let op = &ops[i];
        match op.returned {
            Some(r) => {
                self.by_return.remove(&(r, i));
                self.by_invoke.remove(&(op.invoked, i));
            }
            None => {
                self.open_ended.remove(&(op.invoked, i));
            }
        }
    }

    fn restore(&mut self, ops: &[MutexOp], i: usize) {
        let op = &ops[i];
        match op.returned {
            Some(r) => {
                self.by_return.insert((r, i));
                self.by_invoke.insert((op.invoked, i));
            }
            None => {
                self.open_ended.insert((op.invoked, i));
            }
        }
    }

    /// The operations that may go next: invoked before the earliest
    /// pending return. `None` when every answered operation is placed.
    fn candidates(&self) -> Option<Vec<usize>> {
        let (min_return, _) = *self.by_return.first()?;
        let invoked_in_time = |set: &BTreeSet<(At, usize)>| {
            set.iter()
                .take_while(|(inv, _)| *inv <= min_return)
                .map(|(_, i)| *i)
                .collect::<Vec<_>>()
        };
        let mut c = invoked_in_time(&self.by_invoke);
        c.extend(invoked_in_time(&self.open_ended));
        Some(c)
    }
}

struct Frame {
    candidates: Vec<usize>,
    next: usize,
    chosen: Option<usize>,
    state_before: Holders,
}

impl Frame {
    /// A new search level that will try `candidates` from `state`.
    fn new(candidates: Vec<usize>, state: Holders) -> Self {
        Frame {
            candidates,
            next: 0,
            chosen: None,
            state_before: state,
        }
    }
}

/// Checks `ops` (any order) against a readers-writer lock that starts free.
pub fn check_rw_lock(mut ops: Vec<MutexOp>) -> Result<(), Violation> {
    ops.sort_by_key(|op| op.invoked);
    let mut pending = Pending::default();
    for i in 0..ops.len() {
        pending.restore(&ops, i);
    }
    let mut state = Holders::Free;
    let mut hash: u128 = 0;
    let mut visited: HashSet<(u128, Holders)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut worst: Option<(usize, Violation)> = None;

    match pending.candidates() {
        None => return Ok(()),
        Some(c) => stack.push(Frame::new(c, state.clone())),
    }
    while let Some(frame) = stack.last_mut() {
        if let Some(i) = frame.chosen.take() {
            // Undo the last choice before trying the next one.
            state = frame.state_before.clone();
            hash ^= key(i);
            pending.restore(&ops, i);
        }
        let mut advanced = false;
        while frame.next < frame.candidates.len() {
            let i = frame.candidates[frame.next];
            frame.next += 1;
            let Some(new_state) = step(&state, &ops[i]) else {
                continue;
            };
            if !visited.insert((hash ^ key(i), new_state.clone())) {
                continue;
            }
            frame.state_before = std::mem::replace(&mut state, new_state);
            frame.chosen = Some(i);
            hash ^= key(i);
            pending.take(&ops, i);
            advanced = true;
            break;
        }
        if !advanced {
            // Dead end: remember the deepest one for the report.
            let depth = stack.len();
            if worst.as_ref().is_none_or(|(d, _)| depth > *d) {
                let frame = stack.last().unwrap();
                let stuck: Vec<MutexOp> =
                    frame.candidates.iter().map(|i| ops[*i].clone()).collect();
                let from = stuck.iter().map(|o| o.invoked).min().unwrap_or_default();
                let to = pending.by_return.first().map(|(r, _)| *r).unwrap_or(from);
                worst = Some((
                    depth,
                    Violation {
                        from,
                        to,
                        holders: state.clone(),
                        stuck,
                    },
                ));
            }
            stack.pop();
            continue;
        }
        match pending.candidates() {
            None => return Ok(()),
            Some(c) => stack.push(Frame::new(c, state.clone())),
        }
    }
    Err(worst
        .map(|(_, v)| v)
        .expect("a failed search has a dead end"))
}
