//! What the workload did and saw, with times: the input of the checker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A moment, as time since the run started.
pub type At = Duration;

/// How a lock operation ended, as far as the client could tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// It took effect (for an acquire, with this fencing token).
    Ok(Option<u64>),
    /// It certainly did not take effect (try-lock failed, wait timed out).
    Failed,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LockOp {
    Acquire,
    Release,
    /// The client learned its session was gone while holding the lock: the
    /// server released it at some point between `invoked` (the grant) and
    /// `completed` (when the client found out).
    Expired,
}

/// One lock operation by one client (a session incarnation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockEvent {
    pub client: u64,
    pub lock: String,
    pub op: LockOp,
    /// Taken (or asked for) in shared mode, as a reader.
    pub shared: bool,
    pub invoked: At,
    /// `None` when the client never heard back.
    pub completed: Option<At>,
    pub outcome: Outcome,
}

/// Under which lock mode, and when in a hold, the register was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Access {
    /// A writer's read or write, under an exclusive lock.
    Exclusive,
    /// A reader's first look, just after its shared grant.
    ReadStart,
    /// The same reader's last look, just before it releases.
    ReadEnd,
}

/// One operation on the fenced register, as the register decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegisterEvent {
    pub client: u64,
    pub lock: String,
    pub at: At,
    pub token: u64,
    pub access: Access,
    /// `Some(v)` for a write of v, `None` for a read.
    pub write: Option<u64>,
    pub accepted: bool,
    /// What an accepted read returned.
    pub seen: Option<u64>,
}

/// A fault the nemesis injected, and what it measured.
#[derive(Clone, Debug, Serialize)]
pub struct FaultEvent {
    pub kind: String,
    pub target: Vec<u64>,
    pub injected: At,
    pub healed: Option<At>,
    /// When the cluster was fully healthy again after healing.
    pub healthy: Option<At>,
}

/// The run's whole record, filled in by many tasks at once.
#[derive(Debug)]
pub struct History {
    start: Instant,
    pub locks: Mutex<Vec<LockEvent>>,
    pub register: Mutex<Vec<RegisterEvent>>,
    pub faults: Mutex<Vec<FaultEvent>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            start: Instant::now(),
            locks: Mutex::new(Vec::new()),
            register: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        }
    }

    pub fn now(&self) -> At {
        self.start.elapsed()
    }

    pub fn record(&self, event: LockEvent) {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}
