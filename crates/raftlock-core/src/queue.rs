//! One name's holders and wait queue, and the rules that decide who may
//! hold it next and with what token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::session_list::{OfSession, SessionList};
use crate::{LockKind, LockMode, SessionId};

/// A name that someone holds, waits for, or that is in its lock-delay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lock {
    /// In grant order. Either one exclusive holder, any number of shared
    /// ones, or at most `limit` semaphore holders: never a mix of kinds.
    pub(crate) holders: SessionList<Holder>,
    /// First come, first served; the front is granted as soon as the
    /// holders admit it.
    pub(crate) waiters: SessionList<Waiter>,
    /// Not grantable before this time (lock-delay after an expiry, or "not
    /// in this entry", see [`EntryGrants`]).
    pub(crate) available_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) session: SessionId,
    pub(crate) mode: LockMode,
    pub(crate) token: u64,
    pub(crate) since_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Waiter {
    pub(crate) session: SessionId,
    pub(crate) mode: LockMode,
}

impl OfSession for Holder {
    fn session(&self) -> SessionId {
        self.session
    }
}

impl OfSession for Waiter {
    fn session(&self) -> SessionId {
        self.session
    }
}

impl Lock {
    /// What the name is while anyone holds or waits; `None` when idle,
    /// so the next acquirer may use it as any kind.
    pub(crate) fn kind(&self) -> Option<LockKind> {
        self.holders
            .first()
            .map(|h| h.mode)
            .or_else(|| self.waiters.first().map(|w| w.mode))
            .map(LockMode::kind)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty()
    }

    pub(crate) fn holding(&self, session: SessionId) -> Option<&Holder> {
        self.holders.get(session)
    }

    /// The caller's place in the queue (0 = next) and what it waits for.
    pub(crate) fn waiting(&self, session: SessionId) -> Option<(usize, &Waiter)> {
        self.waiters.position(session)
    }

    /// Whether the current holders leave room for one more in `mode`
    /// (of this lock's kind). The queue is not considered here.
    pub(crate) fn admits(&self, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive => self.holders.is_empty(),
            // An exclusive holder is always alone, so the first one tells.
            LockMode::Shared => self
                .holders
                .first()
                .is_none_or(|h| h.mode != LockMode::Exclusive),
            LockMode::Semaphore { limit } => self.holders.len() < limit as usize,
        }
    }

    /// Joins the back of the queue; returns the place taken (0 = next),
    /// or the place it has if the session waits already.
    pub(crate) fn push_waiter(&mut self, waiter: Waiter) -> usize {
        let session = waiter.session;
        match self.waiters.push(waiter) {
            Ok(place) => place,
            Err(_) => self.waiters.position(session).map_or(0, |(place, _)| place),
        }
    }

    /// Adds a holder (a session that holds already keeps its first hold).
    pub(crate) fn push_holder(&mut self, holder: Holder) {
        let _ = self.holders.push(holder);
    }

    pub(crate) fn remove_holder(&mut self, session: SessionId) -> Option<Holder> {
        self.holders.remove(session)
    }

    pub(crate) fn remove_waiter(&mut self, session: SessionId) -> bool {
        self.waiters.remove(session).is_some()
    }

    /// Checks the rules [`crate::LockTable::apply`] keeps for one name;
    /// used on tables that came from outside.
    pub(crate) fn check(&self, name: &str) -> Result<(), String> {
        let kind = self.kind();
        let modes = self
            .holders
            .iter()
            .map(|h| h.mode)
            .chain(self.waiters.iter().map(|w| w.mode));
        for mode in modes {
            crate::types::validate_mode(mode).map_err(|e| format!("lock {name:?}: {e}"))?;
            if Some(mode.kind()) != kind {
                return Err(format!("lock {name:?} mixes {mode} with {kind:?}"));
            }
        }
        let exclusive = self.holders.iter().any(|h| h.mode == LockMode::Exclusive);
        if exclusive && self.holders.len() > 1 {
            return Err(format!("lock {name:?} has an exclusive holder and others"));
        }
        if let Some(LockKind::Semaphore { limit }) = kind {
            if self.holders.len() > limit as usize {
                return Err(format!(
                    "semaphore {name:?} has {} holders, its limit is {limit}",
                    self.holders.len()
                ));
            }
        }
        Ok(())
    }
}

/// The names granted by the entry being applied. Every grant's token is
/// the entry's log index, so tokens rise strictly from entry to entry;
/// within one entry, shared and semaphore grants of a name may share the
/// index, but an exclusive grant must be the only grant of its name in its
/// entry so that a writer's token exceeds every token granted before it.
/// A grant this forbids waits for the next entry.
#[derive(Default)]
pub(crate) struct EntryGrants {
    /// Name -> whether its grant in this entry was exclusive.
    granted: BTreeMap<String, bool>,
}

impl EntryGrants {
    pub(crate) fn allows(&self, name: &str, mode: LockMode) -> bool {
        match self.granted.get(name) {
            None => true,
            Some(&exclusive) => !exclusive && mode != LockMode::Exclusive,
        }
    }

    pub(crate) fn record(&mut self, name: &str, mode: LockMode) {
        let exclusive = self.granted.entry(name.to_owned()).or_insert(false);
        *exclusive |= mode == LockMode::Exclusive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(modes: &[LockMode]) -> Lock {
        let holders = modes
            .iter()
            .enumerate()
            .map(|(i, mode)| Holder {
                session: SessionId(i as u128 + 1),
                mode: *mode,
                token: 1,
                since_ms: 0,
            })
            .collect();
        Lock {
            holders: SessionList::from_entries(holders).unwrap(),
            ..Lock::default()
        }
    }

    #[test]
    fn admission_follows_the_mode() {
        use LockMode::*;
        let sem = Semaphore { limit: 2 };
        assert!(holding(&[]).admits(Exclusive));
        assert!(!holding(&[Shared]).admits(Exclusive));
        assert!(holding(&[Shared, Shared]).admits(Shared));
        assert!(!holding(&[Exclusive]).admits(Shared));
        assert!(holding(&[sem]).admits(sem));
        assert!(!holding(&[sem, sem]).admits(sem));
        assert!(holding(&[Exclusive, Shared]).check("n").is_err());
        assert!(holding(&[sem, sem, sem]).check("n").is_err());
        assert!(holding(&[sem, Semaphore { limit: 3 }]).check("n").is_err());
        assert!(holding(&[Semaphore { limit: 0 }]).check("n").is_err());
    }

    #[test]
    fn one_entry_grants_a_writer_alone() {
        let mut grants = EntryGrants::default();
        grants.record("r", LockMode::Shared);
        assert!(grants.allows("r", LockMode::Shared));
        assert!(!grants.allows("r", LockMode::Exclusive));
        grants.record("w", LockMode::Exclusive);
        assert!(!grants.allows("w", LockMode::Shared));
        assert!(grants.allows("other", LockMode::Exclusive));
    }
}
