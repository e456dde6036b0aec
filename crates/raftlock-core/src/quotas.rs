//! Enforcing the quotas ([`crate::Limits`]): each check refuses growth
//! past a limit with [`LockError::QuotaExceeded`] before anything changes.
//! Lowering a limit below what is in use only stops further growth: held
//! locks, queued waiters and open sessions all stay.
//!
//! # Retained answers
//!
//! Every session remembers the answers to its last [`DEDUP_WINDOW`]
//! requests, so that a retry gets the first answer instead of acting
//! twice. Refusing to remember an answer, or forgetting one early, would
//! break that promise for a request that did take effect; so the memory is
//! bounded where nothing has taken effect yet: each session reserves its
//! whole window when it opens, and `OpenSession` is refused once the
//! reservations of the open sessions would pass the quota. The answers
//! actually kept never exceed the reservations.

use crate::table::LockTable;
use crate::usage::{count, Usage};
use crate::{LockError, Quota, QuotaUsage, SessionId, DEDUP_WINDOW};

impl LockTable {
    /// The quotas this table enforces.
    pub fn limits(&self) -> crate::Limits {
        self.limits
    }

    /// How much of each quota is in use; for per-session, per-principal
    /// and per-lock quotas, the largest use by any one of them. O(log n)
    /// from counters apply keeps.
    pub fn quota_usage(&self) -> QuotaUsage {
        let mut usage = QuotaUsage::default();
        let u = &self.usage;
        usage.set(Quota::Sessions, count(self.sessions.len()));
        usage.set(Quota::SessionsPerPrincipal, u.principals.max());
        usage.set(Quota::HoldsPerSession, u.claims.max());
        usage.set(Quota::WaitsPerSession, u.waits.max());
        usage.set(Quota::WaitersPerLock, u.queue_lengths.max());
        usage.set(Quota::Locks, count(self.locks.len()));
        usage.set(
            Quota::RetainedAnswers,
            Usage::reserved_answers(self.sessions.len()),
        );
        usage.set(Quota::Claims, u.holds.saturating_add(u.waiters));
        usage
    }

    /// Room for one more session, opened by `principal`.
    pub(crate) fn check_open_quota(&self, principal: &str) -> Result<(), LockError> {
        let sessions = count(self.sessions.len());
        within(
            Quota::Sessions,
            self.limits.sessions,
            sessions,
            1,
            String::new,
        )?;
        within(
            Quota::RetainedAnswers,
            self.limits.retained_answers,
            Usage::reserved_answers(self.sessions.len()),
            count(DEDUP_WINDOW),
            String::new,
        )?;
        let mine = self.usage.per_principal.get(principal).copied();
        within(
            Quota::SessionsPerPrincipal,
            self.limits.sessions_per_principal,
            mine.unwrap_or(0),
            1,
            || format!(", principal {principal:?}"),
        )
    }

    /// Room for `name` in the table, if it is not there yet.
    pub(crate) fn check_name_quota(&self, name: &str) -> Result<(), LockError> {
        if self.locks.contains_key(name) {
            return Ok(());
        }
        within(
            Quota::Locks,
            self.limits.locks,
            count(self.locks.len()),
            1,
            || format!(", new lock {name:?}"),
        )
    }

    /// Room for `session` to hold one more name (`queue`: or to wait for
    /// it, behind the lock's present waiters).
    pub(crate) fn check_claim_quota(
        &self,
        session: SessionId,
        name: &str,
        queue: bool,
    ) -> Result<(), LockError> {
        let Some(s) = self.sessions.get(&session) else {
            return Err(LockError::UnknownSession(session));
        };
        let whose = || format!(", session {session}");
        within(
            Quota::Claims,
            self.limits.claims,
            self.usage.holds.saturating_add(self.usage.waiters),
            1,
            String::new,
        )?;
        let claims = count(s.held.len()).saturating_add(count(s.waiting.len()));
        within(
            Quota::HoldsPerSession,
            self.limits.holds_per_session,
            claims,
            1,
            whose,
        )?;
        if !queue {
            return Ok(());
        }
        within(
            Quota::WaitsPerSession,
            self.limits.waits_per_session,
            count(s.waiting.len()),
            1,
            whose,
        )?;
        let waiters = self.locks.get(name).map_or(0, |l| count(l.waiters.len()));
        within(
            Quota::WaitersPerLock,
            self.limits.waiters_per_lock,
            waiters,
            1,
            || format!(", lock {name:?}"),
        )
    }
}

/// Refuses adding `more` to `used` if that passes `limit`. `detail` is
/// only formatted for a refusal: checks that pass cost no allocation.
fn within(
    quota: Quota,
    limit: u64,
    used: u64,
    more: u64,
    detail: impl FnOnce() -> String,
) -> Result<(), LockError> {
    if used.saturating_add(more) <= limit {
        return Ok(());
    }
    Err(LockError::QuotaExceeded {
        quota,
        limit,
        used,
        detail: detail(),
    })
}
