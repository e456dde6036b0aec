//! Reading lock tables laid out by raftlock before lock modes existed
//! (snapshot format 2), so a node can take over an older snapshot.
//!
//! Format 2 kept one optional holder and a queue of session ids per name;
//! every one of those holds and waits was exclusive. Sessions, their retry
//! memory and the lock-delay schedule are laid out as before (answers and
//! refusals gained variants only at the end of their enums).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;

use crate::queue::{Holder, Lock, Waiter};
use crate::sessions::Session;
use crate::{LockMode, LockTable, SessionId};

/// A lock table as format 2 serialized it. Decode the snapshot body into
/// this (with the same bincode settings) and convert with
/// [`LockTable::from`]; then check it with [`LockTable::check_consistent`]
/// as any table from outside.
#[derive(Debug, Deserialize)]
pub struct LockTableV2 {
    now_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<String, LockV2>,
    delayed: BTreeSet<(u64, String)>,
}

#[derive(Debug, Deserialize)]
struct LockV2 {
    holder: Option<HolderV2>,
    waiters: VecDeque<SessionId>,
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
                let holders = lock
                    .holder
                    .map(|h| Holder {
                        session: h.session,
                        mode: LockMode::Exclusive,
                        token: h.token,
                        since_ms: h.since_ms,
                    })
                    .into_iter()
                    .collect();
                let waiters = lock
                    .waiters
                    .into_iter()
                    .map(|session| Waiter {
                        session,
                        mode: LockMode::Exclusive,
                    })
                    .collect();
                let lock = Lock {
                    holders,
                    waiters,
                    available_at_ms: lock.available_at_ms,
                };
                (name, lock)
            })
            .collect();
        LockTable {
            now_ms: old.now_ms,
            sessions: old.sessions,
            locks,
            delayed: old.delayed,
        }
    }
}
