//! Counters of how much of each quota is in use, kept up to date by every
//! change apply makes, so a quota check or a `quota_usage()` call (status
//! and metrics call it often) costs O(log n) instead of a scan.
//!
//! They are derived data: never serialized, rebuilt by [`Usage::recount`]
//! when a table is loaded, and compared with a fresh recount by the check
//! for tables from outside, so they cannot silently disagree with the data.

use std::collections::BTreeMap;

use crate::queue::Lock;
use crate::sessions::Session;
use crate::{SessionId, DEDUP_WINDOW};

/// How many members have each value: the largest value is the last key.
/// Zeros are not kept (nobody asks how many sessions hold nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Histogram(BTreeMap<u64, u64>);

impl Histogram {
    /// One member's value went from `from` to `to`.
    pub(crate) fn change(&mut self, from: u64, to: u64) {
        if from == to {
            return;
        }
        if from > 0 {
            if let Some(count) = self.0.get_mut(&from) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.0.remove(&from);
                }
            }
        }
        if to > 0 {
            let count = self.0.entry(to).or_insert(0);
            *count = count.saturating_add(1);
        }
    }

    /// The largest value any member has (0 if none has more than 0).
    pub(crate) fn max(&self) -> u64 {
        self.0.last_key_value().map_or(0, |(value, _)| *value)
    }
}

/// What a session contributes to the per-session quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionLoad {
    /// Names held or waited for: a wait may turn into a hold at any moment
    /// without asking, so the hold quota counts it from the start.
    pub(crate) claims: u64,
    pub(crate) waits: u64,
    pub(crate) answers: u64,
}

impl SessionLoad {
    pub(crate) fn of(session: &Session) -> Self {
        SessionLoad {
            claims: count(session.held.len()).saturating_add(count(session.waiting.len())),
            waits: count(session.waiting.len()),
            answers: count(session.recent.len()),
        }
    }
}

/// What a lock contributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockLoad {
    pub(crate) holders: u64,
    pub(crate) waiters: u64,
}

impl LockLoad {
    pub(crate) fn of(lock: &Lock) -> Self {
        LockLoad {
            holders: count(lock.holders.len()),
            waiters: count(lock.waiters.len()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Open sessions per principal ("" for sessions without an owner).
    pub(crate) per_principal: BTreeMap<String, u64>,
    pub(crate) principals: Histogram,
    pub(crate) claims: Histogram,
    pub(crate) waits: Histogram,
    pub(crate) queue_lengths: Histogram,
    /// Holds over all names.
    pub(crate) holds: u64,
    /// Names with at least one holder.
    pub(crate) held_names: u64,
    /// Waiters over all names.
    pub(crate) waiters: u64,
    /// Answers actually remembered over all sessions (the quota counts
    /// what sessions reserve, see `quotas.rs`; this is what they use).
    pub(crate) answers: u64,
}

impl Usage {
    pub(crate) fn session_opened(&mut self, principal: &str) {
        // Looked up before inserting: the name is copied only the first time.
        let count = match self.per_principal.get_mut(principal) {
            Some(count) => count,
            None => self.per_principal.entry(principal.to_owned()).or_insert(0),
        };
        self.principals.change(*count, count.saturating_add(1));
        *count = count.saturating_add(1);
    }

    pub(crate) fn session_closed(&mut self, principal: &str, load: SessionLoad) {
        if let Some(count) = self.per_principal.get_mut(principal) {
            self.principals.change(*count, count.saturating_sub(1));
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_principal.remove(principal);
            }
        }
        self.session_changed(load, SessionLoad::default());
    }

    pub(crate) fn session_changed(&mut self, before: SessionLoad, after: SessionLoad) {
        self.claims.change(before.claims, after.claims);
        self.waits.change(before.waits, after.waits);
        self.answers = self
            .answers
            .saturating_sub(before.answers)
            .saturating_add(after.answers);
    }

    pub(crate) fn lock_changed(&mut self, before: LockLoad, after: LockLoad) {
        self.queue_lengths.change(before.waiters, after.waiters);
        self.waiters = self
            .waiters
            .saturating_sub(before.waiters)
            .saturating_add(after.waiters);
        self.holds = self
            .holds
            .saturating_sub(before.holders)
            .saturating_add(after.holders);
        let held = |load: LockLoad| u64::from(load.holders > 0);
        self.held_names = self
            .held_names
            .saturating_sub(held(before))
            .saturating_add(held(after));
    }

    /// Counts everything from scratch: for a table just loaded, and to
    /// check the counters kept by apply against.
    pub(crate) fn recount<'a>(
        sessions: impl Iterator<Item = (&'a SessionId, &'a Session)>,
        locks: impl Iterator<Item = &'a Lock>,
    ) -> Self {
        let mut usage = Usage::default();
        for (_, session) in sessions {
            usage.session_opened(session.principal());
            usage.session_changed(SessionLoad::default(), SessionLoad::of(session));
        }
        for lock in locks {
            usage.lock_changed(LockLoad::default(), LockLoad::of(lock));
        }
        usage
    }

    /// Answer slots reserved by `sessions` open sessions: each may keep
    /// up to [`DEDUP_WINDOW`] answers.
    pub(crate) fn reserved_answers(sessions: usize) -> u64 {
        count(sessions).saturating_mul(count(DEDUP_WINDOW))
    }
}

pub(crate) fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_tracks_its_largest_value() {
        let mut h = Histogram::default();
        h.change(0, 3);
        h.change(0, 5);
        assert_eq!(h.max(), 5);
        h.change(5, 2);
        assert_eq!(h.max(), 3);
        h.change(3, 0);
        h.change(2, 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h, Histogram::default());
    }
}
