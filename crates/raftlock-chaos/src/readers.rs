//! The readers' checks: direct rules over the fenced register's log and the
//! clients' grants, each a pass or a sort (O(n log n)), with no search. They
//! finish on any history, however many outcomes are unknown.
//!
//! Together they say that no write overlapped a read: the register's log
//! is the order in which reads and writes really happened, and a reader's
//! read is the stretch of that log between its first and last look. See
//! docs/chaos.md for why these rules are enough.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{Access, At, LockEvent, LockOp, Outcome, RegisterEvent};

/// What a register holds at a point of its log: the value, the token of
/// the write that left it (0 before any), and how many writes it took.
#[derive(Clone, Copy, Default)]
struct Cell {
    value: u64,
    written_under: u64,
    writes: usize,
}

/// Readers saw no write, in the register's own order. For each reader's
/// hold whose first and last reads were both accepted: no write was
/// accepted between them and both returned the same value. Every accepted
/// read by a reader returned the last accepted write's value, and that
/// write's token is not above the reader's (a larger token was granted
/// after the reader's grant, so after its hold had ended).
pub fn check_reads(events: &[RegisterEvent]) -> Vec<String> {
    let mut cells: HashMap<&str, Cell> = HashMap::new();
    // Per (client, register): the hold's first read and the cell then.
    let mut open: HashMap<(u64, &str), (&RegisterEvent, Cell)> = HashMap::new();
    let mut violations = Vec::new();
    for e in events {
        let cell = cells.entry(&e.lock).or_default();
        if e.accepted && e.access != Access::Exclusive {
            violations.extend(check_one_read(e, cell));
        }
        match e.access {
            Access::Exclusive => {
                if let (true, Some(v)) = (e.accepted, e.write) {
                    *cell = Cell {
                        value: v,
                        written_under: e.token,
                        writes: cell.writes + 1,
                    };
                }
            }
            Access::ReadStart => {
                open.insert((e.client, &e.lock), (e, *cell));
            }
            Access::ReadEnd => {
                let Some((start, before)) = open.remove(&(e.client, e.lock.as_str())) else {
                    violations.push(format!(
                        "client {} ended a read of {:?} at {:?} it never started",
                        e.client, e.lock, e.at
                    ));
                    continue;
                };
                if !(start.accepted && e.accepted) {
                    continue;
                }
                let during = cell.writes - before.writes;
                if during > 0 || start.seen != e.seen {
                    violations.push(format!(
                        "client {} read {:?} with token {} from {:?} to {:?} and saw {:?} then {:?}; \
                         {during} writes were accepted meanwhile",
                        e.client, e.lock, e.token, start.at, e.at, start.seen, e.seen
                    ));
                }
            }
        }
    }
    violations
}

/// One accepted read by a reader, against the register as it then stood.
fn check_one_read(e: &RegisterEvent, cell: &Cell) -> Option<String> {
    if e.seen != Some(cell.value) {
        return Some(format!(
            "client {} read {:?} at {:?} and saw {:?}, but the last accepted write left {}",
            e.client, e.lock, e.at, e.seen, cell.value
        ));
    }
    (cell.written_under > e.token).then(|| {
        format!(
            "client {} read {:?} at {:?} under token {} and saw a value written under token {}",
            e.client, e.lock, e.at, e.token, cell.written_under
        )
    })
}

