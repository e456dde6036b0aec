//! The leader's session deadlines, ordered by when they fall due, so that
//! finding the sessions to expire costs the number of expired sessions,
//! not the number of live ones, and the leader can sleep until the next
//! deadline instead of scanning on a timer.
//!
//! Pure bookkeeping, no clock of its own: callers pass `now`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use raftlock_core::{SessionId, MAX_TTL_MS};

/// A keepalive that came too late: the leader is expiring the session.
#[derive(Debug)]
pub struct TooLate;

/// Every session this leader keeps a deadline for.
#[derive(Default)]
pub struct Deadlines {
    /// A session's deadline; `None` if `now + TTL` does not fit in an
    /// `Instant` (it then never falls due on this leader).
    at: HashMap<SessionId, Option<Instant>>,
    /// The same deadlines, earliest first.
    order: BTreeSet<(Instant, SessionId)>,
    /// Sessions past their deadline whose expiry was handed out by
    /// [`Deadlines::take_due`] and is not known to have ended them yet:
    /// their keepalives come too late.
    expiring: HashSet<SessionId>,
}

/// `now + ttl`, the TTL clamped to the table's maximum; `None` if even
/// that does not fit (a clock near the end of `Instant`'s range).
pub fn deadline_after(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl.min(Duration::from_millis(MAX_TTL_MS)))
}

impl Deadlines {
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// The earliest deadline not yet handed out.
    pub fn front(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Extends `session` to `now + ttl`, unless its deadline already passed:
    /// then its expiry may be in flight, and confirming it would let the
    /// client believe in a lock that is about to go to someone else.
    pub fn keep_alive(
        &mut self,
        session: SessionId,
        ttl: Duration,
        now: Instant,
    ) -> Result<(), TooLate> {
        if self.expiring.contains(&session) {
            return Err(TooLate);
        }
        match self.at.get(&session) {
            Some(Some(deadline)) if *deadline <= now => return Err(TooLate),
            Some(_) => {}
            // Not tracked yet (opened since the leader last looked, or it
            // just ended): the leader's next look starts a live one at now
            // + TTL. Adding it here could track a session that already
            // ended, and the look, which compares counts, would then miss
            // a new one.
            None => return Ok(()),
        }
        self.set(session, deadline_after(now, ttl));
        Ok(())
    }

    fn set(&mut self, session: SessionId, deadline: Option<Instant>) {
        if let Some(Some(old)) = self.at.insert(session, deadline) {
            self.order.remove(&(old, session));
        }
        if let Some(at) = deadline {
            self.order.insert((at, session));
        }
    }

    /// Forgets `session` (it ended).
    pub fn remove(&mut self, session: SessionId) {
        if let Some(Some(at)) = self.at.remove(&session) {
            self.order.remove(&(at, session));
        }
        self.expiring.remove(&session);
    }

    pub fn clear(&mut self) {
        self.at.clear();
        self.order.clear();
        self.expiring.clear();
    }

    /// Makes the deadlines match the table's live `sessions`: ended ones
    /// are forgotten, new ones start at `now + TTL`.
    pub fn reconcile(&mut self, sessions: &[(SessionId, u64)], now: Instant) {
        if self.at.len() > sessions.len() || !self.expiring.is_empty() {
            let live: HashSet<SessionId> = sessions.iter().map(|(s, _)| *s).collect();
            let gone: Vec<SessionId> = (self.at.keys())
                .filter(|s| !live.contains(s))
                .copied()
                .collect();
            for session in gone {
                self.remove(session);
            }
        }
        for (session, ttl_ms) in sessions {
            if !self.at.contains_key(session) {
                self.set(
                    *session,
                    deadline_after(now, Duration::from_millis(*ttl_ms)),
                );
            }
        }
    }

    /// The sessions whose deadline is `now` or earlier, taken out of the
    /// order and marked as expiring (until [`Deadlines::remove`]).
    pub fn take_due(&mut self, now: Instant) -> Vec<SessionId> {
        let mut due = Vec::new();
        while let Some(&(at, session)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            self.expiring.insert(session);
            due.push(session);
        }
        due
    }

    /// Sessions whose expiry was handed out but not yet confirmed, to
    /// propose again after a failed proposal.
    pub fn expiring(&self) -> Vec<SessionId> {
        self.expiring.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u128) -> SessionId {
        SessionId(n)
    }

    #[test]
    fn due_sessions_come_out_in_deadline_order_and_only_once() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        d.reconcile(&[(s(1), 300), (s(2), 100), (s(3), 200)], now);
        assert_eq!(d.front(), Some(now + Duration::from_millis(100)));
        assert!(d.take_due(now + Duration::from_millis(99)).is_empty());
        assert_eq!(
            d.take_due(now + Duration::from_millis(200)),
            vec![s(2), s(3)]
        );
        assert!(d.take_due(now + Duration::from_millis(200)).is_empty());
        assert_eq!(d.front(), Some(now + Duration::from_millis(300)));
        assert_eq!(d.len(), 3, "expiring sessions are kept until they end");
    }

    #[test]
    fn a_keepalive_moves_the_deadline_unless_it_passed() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        d.reconcile(&[(s(1), 100), (s(2), 100)], now);
        let later = now + Duration::from_millis(50);
        d.keep_alive(s(1), Duration::from_millis(100), later)
            .unwrap();
        assert_eq!(d.front(), Some(now + Duration::from_millis(100)));
        let due = d.take_due(now + Duration::from_millis(100));
        assert_eq!(due, vec![s(2)]);
        assert!(d
            .keep_alive(s(2), Duration::from_millis(100), later)
            .is_err());
        let past = now + Duration::from_millis(150);
        assert!(d
            .keep_alive(s(1), Duration::from_millis(100), past)
            .is_err());
        d.remove(s(2));
        assert_eq!(d.len(), 1);
        assert!(d.expiring().is_empty());
        // One the leader has not looked at yet (or that just ended) is
        // left for the next look, not tracked by a keepalive.
        d.keep_alive(s(9), Duration::from_millis(100), later)
            .unwrap();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn reconcile_forgets_ended_sessions_and_keeps_known_deadlines() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        d.reconcile(&[(s(1), 100), (s(2), 100)], now);
        d.take_due(now + Duration::from_millis(100));
        let later = now + Duration::from_millis(500);
        d.reconcile(&[(s(3), 100)], later);
        assert_eq!(d.len(), 1);
        assert!(d.expiring().is_empty());
        assert_eq!(d.front(), Some(later + Duration::from_millis(100)));
        d.reconcile(
            &[(s(3), 100), (s(4), 1000)],
            later + Duration::from_millis(10),
        );
        assert_eq!(d.front(), Some(later + Duration::from_millis(100)));
    }

    #[test]
    fn a_huge_ttl_is_clamped_and_never_overflows() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        d.reconcile(&[(s(1), u64::MAX)], now);
        assert_eq!(d.front(), Some(now + Duration::from_millis(MAX_TTL_MS)));
        d.keep_alive(s(1), Duration::MAX, now).unwrap();
        assert_eq!(d.front(), Some(now + Duration::from_millis(MAX_TTL_MS)));
        assert_eq!(deadline_after(now, Duration::MAX), d.front());
    }
}
