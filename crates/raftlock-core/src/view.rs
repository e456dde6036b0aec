//! Read-only views of the table for queries.

use serde::{Deserialize, Serialize};

use crate::events::LockEvent;
use crate::queue::Lock;
use crate::table::LockTable;
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
    /// Retry answers remembered over all sessions (each session may keep
    /// up to [`crate::DEDUP_WINDOW`]).
    pub retained_answers: usize,
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

    /// Counts for monitoring: O(1), from counters apply keeps.
    pub fn stats(&self) -> TableStats {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        TableStats {
            sessions: self.sessions.len(),
            held: size(self.usage.held_names),
            holds: size(self.usage.holds),
            waiters: size(self.usage.waiters),
            retained_answers: size(self.usage.answers),
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
