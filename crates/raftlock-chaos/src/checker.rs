//! Checks a recorded run: fenced safety, no lost updates, the readers'
//! rules (crate::readers), writers' acquire/release history linearizable
//! against a mutex (a bounded search), tokens that only grow, and how long
//! the cluster was unavailable after each fault.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::history::{Access, FaultEvent, LockEvent, LockOp, Outcome, RegisterEvent};
use crate::linearizability::{check_mutex_within, MutexOp, Verdict, SEARCH_BUDGET};
use crate::readers;

/// The highest token accepted on one register, and by whom.
#[derive(Clone, Copy, Default)]
struct Bar {
    token: u64,
    client: u64,
}

impl Bar {
    fn raise(&mut self, e: &RegisterEvent) {
        if e.token >= self.token {
            *self = Bar {
                token: e.token,
                client: e.client,
            };
        }
    }
}

/// Fenced safety: every accepted writer's operation carries a token at
/// least as high as every token accepted before it on that register, and
/// every accepted reader's read one at least as high as every writer's.
pub fn check_fencing(events: &[RegisterEvent]) -> Vec<String> {
    // Per register: the bar for writers (any token) and for readers.
    let mut highest: HashMap<&str, (Bar, Bar)> = HashMap::new();
    let mut violations = Vec::new();
    for e in events.iter().filter(|e| e.accepted) {
        let (any, writers) = highest.entry(&e.lock).or_default();
        let writer = e.access == Access::Exclusive;
        let bar = if writer { *any } else { *writers };
        if e.token < bar.token {
            violations.push(format!(
                "stale token accepted on {:?} at {:?}: client {} used token {} after client {} used {}",
                e.lock, e.at, e.client, e.token, bar.client, bar.token
            ));
            continue;
        }
        any.raise(e);
        if writer {
            writers.raise(e);
        }
    }
    violations
}

/// Tokens only grow: a grant requested after another grant of the same
/// lock was acknowledged carries a higher token, in every mode. Readers
/// granted by one entry share its index, but they were all asked for
/// before that entry, so none was acknowledged before another was asked
/// for: a reader never equals a token acknowledged before it was asked
/// for, nor does a writer (alone in its entry). A cluster that forgot an
/// acknowledged grant (a lost log, a node that came back empty and was
/// elected) hands out tokens again from lower numbers; a resource fenced
/// by tokens would then refuse honest writers, which is how this shows up
/// even when the overlap itself goes unseen.
pub fn check_tokens_grow(events: &[LockEvent]) -> Vec<String> {
    let mut grants: BTreeMap<&str, Vec<(&LockEvent, u64)>> = BTreeMap::new();
    for e in events {
        if let (LockOp::Acquire, Outcome::Ok(Some(token)), Some(_)) =
            (&e.op, &e.outcome, e.completed)
        {
            grants.entry(&e.lock).or_default().push((e, *token));
        }
    }
    let mut violations = Vec::new();
    for (lock, mut grants) in grants {
        let mut by_invocation = grants.clone();
        by_invocation.sort_by_key(|(e, _)| e.invoked);
        grants.sort_by_key(|(e, _)| e.completed);
        let mut acknowledged = grants.iter().peekable();
        let mut highest: Option<(u64, &LockEvent)> = None;
        for (e, token) in by_invocation {
            while let Some((done, t)) = acknowledged.next_if(|(d, _)| d.completed < Some(e.invoked))
            {
                if highest.is_none_or(|(h, _)| *t > h) {
                    highest = Some((*t, done));
                }
            }
            if let Some((h, by)) = highest {
                if token < h || (token == h && by.client != e.client) {
                    violations.push(format!(
                        "token went back on {lock:?}: client {} was granted token {token} at {:?}, \
                         after client {} had been granted token {h} (acknowledged at {:?})",
                        e.client, e.completed, by.client, by.completed
                    ));
                }
            }
        }
    }
    violations
}

/// No lost update: each accepted write is one more than the previous
/// accepted write on its register, and the final value counts them all.
pub fn check_updates(events: &[RegisterEvent], finals: &HashMap<String, u64>) -> Vec<String> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut violations = Vec::new();
    for e in events.iter().filter(|e| e.accepted) {
        let Some(value) = e.write else { continue };
        let prev = last.entry(&e.lock).or_insert(0);
        if value != *prev + 1 {
            violations.push(format!(
                "lost update on {:?} at {:?}: client {} wrote {} after {} (token {})",
                e.lock, e.at, e.client, value, prev, e.token
            ));
        }
        *prev = value;
    }
    for (lock, value) in finals {
        let writes = events
            .iter()
            .filter(|e| e.accepted && e.write.is_some() && e.lock == *lock)
            .count() as u64;
        if *value != writes {
            violations.push(format!(
                "register {lock:?} ends at {value} but {writes} writes were acknowledged"
            ));
        }
    }
    violations
}

