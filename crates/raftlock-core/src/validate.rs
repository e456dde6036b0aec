//! The check for lock tables that come from outside (a snapshot read from
//! disk or sent by a peer): everything apply relies on, so a corrupt or
//! hostile table is refused with an error instead of misbehaving later.
//! A table that passes [`LockTable::check_consistent_at`] can be handed
//! any command: apply has no panicking path on it (`tests/hostile.rs`
//! drives generated tables through every command to hold it to that).

use std::collections::BTreeSet;

use crate::table::LockTable;
use crate::types::{validate_name, MAX_LOCK_DELAY_MS};
use crate::usage::Usage;
use crate::SessionId;

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
            for h in lock.holders.iter() {
                let listed = live(&h.session).is_some_and(|s| s.held.contains(name));
                if !listed || !seen.insert(h.session) {
                    return Err(format!(
                        "lock {name:?} is held by a session that does not list it, or twice"
                    ));
                }
            }
            for w in lock.waiters.iter() {
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
    /// last entry applied to the table can tell, and what the derived
    /// counters must agree with: no fencing token above `last_applied`, no
    /// hold since after the table's clock, every lock-delay in range and
    /// scheduled (the `delayed` schedule and the locks' `available_at`
    /// agree both ways), the limits sane, and the quota counters equal to a
    /// recount.
    pub fn check_consistent_at(&self, last_applied: u64) -> Result<(), String> {
        self.check_consistent()?;
        self.limits
            .validate()
            .map_err(|e| format!("the table's limits: {e}"))?;
        let now = self.now_ms;
        for (name, lock) in &self.locks {
            for h in lock.holders.iter() {
                if h.token > last_applied {
                    return Err(format!(
                        "lock {name:?} has token {} from beyond the last entry applied ({last_applied})",
                        h.token
                    ));
                }
                if h.since_ms > now {
                    return Err(format!(
                        "lock {name:?} is held since {} ms, after the table's clock ({now} ms)",
                        h.since_ms
                    ));
                }
            }
            let at = lock.available_at_ms;
            if at > now.saturating_add(MAX_LOCK_DELAY_MS) {
                return Err(format!(
                    "lock {name:?} is delayed until {at} ms, past the longest lock-delay from {now} ms"
                ));
            }
            if at > now && !self.delayed.contains(&(at, name.clone())) {
                return Err(format!(
                    "lock {name:?} is delayed until {at} ms but not scheduled to end it"
                ));
            }
        }
        for (at, name) in &self.delayed {
            if self.locks.get(name).map(|l| l.available_at_ms) != Some(*at) {
                return Err(format!(
                    "lock-delay of {name:?} scheduled to end at {at} ms, the lock disagrees"
                ));
            }
        }
        let recount = Usage::recount(self.sessions.iter(), self.locks.values());
        if recount != self.usage {
            return Err("the quota counters disagree with the table".into());
        }
        Ok(())
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
            let _ = l.waiters.push(Waiter {
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
        // The same session holding twice cannot even be decoded.
        let mut bytes = bincode::serialize(&good).unwrap();
        let holder = bincode::serialize(&good.locks["n"].holders.first().unwrap()).unwrap();
        let at = bytes
            .windows(holder.len())
            .position(|w| w == holder)
            .unwrap();
        bytes.splice(at..at, holder.iter().copied());
        bytes[at - 8] += 1; // the holder count before the first holder
        assert!(bincode::deserialize::<LockTable>(&bytes).is_err());
        // An exclusive holder beside a shared one (its session lists it).
        assert!(corrupt(&|t| {
            let mut l = lock(t);
            let writer = SessionId(2);
            let mut s = t.sessions[&SessionId(1)].clone();
            s.held.insert("n".into());
            t.sessions.insert(writer, s);
            let _ = l.holders.push(Holder {
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

    #[test]
    fn what_only_the_last_index_and_the_clock_tell_is_checked() {
        let good = table_with_holder(); // "n" granted by entry 2, at 0 ms
        assert_eq!(good.check_consistent_at(2), Ok(()));
        assert!(good.check_consistent_at(1).unwrap_err().contains("token 2"));
        let at = |change: &dyn Fn(&mut LockTable)| {
            let mut t = good.clone();
            change(&mut t);
            assert_eq!(t.check_consistent(), Ok(()), "only the full check sees it");
            t.check_consistent_at(2)
        };
        let holder = |t: &mut LockTable| {
            let l = t.locks.get_mut("n").unwrap();
            let mut h = l.holders.remove(SessionId(1)).unwrap();
            h.since_ms = 5;
            let _ = l.holders.push(h);
        };
        assert!(at(&holder).unwrap_err().contains("since 5 ms"));
        // Delayed without a schedule, scheduled without the delay, too long.
        assert!(at(&|t| t.locks.get_mut("n").unwrap().available_at_ms = 10).is_err());
        assert!(at(&|t| {
            t.delayed.insert((10, "n".into()));
        })
        .is_err());
        assert!(at(&|t| {
            t.locks.get_mut("n").unwrap().available_at_ms = 60_001;
            t.delayed.insert((60_001, "n".into()));
        })
        .unwrap_err()
        .contains("longest lock-delay"));
        assert!(at(&|t| {
            t.locks.get_mut("n").unwrap().available_at_ms = 60_000;
            t.delayed.insert((60_000, "n".into()));
        })
        .is_ok());
        assert!(at(&|t| t.limits.locks = 0)
            .unwrap_err()
            .contains("--max-locks"));
        assert!(at(&|t| t.usage.holds += 1)
            .unwrap_err()
            .contains("counters"));
    }
}
