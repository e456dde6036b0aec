//! Is one lock's history linearizable against a mutex? A Wing & Gong style
//! search (with Lowe's memoization) over the order in which concurrent
//! operations could have taken effect.
//!
//! Operations whose outcome is unknown may take effect at any time after
//! they were invoked, or never. Many of them together (power cuts leave
//! whole batches unanswered) can make the search exponential, so it counts
//! the states it visits and gives up at a budget: an inconclusive verdict,
//! which is printed but is not a violation.

use std::collections::{BTreeSet, HashSet};

use crate::history::At;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutexOp {
    pub client: u64,
    pub acquire: bool,
    pub invoked: At,
    /// `None`: no answer came back; it may or may not have taken effect.
    pub returned: Option<At>,
}

/// The first stretch of history that no mutex could have produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub from: At,
    pub to: At,
    pub holder: Option<u64>,
    /// The operations that could have gone next, none of which fits.
    pub stuck: Vec<MutexOp>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not linearizable between {:?} and {:?}: holder then {:?}; none of these fits:",
            self.from, self.to, self.holder
        )?;
        for op in &self.stuck {
            let what = if op.acquire { "acquire" } else { "release" };
            write!(
                f,
                " [client {} {what} {:?}..{:?}]",
                op.client, op.invoked, op.returned
            )?;
        }
        Ok(())
    }
}

fn step(holder: Option<u64>, op: &MutexOp) -> Option<Option<u64>> {
    match (holder, op.acquire) {
        (None, true) => Some(Some(op.client)),
        (Some(h), false) if h == op.client => Some(None),
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
    state_before: Option<u64>,
}

impl Frame {
    /// A new search level that will try `candidates` from `state`.
    fn new(candidates: Vec<usize>, state: Option<u64>) -> Self {
        Frame {
            candidates,
            next: 0,
            chosen: None,
            state_before: state,
        }
    }
}

/// States a search may visit before it gives up. At roughly 50 bytes of
/// memo per state this bounds it to about 100 MB and a few seconds.
pub const SEARCH_BUDGET: usize = 2_000_000;

/// What the search concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Violation),
    /// The budget ran out first: neither proven nor refuted.
    Inconclusive,
}

/// A verdict and the states visited to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    pub verdict: Verdict,
    pub states: usize,
}

/// Checks `ops` (any order) against a mutex that starts free, visiting at
/// most `budget` states ([`SEARCH_BUDGET`] in the checker).
pub fn check_mutex_within(mut ops: Vec<MutexOp>, budget: usize) -> Search {
    ops.sort_by_key(|op| op.invoked);
    let mut pending = Pending::default();
    for i in 0..ops.len() {
        pending.restore(&ops, i);
    }
    let mut state: Option<u64> = None;
    let mut hash: u128 = 0;
    let mut visited: HashSet<(u128, Option<u64>)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut worst: Option<(usize, Violation)> = None;

    let done = |verdict, states| Search { verdict, states };
    match pending.candidates() {
        None => return done(Verdict::Linearizable, 0),
        Some(c) => stack.push(Frame::new(c, state)),
    }
    while let Some(frame) = stack.last_mut() {
        if visited.len() >= budget {
            return done(Verdict::Inconclusive, visited.len());
        }
        if let Some(i) = frame.chosen.take() {
            // Undo the last choice before trying the next one.
            state = frame.state_before;
            hash ^= key(i);
            pending.restore(&ops, i);
        }
        let mut advanced = false;
        while frame.next < frame.candidates.len() {
            let i = frame.candidates[frame.next];
            frame.next += 1;
            let Some(new_state) = step(state, &ops[i]) else {
                continue;
            };
            if !visited.insert((hash ^ key(i), new_state)) {
                continue;
            }
            frame.state_before = state;
            frame.chosen = Some(i);
            state = new_state;
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
                        holder: state,
                        stuck,
                    },
                ));
            }
            stack.pop();
            continue;
        }
        match pending.candidates() {
            None => return done(Verdict::Linearizable, visited.len()),
            Some(c) => stack.push(Frame::new(c, state)),
        }
    }
    let verdict = match worst {
        Some((_, v)) => Verdict::NotLinearizable(v),
        // Unreachable: a search that fails has met a dead end.
        None => Verdict::Inconclusive,
    };
    done(verdict, visited.len())
}