/// Writers are alone in their tokens, and their writes come in token
/// order. In the register's order, each accepted write carries a token
/// strictly above the previous accepted write's; and no writer's grant or
/// accepted register operation carries a token that a reader was granted
/// or read under (readers granted by one entry share its index, a writer's
/// entry grants only the writer).
pub fn check_writer_tokens(locks: &[LockEvent], register: &[RegisterEvent]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut last_write: HashMap<&str, (u64, u64)> = HashMap::new();
    for e in register.iter().filter(|e| e.accepted && e.write.is_some()) {
        if let Some((token, client)) = last_write.insert(&e.lock, (e.token, e.client)) {
            if e.token <= token {
                violations.push(format!(
                    "write tokens did not grow on {:?} at {:?}: client {} wrote under token {} \
                     after client {client} wrote under {token}",
                    e.lock, e.at, e.client, e.token
                ));
            }
        }
    }
    let mut readers: HashSet<(&str, u64)> = HashSet::new();
    for e in locks.iter().filter(|e| e.shared) {
        if let (LockOp::Acquire, Outcome::Ok(Some(token))) = (&e.op, &e.outcome) {
            readers.insert((&e.lock, *token));
        }
    }
    for e in register
        .iter()
        .filter(|e| e.accepted && e.access != Access::Exclusive)
    {
        readers.insert((&e.lock, e.token));
    }
    for e in locks.iter().filter(|e| !e.shared) {
        if let (LockOp::Acquire, Outcome::Ok(Some(token))) = (&e.op, &e.outcome) {
            if readers.contains(&(e.lock.as_str(), *token)) {
                violations.push(format!(
                    "client {} was granted {:?} exclusively with token {token}, a reader's token",
                    e.client, e.lock
                ));
            }
        }
    }
    for e in register
        .iter()
        .filter(|e| e.accepted && e.access == Access::Exclusive)
    {
        if readers.contains(&(e.lock.as_str(), e.token)) {
            violations.push(format!(
                "client {} used {:?} as a writer at {:?} with token {}, a reader's token",
                e.client, e.lock, e.at, e.token
            ));
        }
    }
    violations
}

/// A stretch during which a client certainly held a lock: from its grant's
/// acknowledgement to its release's invocation.
#[derive(Clone, Copy, Debug)]
struct Hold {
    client: u64,
    shared: bool,
    from: At,
    to: At,
}

/// The stretches each client certainly held each lock. A hold lost to
/// session expiry, or whose end the history does not show, has none: the
/// lock may have gone right after the grant took effect. An unanswered
/// release still ends the stretch no earlier than its invocation, as in
/// the mutex search.
fn certain_holds(locks: &[LockEvent]) -> BTreeMap<&str, Vec<Hold>> {
    let mut granted: HashMap<(u64, &str), (At, bool)> = HashMap::new();
    let mut holds: BTreeMap<&str, Vec<Hold>> = BTreeMap::new();
    let mut events: Vec<&LockEvent> = locks.iter().collect();
    events.sort_by_key(|e| e.invoked);
    for e in events {
        let key = (e.client, e.lock.as_str());
        match (&e.op, &e.outcome, e.completed) {
            (LockOp::Acquire, Outcome::Ok(_), Some(at)) => {
                granted.insert(key, (at, e.shared));
            }
            (LockOp::Release, Outcome::Ok(_) | Outcome::Unknown, _) => {
                if let Some((from, shared)) = granted.remove(&key) {
                    holds.entry(&e.lock).or_default().push(Hold {
                        client: e.client,
                        shared,
                        from,
                        to: e.invoked,
                    });
                }
            }
            (LockOp::Expired, ..) => {
                granted.remove(&key);
            }
            _ => {}
        }
    }
    holds
}

/// No writer certainly held a lock while anyone else certainly did, as
/// the clients saw it. Readers may overlap each other. This needs no
/// search, so it also covers writers when the mutex search runs out of
/// budget; it misses overlaps that only an ordering argument over several
/// operations reveals, which the search and the register checks catch.
pub fn check_certain_overlaps(locks: &[LockEvent]) -> Vec<String> {
    let mut violations = Vec::new();
    for (lock, mut holds) in certain_holds(locks) {
        holds.sort_by_key(|h| h.from);
        // Sweeping by start: the hold reaching furthest so far, among
        // writers and among readers.
        let mut writer: Option<Hold> = None;
        let mut reader: Option<Hold> = None;
        for h in holds {
            let rivals = if h.shared {
                [writer, None]
            } else {
                [writer, reader]
            };
            if let Some(other) = rivals.into_iter().flatten().find(|o| o.to > h.from) {
                violations.push(format!(
                    "lock {lock:?}: client {} ({}) held it from {:?} to {:?} while client {} ({}) \
                     held it from {:?} to {:?}",
                    h.client,
                    mode(h.shared),
                    h.from,
                    h.to,
                    other.client,
                    mode(other.shared),
                    other.from,
                    other.to
                ));
            }
            let furthest = if h.shared { &mut reader } else { &mut writer };
            if furthest.is_none_or(|f| h.to > f.to) {
                *furthest = Some(h);
            }
        }
    }
    violations
}

fn mode(shared: bool) -> &'static str {
    if shared {
        "shared"
    } else {
        "exclusive"
    }
}
