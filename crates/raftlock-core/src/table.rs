//! The lock table and the one function that changes it: [`LockTable::apply`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::types::{validate_label, validate_lock_delay, validate_name, validate_ttl};
use crate::DEDUP_WINDOW;
use crate::{Applied, Command, Event, LockError, Outcome, Proposal, Response, SessionId};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    /// Greatest proposal time seen; applied time never runs backwards even
    /// if a new leader's clock is behind the old one's.
    now_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<String, Lock>,
    /// Locks in lock-delay, by the time they become grantable again.
    delayed: BTreeSet<(u64, String)>,
}

/// What one entry's commands share while they are applied. Tokens are the
/// entry's log index, so a name may be granted at most once per entry: a
/// second grant would repeat the token. `granted` enforces that; a lock
/// freed again within the entry waits for the next one.
struct EntryApply {
    index: u64,
    events: Vec<Event>,
    granted: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    label: String,
    ttl_ms: u64,
    lock_delay_ms: u64,
    held: BTreeSet<String>,
    waiting: BTreeSet<String>,
    /// Answers to the most recent requests, oldest first.
    recent: VecDeque<Remembered>,
    /// Highest seq evicted from `recent`; older retries are refused.
    evicted_through: u64,
}

/// A numbered request's first answer, and what that request asked
/// ([`Command::request_digest`]) so a different request with the same
/// number cannot be handed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    seq: u64,
    digest: u64,
    response: Response,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Lock {
    holder: Option<Holder>,
    waiters: VecDeque<SessionId>,
    /// Not grantable before this time (lock-delay after an expiry).
    available_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    session: SessionId,
    token: u64,
    since_ms: u64,
}

