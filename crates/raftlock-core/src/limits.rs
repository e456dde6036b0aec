//! Quotas: how much of the table one cluster, one principal, one session
//! or one lock may grow. A request past a quota is refused with
//! [`LockError::QuotaExceeded`](crate::LockError::QuotaExceeded), which
//! names the quota and the server flag that sets it; nothing changes.
//!
//! The limits are part of the replicated table, set by
//! [`Command::SetLimits`](crate::Command::SetLimits) (the leader proposes
//! its own flags' values when they differ from the table's), so every
//! replica refuses the same requests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{LockError, DEDUP_WINDOW};

/// One bounded resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Quota {
    /// Open sessions in the cluster.
    Sessions,
    /// Open sessions opened by one principal.
    SessionsPerPrincipal,
    /// Names one session holds or waits for (a wait may become a hold at
    /// any moment, so it counts from the start).
    HoldsPerSession,
    /// Names one session waits for.
    WaitsPerSession,
    /// Waiters queued on one name.
    WaitersPerLock,
    /// Names in the table (held, waited for, or in lock-delay).
    Locks,
    /// Retry answers the open sessions may remember, together: each
    /// session reserves its whole window ([`crate::DEDUP_WINDOW`]) when it
    /// opens, so a request of an open session is never refused for it.
    RetainedAnswers,
    /// Holds and waits over all sessions and names: what the other quotas
    /// multiply up to (sessions x names each) is bounded here, and with it
    /// the table's size and its snapshot's.
    Claims,
}

impl Quota {
    pub const ALL: [Quota; 8] = [
        Quota::Sessions,
        Quota::SessionsPerPrincipal,
        Quota::HoldsPerSession,
        Quota::WaitsPerSession,
        Quota::WaitersPerLock,
        Quota::Locks,
        Quota::RetainedAnswers,
        Quota::Claims,
    ];

    /// The `raftlock server` flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Quota::Sessions => "--max-sessions",
            Quota::SessionsPerPrincipal => "--max-sessions-per-principal",
            Quota::HoldsPerSession => "--max-holds-per-session",
            Quota::WaitsPerSession => "--max-waits-per-session",
            Quota::WaitersPerLock => "--max-waiters-per-lock",
            Quota::Locks => "--max-locks",
            Quota::RetainedAnswers => "--max-retained-answers",
            Quota::Claims => "--max-claims",
        }
    }

    /// Its name in metrics and status (`raftlock_quota_used{quota="..."}`).
    pub fn key(self) -> &'static str {
        match self {
            Quota::Sessions => "sessions",
            Quota::SessionsPerPrincipal => "sessions_per_principal",
            Quota::HoldsPerSession => "holds_per_session",
            Quota::WaitsPerSession => "waits_per_session",
            Quota::WaitersPerLock => "waiters_per_lock",
            Quota::Locks => "locks",
            Quota::RetainedAnswers => "retained_answers",
            Quota::Claims => "claims",
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The value of every quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub sessions: u64,
    pub sessions_per_principal: u64,
    pub holds_per_session: u64,
    pub waits_per_session: u64,
    pub waiters_per_lock: u64,
    pub locks: u64,
    pub retained_answers: u64,
    pub claims: u64,
}

impl Limits {
    pub fn get(&self, quota: Quota) -> u64 {
        match quota {
            Quota::Sessions => self.sessions,
            Quota::SessionsPerPrincipal => self.sessions_per_principal,
            Quota::HoldsPerSession => self.holds_per_session,
            Quota::WaitsPerSession => self.waits_per_session,
            Quota::WaitersPerLock => self.waiters_per_lock,
            Quota::Locks => self.locks,
            Quota::RetainedAnswers => self.retained_answers,
            Quota::Claims => self.claims,
        }
    }

    pub fn set(&mut self, quota: Quota, value: u64) {
        let slot = match quota {
            Quota::Sessions => &mut self.sessions,
            Quota::SessionsPerPrincipal => &mut self.sessions_per_principal,
            Quota::HoldsPerSession => &mut self.holds_per_session,
            Quota::WaitsPerSession => &mut self.waits_per_session,
            Quota::WaitersPerLock => &mut self.waiters_per_lock,
            Quota::Locks => &mut self.locks,
            Quota::RetainedAnswers => &mut self.retained_answers,
            Quota::Claims => &mut self.claims,
        };
        *slot = value;
    }
}

/// The largest value any quota may be set to: far above what a node can
/// hold in memory, so a value above it is a mistake (a unit slip, a stray
/// digit), not a wish.
pub const MAX_LIMIT: u64 = 1 << 40;

impl Limits {
    /// Refuses a value no cluster could mean: zero (nothing could ever be
    /// opened, held or queued), above [`MAX_LIMIT`], or a retry-memory
    /// total below one session's window (no session could open).
    pub fn validate(&self) -> Result<(), LockError> {
        for quota in Quota::ALL {
            let value = self.get(quota);
            if value == 0 || value > MAX_LIMIT {
                return Err(LockError::InvalidArgument(format!(
                    "quota {quota} ({}) is {value}; it must be 1 ..= {MAX_LIMIT}",
                    quota.flag()
                )));
            }
        }
        let window = DEDUP_WINDOW as u64;
        if self.retained_answers < window {
            return Err(LockError::InvalidArgument(format!(
                "quota {} ({}) is {}; each session reserves {window} answers, so it must be \
                 at least {window}",
                Quota::RetainedAnswers,
                Quota::RetainedAnswers.flag(),
                self.retained_answers
            )));
        }
        Ok(())
    }
}

impl Default for Limits {
    /// Values a normal cluster never reaches (docs/operations.md says how
    /// much memory each allows).
    fn default() -> Self {
        Limits {
            sessions: 100_000,
            sessions_per_principal: 10_000,
            holds_per_session: 10_000,
            waits_per_session: 1_000,
            waiters_per_lock: 10_000,
            locks: 1_000_000,
            // Each open session reserves DEDUP_WINDOW answers (see
            // quotas.rs), so this is what the default session quota needs.
            retained_answers: 6_400_000,
            // A hold of a 512-byte name (the longest) takes about 1.1 KB
            // in a snapshot: a million keep one near 1.1 GB, inside the
            // default --max-snapshot-bytes (2 GiB).
            claims: 1_000_000,
        }
    }
}

/// How much of each quota is in use: for the per-session, per-lock and
/// per-principal quotas, the largest use by any one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    pub used: [u64; 8],
}

impl QuotaUsage {
    pub fn get(&self, quota: Quota) -> u64 {
        self.used[quota.slot()]
    }

    pub fn set(&mut self, quota: Quota, used: u64) {
        self.used[quota.slot()] = used;
    }
}

impl Quota {
    /// Its place in [`Quota::ALL`] and [`QuotaUsage::used`].
    fn slot(self) -> usize {
        match self {
            Quota::Sessions => 0,
            Quota::SessionsPerPrincipal => 1,
            Quota::HoldsPerSession => 2,
            Quota::WaitsPerSession => 3,
            Quota::WaitersPerLock => 4,
            Quota::Locks => 5,
            Quota::RetainedAnswers => 6,
            Quota::Claims => 7,
        }
    }
}
