//! Read-only views of the table for queries, and the consistency check
//! for tables that come from outside.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::events::LockEvent;
use crate::queue::Lock;
use crate::table::LockTable;
use crate::types::validate_name;
use crate::{LockKind, LockMode, SessionId};

/// A read-only view of one name, for queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    pub name: String,
    /// The first of `holders`: the only one when the lock is exclusive.
    /// What clients that know nothing of modes are shown.
    pub holder: Option<HolderView>,
    /// Every holder, in grant order.
    pub holders: Vec<HolderView>,
    /// What the name is while anyone holds or waits (`None` when nobody
    /// does and it only waits out a lock-delay).
    pub kind: Option<LockKind>,
    pub waiters: Vec<WaiterView>,
    pub available_at_ms: u64,
}

impl LockView {
    /// The semaphore limit, if the name is in use as a semaphore.
    pub fn limit(&self) -> Option<u32> {
        match self.kind {
            Some(LockKind::Semaphore { limit }) => Some(limit),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderView {
    pub session: SessionId,
    pub label: String,
    pub mode: LockMode,
    pub token: u64,
    pub since_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterView {
    pub session: SessionId,
    pub label: String,
    pub mode: LockMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub sessions: usize,
    /// Names held by anyone.
    pub held: usize,
    /// Holds over all names (a shared lock or a semaphore counts each holder).
    pub holds: usize,
    pub waiters: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub session: SessionId,
    pub label: String,
    pub ttl_ms: u64,
    pub lock_delay_ms: u64,
    pub held: Vec<String>,
}

impl LockTable {
    /// Checks a table that came from outside (a snapshot read from disk or
    /// sent by a peer) for what [`LockTable::apply`] and the layers above
    /// rely on, so that a corrupt or hostile one is refused with an error
    /// instead of panicking later: every holder and waiter is a live
    /// session that lists the lock, holds at most once per name, and the
    /// holders respect their modes (one exclusive holder alone, a
    /// semaphore within its limit, one kind per name); every session's
    /// settings are in range, and no retry memory is longer than its window.
    pub fn check_consistent(&self) -> Result<(), String> {
        for (id, s) in &self.sessions {
            s.check(*id)?;
            for name in &s.held {
                let holds = self.locks.get(name).and_then(|l| l.holding(*id));
                if holds.is_none() {
                    return Err(format!(
                        "session {id} lists {name:?} as held, the lock disagrees"
                    ));
                }
            }
            for name in &s.waiting {
                let queued = self.locks.get(name).and_then(|l| l.waiting(*id));
                if queued.is_none() {
                    return Err(format!(
                        "session {id} waits for {name:?}, its queue disagrees"
                    ));
                }
            }
        }
        for (name, lock) in &self.locks {
            validate_name(name).map_err(|e| e.to_string())?;
            lock.check(name)?;
            let live = |id: &SessionId| self.sessions.get(id);
            let mut seen = BTreeSet::new();
            for h in &lock.holders {
                let listed = live(&h.session).is_some_and(|s| s.held.contains(name));
                if !listed || !seen.insert(h.session) {
                    return Err(format!(
                        "lock {name:?} is held by a session that does not list it, or twice"
                    ));
                }
            }
            for w in &lock.waiters {
                let listed = live(&w.session).is_some_and(|s| s.waiting.contains(name));
                if !listed || !seen.insert(w.session) {
                    return Err(format!(
                        "lock {name:?} has an impossible waiter {}",
                        w.session
                    ));
                }
            }
        }
        Ok(())
    }

    /// [`LockTable::check_consistent`], and also what only the index of the
    /// last entry applied to the table can tell: no fencing token above it.
    pub fn check_consistent_at(&self, last_applied: u64) -> Result<(), String> {
        let _ = last_applied; // Stub: tokens are not checked yet.
        self.check_consistent()
    }

    /// The quotas this table enforces.
    pub fn limits(&self) -> crate::Limits {
        crate::Limits::default() // Stub: not yet kept in the table.
    }

    /// How much of each quota is in use.
    pub fn quota_usage(&self) -> crate::QuotaUsage {
        crate::QuotaUsage::default() // Stub.
    }

    /// Applied time: the greatest proposal time seen so far.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn session(&self, session: SessionId) -> Option<SessionView> {
        self.sessions.get(&session).map(|s| SessionView {
            session,
            label: s.label.clone(),
            ttl_ms: s.ttl_ms,
            lock_delay_ms: s.lock_delay_ms,
            held: s.held.iter().cloned().collect(),
        })
    }

    /// Every live session with its TTL, for the leader's expiry clock.
    pub fn session_ttls(&self) -> impl Iterator<Item = (SessionId, u64)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s.ttl_ms))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// When the leader should next propose a [`crate::Command::Tick`], if ever.
    pub fn next_delay_end_ms(&self) -> Option<u64> {
        self.delayed.first().map(|(at, _)| *at)
    }

    pub fn lock(&self, name: &str) -> Option<LockView> {
        self.locks.get(name).map(|l| self.view(name, l))
    }

    /// Locks whose name starts with `prefix`, in name order, at most `limit`.
    pub fn locks(&self, prefix: &str, limit: usize) -> Vec<LockView> {
        self.under(prefix)
            .take(limit)
            .map(|(name, l)| self.view(name, l))
            .collect()
    }

    /// Locks whose name starts with `prefix` and sorts after `after`, in
    /// name order, at most `limit`: the page of a listing that follows the
    /// name `after`.
    pub fn locks_after(&self, prefix: &str, after: &str, limit: usize) -> Vec<LockView> {
        use std::ops::Bound;
        let start = if after < prefix {
            Bound::Included(prefix)
        } else {
            Bound::Excluded(after)
        };
        self.locks
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(limit)
            .map(|(name, l)| self.view(name, l))
            .collect()
    }

    /// The present holders and queues of the names under `prefix`, as the
    /// events that rebuild them from nothing: for each name in order, a
    /// grant per holder (in grant order, with its token), then a queued
    /// event per waiter (in queue order). A watcher starts from these and
    /// follows the events of the entries after this table's last one.
    pub fn state_events(&self, prefix: &str) -> Vec<LockEvent> {
        let mut events = Vec::new();
        for (name, lock) in self.under(prefix) {
            events.extend(lock.holders.iter().map(|h| LockEvent::Granted {
                name: name.clone(),
                session: h.session,
                mode: h.mode,
                token: h.token,
            }));
            events.extend(lock.waiters.iter().map(|w| LockEvent::Queued {
                name: name.clone(),
                session: w.session,
                mode: w.mode,
            }));
        }
        events
    }

    /// Counts for monitoring.
    pub fn stats(&self) -> TableStats {
        TableStats {
            sessions: self.sessions.len(),
            held: self
                .locks
                .values()
                .filter(|l| !l.holders.is_empty())
                .count(),
            holds: self.locks.values().map(|l| l.holders.len()).sum(),
            waiters: self.locks.values().map(|l| l.waiters.len()).sum(),
        }
    }

    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }

