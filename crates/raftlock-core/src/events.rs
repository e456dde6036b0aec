//! Change events: every change an applied entry made to the names' holders
//! and queues, in the order it made them, for watchers of the table.
//!
//! The stream is complete: replaying it from an empty table with
//! [`LockMirror`] reproduces every name's holders (with modes and tokens)
//! and waiters, in order. [`crate::LockTable::state_events`] renders the
//! present state as the events that would rebuild it, so a watcher can
//! start from a snapshot and follow the stream from there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{LockMode, SessionId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockEvent {
    /// `session` joined the back of the queue for `name`.
    Queued {
        name: String,
        session: SessionId,
        mode: LockMode,
    },
    /// `session` now holds `name`; if it was queued, it was at the front
    /// and has left the queue.
    Granted {
        name: String,
        session: SessionId,
        mode: LockMode,
        token: u64,
    },
    /// The holder gave `name` up: a release, or its session closed.
    Released {
        name: String,
        session: SessionId,
        token: u64,
    },
    /// The holder's session expired, so the hold was lost; nobody is
    /// granted the name before `available_at_ms` (its lock-delay; 0 or a
    /// past time when there is none).
    Expired {
        name: String,
        session: SessionId,
        token: u64,
        available_at_ms: u64,
    },
    /// `session` left the queue for `name` without being granted.
    LeftQueue {
        name: String,
        session: SessionId,
        reason: LeaveReason,
    },
}

/// Why a waiter left a queue ungranted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// It asked to (its client's wait timed out or was abandoned).
    Cancelled,
    SessionClosed,
    SessionExpired,
}

impl LockEvent {
    pub fn name(&self) -> &str {
        match self {
            LockEvent::Queued { name, .. }
            | LockEvent::Granted { name, .. }
            | LockEvent::Released { name, .. }
            | LockEvent::Expired { name, .. }
            | LockEvent::LeftQueue { name, .. } => name,
        }
    }

    pub fn session(&self) -> SessionId {
        match self {
            LockEvent::Queued { session, .. }
            | LockEvent::Granted { session, .. }
            | LockEvent::Released { session, .. }
            | LockEvent::Expired { session, .. }
            | LockEvent::LeftQueue { session, .. } => *session,
        }
    }
}

/// One name as seen through events: holders in grant order, waiters in
/// queue order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirroredLock {
    pub holders: Vec<(SessionId, LockMode, u64)>,
    pub waiters: Vec<(SessionId, LockMode)>,
}

/// The names' holders and queues rebuilt from events alone. Refuses an
/// event that does not fit what it has seen, so a gap or a reordering in
/// a stream shows up as an error rather than a quietly wrong picture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockMirror {
    locks: BTreeMap<String, MirroredLock>,
}

impl LockMirror {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names that someone holds or waits for.
    pub fn locks(&self) -> &BTreeMap<String, MirroredLock> {
        &self.locks
    }

    pub fn apply(&mut self, event: &LockEvent) -> Result<(), String> {
        let name = event.name();
        let lock = self.locks.entry(name.to_owned()).or_default();
        let result = match event {
            LockEvent::Queued { session, mode, .. } => {
                if lock.waiters.iter().any(|w| w.0 == *session)
                    || lock.holders.iter().any(|h| h.0 == *session)
                {
                    Err(format!("{session} queued twice for {name:?}"))
                } else {
                    lock.waiters.push((*session, *mode));
                    Ok(())
                }
            }
            LockEvent::Granted {
                session,
                mode,
                token,
                ..
            } => {
                let queued_at = lock.waiters.iter().position(|w| w.0 == *session);
                if queued_at.is_some_and(|at| at != 0) {
                    Err(format!("{session} granted {name:?} ahead of the queue"))
                } else if lock.holders.iter().any(|h| h.0 == *session) {
                    Err(format!("{session} granted {name:?} twice"))
                } else {
                    if queued_at.is_some() {
                        lock.waiters.remove(0);
                    }
                    lock.holders.push((*session, *mode, *token));
                    Ok(())
                }
            }
            LockEvent::Released { session, token, .. }
            | LockEvent::Expired { session, token, .. } => {
                let at = lock
                    .holders
                    .iter()
                    .position(|h| h.0 == *session && h.2 == *token);
                match at {
                    Some(at) => {
                        lock.holders.remove(at);
                        Ok(())
                    }
                    None => Err(format!("{session} gave up {name:?} it did not hold")),
                }
            }
            LockEvent::LeftQueue { session, .. } => {
                match lock.waiters.iter().position(|w| w.0 == *session) {
                    Some(at) => {
                        lock.waiters.remove(at);
                        Ok(())
                    }
                    None => Err(format!("{session} left a queue for {name:?} it was not in")),
                }
            }
        };
        if lock.holders.is_empty() && lock.waiters.is_empty() {
            self.locks.remove(name);
        }
        result
    }
}