/// A read-only view of one lock, for queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    pub name: String,
    pub holder: Option<HolderView>,
    pub waiters: Vec<WaiterView>,
    pub available_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderView {
    pub session: SessionId,
    pub label: String,
    pub token: u64,
    pub since_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterView {
    pub session: SessionId,
    pub label: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub sessions: usize,
    pub held: usize,
    pub waiters: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub session: SessionId,
    pub label: String,
    pub ttl_ms: u64,
    pub lock_delay_ms: u64,
    pub held: Vec<String>,
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the proposal found at log `index`. Deterministic: the same
    /// table and the same (index, proposal) always give the same result.
    pub fn apply(&mut self, index: u64, proposal: &Proposal) -> Applied {
        self.now_ms = self.now_ms.max(proposal.time_ms);
        let mut entry = EntryApply {
            index,
            events: Vec::new(),
            granted: BTreeSet::new(),
        };
        let mut responses = Vec::with_capacity(proposal.commands.len());
        for command in &proposal.commands {
            let request = command.request_id().filter(|(_, seq)| *seq != 0);
            let response =
                match request.and_then(|(session, seq)| self.remembered(session, seq, command)) {
                    Some(first_answer) => first_answer,
                    None => {
                        let response = self.execute(&mut entry, command);
                        if let Some((session, seq)) = request {
                            self.remember(session, seq, command.request_digest(), &response);
                        }
                        response
                    }
                };
            responses.push(response);
        }
        // Lock-delays that ran out are settled by whichever entry comes
        // next, so a free lock never sits with waiters past its delay.
        self.tick(&mut entry);
        Applied {
            responses,
            events: entry.events,
        }
    }

    /// A retried request's first answer; a refusal if its number is too
    /// old to know or was first used for a different request.
    fn remembered(&self, session: SessionId, seq: u64, command: &Command) -> Option<Response> {
        let s = self.sessions.get(&session)?;
        if let Some(first) = s.recent.iter().find(|r| r.seq == seq) {
            if first.digest != command.request_digest() {
                return Some(Err(LockError::SeqReused {
                    session,
                    seq,
                    request: command.describe(),
                }));
            }
            return Some(first.response.clone());
        }
        if seq <= s.evicted_through {
            return Some(Err(LockError::StaleRequest {
                seq,
                oldest: s.recent.front().map_or(seq, |r| r.seq),
            }));
        }
        None
    }

    fn remember(&mut self, session: SessionId, seq: u64, digest: u64, response: &Response) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if s.recent.len() == DEDUP_WINDOW {
                if let Some(old) = s.recent.pop_front() {
                    s.evicted_through = s.evicted_through.max(old.seq);
                }
            }
            s.recent.push_back(Remembered {
                seq,
                digest,
                response: response.clone(),
            });
        }
    }

    fn execute(&mut self, entry: &mut EntryApply, command: &Command) -> Response {
        match command {
            Command::OpenSession {
                session,
                label,
                ttl_ms,
                lock_delay_ms,
            } => self.open_session(*session, label, *ttl_ms, *lock_delay_ms),
            Command::CloseSession { session, .. } => self.end_session(entry, *session, false),
            Command::ExpireSession { session } => self.end_session(entry, *session, true),
            Command::Acquire {
                session,
                name,
                wait,
                ..
            } => self.acquire(entry, *session, name, *wait),
            Command::Release { session, name, .. } => self.release(entry, *session, name),
            Command::CancelWait { session, name, .. } => self.cancel_wait(*session, name),
            Command::Tick => Ok(Outcome::Ticked),
        }
    }

    fn open_session(
        &mut self,
        session: SessionId,
        label: &str,
        ttl_ms: u64,
        lock_delay_ms: u64,
    ) -> Response {
        validate_ttl(ttl_ms)?;
        validate_label(label)?;
        validate_lock_delay(lock_delay_ms)?;
        if self.sessions.contains_key(&session) {
            return Err(LockError::SessionExists(session));
        }
        self.sessions.insert(
            session,
            Session {
                label: label.to_owned(),
                ttl_ms,
                lock_delay_ms,
                held: BTreeSet::new(),
                waiting: BTreeSet::new(),
                recent: VecDeque::new(),
                evicted_through: 0,
            },
        );
        Ok(Outcome::SessionOpened { session, ttl_ms })
    }

    /// Closing releases cleanly; expiring marks each held lock lost and
    /// starts its lock-delay. Either way the next waiters are granted now.
    fn end_session(
        &mut self,
        entry: &mut EntryApply,
        session: SessionId,
        expired: bool,
    ) -> Response {
        let s = self
            .sessions
            .remove(&session)
            .ok_or(LockError::UnknownSession(session))?;
        let available_at = if expired {
            self.now_ms.saturating_add(s.lock_delay_ms)
        } else {
            0
        };
        for name in &s.waiting {
            if let Some(lock) = self.locks.get_mut(name) {
                lock.waiters.retain(|w| *w != session);
            }
        }
        for name in &s.held {
            let Some(lock) = self.locks.get_mut(name) else {
                continue;
            };
            if let Some(holder) = lock.holder.take() {
                if expired {
                    entry.events.push(Event::Lost {
                        session,
                        name: name.clone(),
                        token: holder.token,
                    });
                }
            }
            if available_at > self.now_ms {
                lock.available_at_ms = available_at;
                self.delayed.insert((available_at, name.clone()));
            }
        }
        for name in s.held.iter().chain(s.waiting.iter()) {
            self.promote(entry, name);
        }
        entry.events.push(Event::SessionEnded { session, expired });
        Ok(Outcome::SessionEnded {
            released: s.held.into_iter().collect(),
        })
    }

    fn acquire(
        &mut self,
        entry: &mut EntryApply,
        session: SessionId,
        name: &str,
        wait: bool,
    ) -> Response {
        validate_name(name)?;
        if !self.sessions.contains_key(&session) {
            return Err(LockError::UnknownSession(session));
        }
        let now = self.now_ms;
        let lock = self.locks.entry(name.to_owned()).or_default();
        if let Some(h) = &lock.holder {
            if h.session == session {
                return Ok(Outcome::Granted {
                    token: h.token,
                    reentrant: true,
                });
            }
        }
        if let Some(position) = lock.waiters.iter().position(|w| *w == session) {
            return Ok(Outcome::Queued { position });
        }
        let grantable = lock.holder.is_none()
            && lock.waiters.is_empty()
            && now >= lock.available_at_ms
            && !entry.granted.contains(name);
        if grantable {
            self.grant(entry, name, session);
            return Ok(Outcome::Granted {
                token: entry.index,
                reentrant: false,
            });
        }
        if !wait {
            let holder = lock.holder.as_ref().map(|h| h.session);
            let available_at_ms = lock.available_at_ms;
            let holder = holder.map(|h| (h, self.label_of(h)));
            self.drop_if_idle(name);
            return Ok(Outcome::Busy {
                holder,
                available_at_ms,
            });
        }
        lock.waiters.push_back(session);
        let position = lock.waiters.len() - 1;
        let free = lock.holder.is_none();
        self.session_mut(session).waiting.insert(name.to_owned());
        if free {
            // Free but granted earlier in this entry: the next entry grants it.
            self.promote(entry, name);
        }
        Ok(Outcome::Queued { position })
    }

    fn release(&mut self, entry: &mut EntryApply, session: SessionId, name: &str) -> Response {
        validate_name(name)?;
        if !self.sessions.contains_key(&session) {
            return Err(LockError::UnknownSession(session));
        }
        let holder = self
            .locks
            .get(name)
            .and_then(|l| l.holder.as_ref())
            .map(|h| h.session);
        match holder {
            None => Err(LockError::NotHeld {
                name: name.to_owned(),
            }),
            Some(h) if h != session => Err(LockError::NotHolder {
                name: name.to_owned(),
                holder_label: self.label_of(h),
                holder_session: h,
            }),
            Some(_) => {
                if let Some(lock) = self.locks.get_mut(name) {
                    lock.holder = None;
                }
                self.session_mut(session).held.remove(name);
                self.promote(entry, name);
                Ok(Outcome::Released)
            }
        }
    }

    fn cancel_wait(&mut self, session: SessionId, name: &str) -> Response {
        validate_name(name)?;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(LockError::UnknownSession(session))?;
        s.waiting.remove(name);
        let Some(lock) = self.locks.get_mut(name) else {
            return Ok(Outcome::WaitCancelled);
        };
        // The grant may have raced ahead of the cancel: then the caller holds it.
        if let Some(h) = lock.holder.as_ref().filter(|h| h.session == session) {
            return Ok(Outcome::Granted {
                token: h.token,
                reentrant: true,
            });
        }
        lock.waiters.retain(|w| *w != session);
        self.drop_if_idle(name);
        Ok(Outcome::WaitCancelled)
    }

    /// Ends every lock-delay that has run out and grants its waiters.
    /// Every entry runs this last; [`Command::Tick`] exists so the leader
    /// can make it happen when no other entry is coming.
    fn tick(&mut self, entry: &mut EntryApply) {
        let mut due = Vec::new();
        while let Some((at, name)) = self.delayed.first().cloned() {
            if at > self.now_ms {
                break;
            }
            self.delayed.pop_first();
            due.push(name);
        }
        // Collected first: a lock granted earlier in this entry goes back
        // into `delayed` for the next one.
        for name in due {
            self.promote(entry, &name);
        }
    }

    /// Grants a free lock to its first waiter, if its lock-delay is over;
    /// forgets the lock if nobody holds or wants it any more.
    fn promote(&mut self, entry: &mut EntryApply, name: &str) {
        let now = self.now_ms;
        let Some(lock) = self.locks.get_mut(name) else {
            return;
        };
        if lock.holder.is_none() && now >= lock.available_at_ms && !lock.waiters.is_empty() {
            if entry.granted.contains(name) {
                // Granted and freed again within this entry: granting now
                // would repeat the token. Due at once, so the next entry
                // (the leader proposes a Tick for it) grants it.
                if lock.available_at_ms > 0 {
                    self.delayed
                        .remove(&(lock.available_at_ms, name.to_owned()));
                }
                lock.available_at_ms = now;
                self.delayed.insert((now, name.to_owned()));
                return;
            }
            if let Some(next) = lock.waiters.pop_front() {
                self.grant(entry, name, next);
                entry.events.push(Event::Granted {
                    session: next,
                    name: name.to_owned(),
                    token: entry.index,
                });
            }
        }
        self.drop_if_idle(name);
    }

    /// Makes `session` the holder of the free lock `name`, with this
    /// entry's index as its token.
    fn grant(&mut self, entry: &mut EntryApply, name: &str, session: SessionId) {
        if let Some(lock) = self.locks.get_mut(name) {
            lock.holder = Some(Holder {
                session,
                token: entry.index,
                since_ms: self.now_ms,
            });
            lock.available_at_ms = 0;
        }
        entry.granted.insert(name.to_owned());
        let s = self.session_mut(session);
        s.waiting.remove(name);
        s.held.insert(name.to_owned());
    }

    fn drop_if_idle(&mut self, name: &str) {
        let now = self.now_ms;
        if let Some(lock) = self.locks.get(name) {
            if lock.holder.is_none() && lock.waiters.is_empty() {
                if lock.available_at_ms > now {
                    return;
                }
                let at = lock.available_at_ms;
                self.locks.remove(name);
                if at > 0 {
                    self.delayed.remove(&(at, name.to_owned()));
                }
            }
        }
    }

    fn session_mut(&mut self, session: SessionId) -> &mut Session {
        self.sessions
            .get_mut(&session)
            .expect("every holder and waiter has a live session")
    }

    fn label_of(&self, session: SessionId) -> String {
        self.sessions
            .get(&session)
            .map(|s| s.label.clone())
            .unwrap_or_default()
    }

    /// Checks a table that came from outside (a snapshot read from disk or
    /// sent by a peer) for what [`LockTable::apply`] and the layers above
    /// rely on, so that a corrupt or hostile one is refused with an error
    /// instead of panicking later: every holder and waiter is a live
    /// session that lists the lock, every session's settings are in range,
    /// and no retry memory is longer than its window.
    pub fn check_consistent(&self) -> Result<(), String> {
        for (id, s) in &self.sessions {
            validate_ttl(s.ttl_ms)
                .and_then(|()| validate_lock_delay(s.lock_delay_ms))
                .and_then(|()| validate_label(&s.label))
                .map_err(|e| format!("session {id}: {e}"))?;
            if s.recent.len() > DEDUP_WINDOW {
                return Err(format!("session {id} remembers {} answers", s.recent.len()));
            }
            for name in &s.held {
                if self.holder(name).map(|(h, _)| h) != Some(*id) {
                    return Err(format!(
                        "session {id} lists {name:?} as held, the lock disagrees"
                    ));
                }
            }
            for name in &s.waiting {
                let queued = self.locks.get(name).is_some_and(|l| l.waiters.contains(id));
                if !queued {
                    return Err(format!(
                        "session {id} waits for {name:?}, its queue disagrees"
                    ));
                }
            }
        }
        for (name, lock) in &self.locks {
            validate_name(name).map_err(|e| e.to_string())?;
            let live = |id: &SessionId| self.sessions.get(id);
            if let Some(h) = &lock.holder {
                if !live(&h.session).is_some_and(|s| s.held.contains(name)) {
                    return Err(format!(
                        "lock {name:?} is held by a session that does not list it"
                    ));
                }
            }
            let mut seen = BTreeSet::new();
            for w in &lock.waiters {
                let listed = live(w).is_some_and(|s| s.waiting.contains(name));
                let holds = lock.holder.as_ref().is_some_and(|h| h.session == *w);
                if !listed || holds || !seen.insert(*w) {
                    return Err(format!("lock {name:?} has an impossible waiter {w}"));
                }
            }
        }
        Ok(())
    }

    // ---- queries (no changes) ----

    /// Applied time: the greatest proposal time seen so far.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn session(&self, session: SessionId) -> Option<SessionView> {
        self.sessions.get(&session).map(|s| SessionView {
            session,
            label: s.label.clone(),
            ttl_ms: s.ttl_ms,
            lock_delay_ms: s.lock_delay_ms,
            held: s.held.iter().cloned().collect(),
        })
    }

    /// Every live session with its TTL, for the leader's expiry clock.
    pub fn session_ttls(&self) -> impl Iterator<Item = (SessionId, u64)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s.ttl_ms))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// When the leader should next propose a [`Command::Tick`], if ever.
    pub fn next_delay_end_ms(&self) -> Option<u64> {
        self.delayed.first().map(|(at, _)| *at)
    }

    pub fn lock(&self, name: &str) -> Option<LockView> {
        self.locks.get(name).map(|l| self.view(name, l))
    }

    /// Locks whose name starts with `prefix`, in name order, at most `limit`.
    pub fn locks(&self, prefix: &str, limit: usize) -> Vec<LockView> {
        self.locks
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(limit)
            .map(|(name, l)| self.view(name, l))
            .collect()
    }

    /// Counts for monitoring: sessions, locks held, sessions waiting.
    pub fn stats(&self) -> TableStats {
        TableStats {
            sessions: self.sessions.len(),
            held: self.locks.values().filter(|l| l.holder.is_some()).count(),
            waiters: self.locks.values().map(|l| l.waiters.len()).sum(),
        }
    }

    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }

    /// The holder's session and token, if the lock is held.
    pub fn holder(&self, name: &str) -> Option<(SessionId, u64)> {
        self.locks
            .get(name)
            .and_then(|l| l.holder.as_ref())
            .map(|h| (h.session, h.token))
    }

    fn view(&self, name: &str, lock: &Lock) -> LockView {
        LockView {
            name: name.to_owned(),
            holder: lock.holder.as_ref().map(|h| HolderView {
                session: h.session,
                label: self.label_of(h.session),
                token: h.token,
                since_ms: h.since_ms,
            }),
            waiters: lock
                .waiters
                .iter()
                .map(|w| WaiterView {
                    session: *w,
                    label: self.label_of(*w),
                })
                .collect(),
            available_at_ms: lock.available_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with_holder() -> LockTable {
        let mut t = LockTable::new();
        let s = SessionId(1);
        t.apply(
            1,
            &Proposal::single(
                0,
                Command::OpenSession {
                    session: s,
                    label: "a".into(),
                    ttl_ms: 5_000,
                    lock_delay_ms: 0,
                },
            ),
        );
        t.apply(
            2,
            &Proposal::single(
                0,
                Command::Acquire {
                    session: s,
                    seq: 1,
                    name: "n".into(),
                    wait: true,
                },
            ),
        );
        t
    }

    #[test]
    fn a_corrupt_table_is_refused() {
        let good = table_with_holder();
        assert_eq!(good.check_consistent(), Ok(()));

        let mut orphan_waiter = good.clone();
        if let Some(lock) = orphan_waiter.locks.get_mut("n") {
            lock.waiters.push_back(SessionId(9));
        }
        assert!(orphan_waiter.check_consistent().is_err());

        let mut no_session = good.clone();
        no_session.sessions.clear();
        assert!(no_session.check_consistent().is_err());

        let mut endless_ttl = good;
        if let Some(s) = endless_ttl.sessions.get_mut(&SessionId(1)) {
            s.ttl_ms = u64::MAX;
        }
        assert!(endless_ttl.check_consistent().is_err());
    }
}