/// The writers' (exclusive) operations on one lock, as mutex operations.
/// Readers are left to the direct rules of crate::readers: a search over
/// which readers hold together is exponential in the unknown outcomes.
pub fn mutex_ops(events: &[LockEvent], lock: &str) -> Vec<MutexOp> {
    events
        .iter()
        .filter(|e| e.lock == lock && !e.shared)
        .filter_map(|e| {
            let returned = match e.outcome {
                Outcome::Ok(_) => e.completed,
                Outcome::Unknown => None,
                Outcome::Failed => return None,
            };
            Some(MutexOp {
                client: e.client,
                acquire: e.op == LockOp::Acquire,
                invoked: e.invoked,
                returned,
            })
        })
        .collect()
}

/// Each lock's writers are linearizable against a mutex.
pub fn check_mutual_exclusion(events: &[LockEvent]) -> Findings {
    check_mutual_exclusion_within(events, SEARCH_BUDGET)
}

/// The same, with each lock's search bounded by `budget` states.
pub fn check_mutual_exclusion_within(events: &[LockEvent], budget: usize) -> Findings {
    let mut locks: Vec<&str> = events.iter().map(|e| e.lock.as_str()).collect();
    locks.sort_unstable();
    locks.dedup();
    let mut findings = Findings::default();
    for lock in locks {
        let search = check_mutex_within(mutex_ops(events, lock), budget);
        findings.search_states += search.states;
        match search.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(v) => findings.violations.push(format!("lock {lock:?}: {v}")),
            Verdict::Inconclusive => findings.inconclusive.push(format!(
                "lock {lock:?}: inconclusive: budget exhausted ({} states) in the writers' mutex \
                 search; the direct overlap and register checks still ran",
                search.states
            )),
        }
    }
    findings
}

/// Everything the checker found in a history.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub violations: Vec<String>,
    /// Searches that ran out of budget: printed, not violations.
    pub inconclusive: Vec<String>,
    /// States the writers' mutex searches visited, all locks together.
    pub search_states: usize,
}

/// Runs every safety check on a history.
pub fn check_all(
    locks: &[LockEvent],
    register: &[RegisterEvent],
    finals: &HashMap<String, u64>,
) -> Findings {
    check_all_within(locks, register, finals, SEARCH_BUDGET)
}

/// Runs every safety check, each lock's mutex search bounded by `budget`.
pub fn check_all_within(
    locks: &[LockEvent],
    register: &[RegisterEvent],
    finals: &HashMap<String, u64>,
    budget: usize,
) -> Findings {
    let mut violations = check_fencing(register);
    violations.extend(check_updates(register, finals));
    violations.extend(readers::check_reads(register));
    violations.extend(readers::check_writer_tokens(locks, register));
    violations.extend(readers::check_certain_overlaps(locks));
    let mut findings = check_mutual_exclusion_within(locks, budget);
    violations.append(&mut findings.violations);
    violations.extend(check_tokens_grow(locks));
    Findings {
        violations,
        ..findings
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: u64,
    pub max_ms: u64,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let ms = |d: Duration| d.as_millis() as u64;
    Percentiles {
        count: samples.len(),
        p50_ms: samples.get(samples.len() / 2).map_or(0, |d| ms(*d)),
        max_ms: samples.last().map_or(0, |d| ms(*d)),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Availability {
    /// The longest stretch without any lock granted, from the fault until
    /// the cluster was healthy again.
    pub longest_gap: Percentiles,
    /// From healing to a fully healthy cluster.
    pub heal_to_healthy: Percentiles,
}

/// Per fault kind: the longest time without a grant while the fault and
/// its recovery lasted, and the time from healing to full health.
pub fn availability(faults: &[FaultEvent], events: &[LockEvent]) -> BTreeMap<String, Availability> {
    let mut grants: Vec<Duration> = events
        .iter()
        .filter(|e| e.op == LockOp::Acquire && matches!(e.outcome, Outcome::Ok(_)))
        .filter_map(|e| e.completed)
        .collect();
    grants.sort();
    let mut by_kind: BTreeMap<String, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for f in faults {
        let entry = by_kind.entry(f.kind.clone()).or_default();
        let end = f.healthy.or(f.healed).unwrap_or(f.injected);
        let from = grants.partition_point(|g| *g <= f.injected);
        let to = grants.partition_point(|g| *g <= end);
        let mut last = f.injected;
        let mut longest = Duration::ZERO;
        for g in &grants[from..to] {
            longest = longest.max(*g - last);
            last = *g;
        }
        // The gap that spans the end of recovery counts too: until the
        // next grant, or until the end if none came.
        longest = longest.max(grants.get(to).map_or(end - last, |g| *g - last));
        entry.0.push(longest);
        if let (Some(healed), Some(healthy)) = (f.healed, f.healthy) {
            entry.1.push(healthy.saturating_sub(healed));
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, (gaps, to_health))| {
            (
                kind,
                Availability {
                    longest_gap: percentiles(gaps),
                    heal_to_healthy: percentiles(to_health),
                },
            )
        })
        .collect()
}