    /// The first holder's session and token, if the lock is held: the only
    /// holder of an exclusive lock. See [`LockTable::held_by`] for the
    /// others of a shared lock or a semaphore.
    pub fn holder(&self, name: &str) -> Option<(SessionId, u64)> {
        self.locks
            .get(name)
            .and_then(|l| l.holders.first())
            .map(|h| (h.session, h.token))
    }

    /// How `session` holds `name` and with what token, if it does.
    pub fn held_by(&self, name: &str, session: SessionId) -> Option<(LockMode, u64)> {
        self.locks
            .get(name)
            .and_then(|l| l.holding(session))
            .map(|h| (h.mode, h.token))
    }

    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Lock)> + 'a {
        self.locks
            .range(prefix.to_owned()..)
            .take_while(move |(name, _)| name.starts_with(prefix))
    }

    fn view(&self, name: &str, lock: &Lock) -> LockView {
        let holders: Vec<HolderView> = lock
            .holders
            .iter()
            .map(|h| HolderView {
                session: h.session,
                label: self.label_of(h.session),
                mode: h.mode,
                token: h.token,
                since_ms: h.since_ms,
            })
            .collect();
        LockView {
            name: name.to_owned(),
            holder: holders.first().cloned(),
            holders,
            kind: lock.kind(),
            waiters: lock
                .waiters
                .iter()
                .map(|w| WaiterView {
                    session: w.session,
                    label: self.label_of(w.session),
                    mode: w.mode,
                })
                .collect(),
            available_at_ms: lock.available_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::queue::{Holder, Waiter};
    use crate::{Command, LockMode, LockTable, Proposal, SessionId};

    fn table_with_holder() -> LockTable {
        let mut t = LockTable::new();
        let s = SessionId(1);
        let open = Command::OpenSession {
            session: s,
            label: "a".into(),
            ttl_ms: 5_000,
            lock_delay_ms: 0,
        };
        t.apply(1, &Proposal::single(0, open));
        let acquire = Command::AcquireWith {
            session: s,
            seq: 1,
            name: "n".into(),
            wait: true,
            mode: LockMode::Shared,
        };
        t.apply(2, &Proposal::single(0, acquire));
        t
    }

    #[test]
    fn a_corrupt_table_is_refused() {
        let good = table_with_holder();
        assert_eq!(good.check_consistent(), Ok(()));

        let corrupt = |change: &dyn Fn(&mut LockTable)| {
            let mut t = good.clone();
            change(&mut t);
            t.check_consistent()
        };
        let lock = |t: &mut LockTable| t.locks.get_mut("n").unwrap().clone();
        assert!(corrupt(&|t| {
            let mut l = lock(t);
            l.waiters.push_back(Waiter {
                session: SessionId(9),
                mode: LockMode::Shared,
            });
            t.locks.insert("n".into(), l);
        })
        .is_err());
        assert!(corrupt(&|t| t.sessions.clear()).is_err());
        assert!(corrupt(&|t| {
            t.sessions.get_mut(&SessionId(1)).unwrap().ttl_ms = u64::MAX;
        })
        .is_err());
        // The same session holding twice.
        assert!(corrupt(&|t| {
            let mut l = lock(t);
            l.holders.push(l.holders[0].clone());
            t.locks.insert("n".into(), l);
        })
        .is_err());
        // An exclusive holder beside a shared one (its session lists it).
        assert!(corrupt(&|t| {
            let mut l = lock(t);
            let writer = SessionId(2);
            let mut s = t.sessions[&SessionId(1)].clone();
            s.held.insert("n".into());
            t.sessions.insert(writer, s);
            l.holders.push(Holder {
                session: writer,
                mode: LockMode::Exclusive,
                token: 3,
                since_ms: 0,
            });
            t.locks.insert("n".into(), l);
        })
        .is_err());
        // A holder whose session does not list the name.
        assert!(corrupt(&|t| {
            t.sessions.get_mut(&SessionId(1)).unwrap().held.clear();
        })
        .is_err());
    }
}
