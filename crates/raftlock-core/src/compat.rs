//! Reading lock tables laid out by older raftlock versions, so a node can
//! take over an older snapshot: format 2 (before lock modes), format 3
//! (before sessions had owners) and format 4 (before quotas: such a table
//! takes [`Limits::default`]).
//!
//! Format 2 kept one optional holder and a queue of session ids per name;
//! every one of those holds and waits was exclusive. Formats 2 and 3 lay
//! out sessions without an owner: such a session accepts any caller until
//! it ends. Retry memory and the lock-delay schedule are laid out as now
//! (answers and refusals gained variants only at the end of their enums).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;

use crate::queue::{Holder, Lock, Waiter};
use crate::session_list::{OfSession, SessionList};
use crate::sessions::{Remembered, Session};
use crate::stored::StoredTable;
use crate::{Limits, LockMode, LockTable, SessionId};

/// A lock table as format 4 serialized it: as now, without the limits.
/// Decode, convert with [`LockTable::from`] and check with
/// [`LockTable::check_consistent_at`], as [`LockTableV2`].
#[derive(Debug, Deserialize)]
pub struct LockTableV4 {
    now_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<String, Lock>,
    delayed: BTreeSet<(u64, String)>,
}

impl From<LockTableV4> for LockTable {
    fn from(old: LockTableV4) -> Self {
        LockTable::from(StoredTable {
            now_ms: old.now_ms,
            sessions: old.sessions,
            locks: old.locks,
            delayed: old.delayed,
            limits: Limits::default(),
        })
    }
}

/// A lock table as format 3 serialized it: as now, but sessions have no
/// owner. Decode, convert with [`LockTable::from`] and check with
/// [`LockTable::check_consistent`], as [`LockTableV2`].
#[derive(Debug, Deserialize)]
pub struct LockTableV3 {
    now_ms: u64,
    sessions: BTreeMap<SessionId, SessionV3>,
    locks: BTreeMap<String, Lock>,
    delayed: BTreeSet<(u64, String)>,
}

/// A session before owners: every field of [`Session`] but the last.
#[derive(Debug, Deserialize)]
struct SessionV3 {
    label: String,
    ttl_ms: u64,
    lock_delay_ms: u64,
    held: BTreeSet<String>,
    waiting: BTreeSet<String>,
    recent: VecDeque<Remembered>,
    evicted_through: u64,
}

impl From<SessionV3> for Session {
    fn from(old: SessionV3) -> Self {
        Session {
            label: old.label,
            ttl_ms: old.ttl_ms,
            lock_delay_ms: old.lock_delay_ms,
            held: old.held,
            waiting: old.waiting,
            recent: old.recent,
            evicted_through: old.evicted_through,
            owner: None,
        }
    }
}

fn sessions_of(old: BTreeMap<SessionId, SessionV3>) -> BTreeMap<SessionId, Session> {
    old.into_iter().map(|(id, s)| (id, s.into())).collect()
}

impl From<LockTableV3> for LockTable {
    fn from(old: LockTableV3) -> Self {
        LockTable::from(StoredTable {
            now_ms: old.now_ms,
            sessions: sessions_of(old.sessions),
            locks: old.locks,
            delayed: old.delayed,
            limits: Limits::default(),
        })
    }
}

/// A lock table as format 2 serialized it. Decode the snapshot body into
/// this (with the same bincode settings) and convert with
/// [`LockTable::from`]; then check it with [`LockTable::check_consistent`]
/// as any table from outside.
#[derive(Debug, Deserialize)]
pub struct LockTableV2 {
    now_ms: u64,
    sessions: BTreeMap<SessionId, SessionV3>,
    locks: BTreeMap<String, LockV2>,
    delayed: BTreeSet<(u64, String)>,
}

#[derive(Debug, Deserialize)]
struct LockV2 {
    holder: Option<HolderV2>,
    /// Decoded as a [`SessionList`], which refuses a session queued twice.
    waiters: SessionList<SessionId>,
    available_at_ms: u64,
}

#[derive(Debug, Deserialize)]
struct HolderV2 {
    session: SessionId,
    token: u64,
    since_ms: u64,
}

impl From<LockTableV2> for LockTable {
    fn from(old: LockTableV2) -> Self {
        let locks = old
            .locks
            .into_iter()
            .map(|(name, lock)| {
                let holders = lock.holder.map(|h| Holder {
                    session: h.session,
                    mode: LockMode::Exclusive,
                    token: h.token,
                    since_ms: h.since_ms,
                });
                let waiters = lock.waiters.iter().map(|session| Waiter {
                    session: *session,
                    mode: LockMode::Exclusive,
                });
                // Both hold each session at most once, so neither refuses.
                let holders = SessionList::from_entries(holders.into_iter().collect());
                let waiters = SessionList::from_entries(waiters.collect());
                let lock = Lock {
                    holders: holders.unwrap_or_default(),
                    waiters: waiters.unwrap_or_default(),
                    available_at_ms: lock.available_at_ms,
                };
                (name, lock)
            })
            .collect();
        LockTable::from(StoredTable {
            now_ms: old.now_ms,
            sessions: sessions_of(old.sessions),
            locks,
            delayed: old.delayed,
            limits: Limits::default(),
        })
    }
}

impl OfSession for SessionId {
    fn session(&self) -> SessionId {
        *self
    }
}
