//! The lock table and the one function that changes it:
//! [`LockTable::apply`] (or [`LockTable::apply_with_events`]).
//!
//! # Modes
//!
//! Every acquire names a [`LockMode`]; [`Command::Acquire`] is exclusive.
//!
//! - **Exclusive**: the only holder of the name.
//! - **Shared**: any number of shared holders at once, never together
//!   with an exclusive one.
//! - **Semaphore { limit }**: at most `limit` holders (1 ..=
//!   [`crate::MAX_SEMAPHORE_LIMIT`]).
//!
//! A name is a read/write lock (exclusive and shared) or a semaphore of
//! one limit, decided by its first acquirer and kept while anyone holds or
//! waits for it; once nobody does, the next acquirer may use it as any
//! kind. Asking for it as another kind, or with another limit, is refused
//! with [`LockError::ModeConflict`], which names the kind in use.
//!
//! A session holds or waits for a name at most once. Asking again in the
//! same mode answers as before (granted, reentrant; or queued, with the
//! current position). Asking in another mode is refused with
//! [`LockError::OwnModeConflict`]: there are no upgrades or downgrades,
//! because two readers each waiting to become the writer would wait for
//! each other forever. Release first, then acquire in the new mode.
//!
//! # Fairness
//!
//! Each name has one FIFO queue for all modes. A request is granted at
//! once only if nobody waits, the holders admit it, and the name is not in
//! its lock-delay; otherwise it queues (or, as a try-lock, is answered
//! busy). Whenever holders leave, a waiter leaves or a lock-delay ends, the
//! queue is granted from the front for as long as the holders admit the
//! front waiter, and stops at the first one they do not. So readers at the
//! front are granted together in one entry, a queued writer holds back
//! every reader that arrives after it, and no waiter is passed by a later
//! one: a writer waits only for the holders and waiters ahead of it.
//!
//! # Tokens
//!
//! A grant's fencing token is the log index of the entry that granted it,
//! so tokens rise strictly from entry to entry for each name. Readers (or
//! semaphore holders) granted by the same entry share its token. An
//! exclusive grant is the only grant of its name in its entry, so a
//! writer's token is greater than every token granted before it; a grant
//! that rule holds back is made by the next entry (the name is due at
//! once, and the leader proposes a [`Command::Tick`] for it).
//!
//! # Lock-delay
//!
//! When a session expires, each name it held is not grantable to anyone
//! until the session's lock-delay has passed (the latest such time if
//! several holders expire), while the remaining holders keep their holds.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::events::{LeaveReason, LockEvent};
use crate::queue::{EntryGrants, Holder, Lock, Waiter};
use crate::sessions::Session;
use crate::types::{validate_mode, validate_name};
use crate::usage::Usage;
use crate::{
    Applied, Command, Event, Limits, LockError, LockMode, Outcome, Proposal, Response, SessionId,
};

/// Serialized through [`crate::stored::StoredTable`], which leaves out
/// the derived counters and indexes: they are rebuilt on load, so they can
/// never disagree with the data they index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "crate::stored::StoredTable")]
pub struct LockTable {
    /// Greatest proposal time seen; applied time never runs backwards even
    /// if a new leader's clock is behind the old one's.
    pub(crate) now_ms: u64,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    pub(crate) locks: BTreeMap<String, Lock>,
    /// Locks in lock-delay, by the time they become grantable again.
    pub(crate) delayed: BTreeSet<(u64, String)>,
    /// The quotas enforced, set by [`Command::SetLimits`].
    pub(crate) limits: Limits,
    /// Derived: how much of each quota is in use.
    pub(crate) usage: Usage,
}

/// What one entry's commands share while they are applied.
struct EntryApply {
    index: u64,
    events: Vec<Event>,
    changes: Vec<LockEvent>,
    grants: EntryGrants,
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the proposal found at log `index`. Deterministic: the same
    /// table and the same (index, proposal) always give the same result.
    pub fn apply(&mut self, index: u64, proposal: &Proposal) -> Applied {
        self.apply_with_events(index, proposal).0
    }

    /// [`LockTable::apply`], also returning every change the entry made to
    /// holders and queues, in order (see [`LockEvent`]).
    pub fn apply_with_events(
        &mut self,
        index: u64,
        proposal: &Proposal,
    ) -> (Applied, Vec<LockEvent>) {
        self.now_ms = self.now_ms.max(proposal.time_ms);
        let mut entry = EntryApply {
            index,
            events: Vec::new(),
            changes: Vec::new(),
            grants: EntryGrants::default(),
        };
        let mut responses = Vec::with_capacity(proposal.commands.len());
        for command in &proposal.commands {
            // A caller who does not own the session is refused before the
            // retry memory is read: it must not learn a remembered answer,
            // and its refusal is not remembered for the owner's retry.
            let response = match self.check_owner(command) {
                Ok(()) => self.answer(&mut entry, command),
                Err(refusal) => Err(refusal),
            };
            responses.push(response);
        }
        // Lock-delays that ran out are settled by whichever entry comes
        // next, so a free lock never sits with waiters past its delay.
        self.tick(&mut entry);
        let applied = Applied {
            responses,
            events: entry.events,
        };
        (applied, entry.changes)
    }

    /// A numbered request's remembered answer if it is a retry, else the
    /// answer of applying it now (remembered for its retries).
    fn answer(&mut self, entry: &mut EntryApply, command: &Command) -> Response {
        let request = command.request_id().filter(|(_, seq)| *seq != 0);
        if let Some(first_answer) =
            request.and_then(|(session, seq)| self.remembered(session, seq, command))
        {
            return first_answer;
        }
        let response = self.execute(entry, command);
        // A quota refusal changed nothing, so a retry may as well run
        // afresh (and succeed if room was made meanwhile); not remembering
        // it keeps a client that hammers a full quota from churning its
        // retry memory, and keeps the refusal truly change-free.
        let refused_for_quota = matches!(response, Err(LockError::QuotaExceeded { .. }));
        if let Some((session, seq)) = request.filter(|_| !refused_for_quota) {
            self.remember(session, seq, command.request_digest(), &response);
        }
        response
    }

    fn execute(&mut self, entry: &mut EntryApply, command: &Command) -> Response {
        match command {
            Command::OpenSession {
                session,
                label,
                ttl_ms,
                lock_delay_ms,
            } => self.open_session(*session, label, *ttl_ms, *lock_delay_ms, None),
            Command::OpenSessionOwned {
                session,
                label,
                ttl_ms,
                lock_delay_ms,
                owner,
            } => self.open_session(
                *session,
                label,
                *ttl_ms,
                *lock_delay_ms,
                Some(owner.clone()),
            ),
            // The owner was checked before; nesting is refused there.
            Command::AsSession { command, .. } => self.execute(entry, command),
            Command::CloseSession { session, .. } => self.end_session(entry, *session, false),
            Command::ExpireSession { session } => self.end_session(entry, *session, true),
            Command::Acquire {
                session,
                name,
                wait,
                ..
            } => self.acquire(entry, *session, name, *wait, LockMode::Exclusive),
            Command::AcquireWith {
                session,
                name,
                wait,
                mode,
                ..
            } => self.acquire(entry, *session, name, *wait, *mode),
            Command::Release { session, name, .. } => self.release(entry, *session, name),
            Command::CancelWait { session, name, .. } => self.cancel_wait(entry, *session, name),
            Command::Tick => Ok(Outcome::Ticked),
            Command::SetLimits(limits) => {
                limits.validate()?;
                self.limits = *limits;
                Ok(Outcome::LimitsSet)
            }
        }
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
            .remove_session(session)
            .ok_or(LockError::UnknownSession(session))?;
        let available_at = if expired {
            self.now_ms.saturating_add(s.lock_delay_ms)
        } else {
            0
        };
        let reason = if expired {
            LeaveReason::SessionExpired
        } else {
            LeaveReason::SessionClosed
        };
        for name in &s.waiting {
            if self.with_lock(name, |lock| lock.remove_waiter(session)) == Some(true) {
                entry.changes.push(LockEvent::LeftQueue {
                    name: name.clone(),
                    session,
                    reason,
                });
            }
        }
        for name in &s.held {
            let Some(holder) = self
                .with_lock(name, |lock| lock.remove_holder(session))
                .flatten()
            else {
                continue;
            };
            let (name, token) = (name.clone(), holder.token);
            if !expired {
                entry.changes.push(LockEvent::Released {
                    name,
                    session,
                    token,
                });
                continue;
            }
            if available_at > self.now_ms {
                self.delay(&name, available_at);
            }
            let available_at_ms = self.locks.get(&name).map_or(0, |l| l.available_at_ms);
            entry.events.push(Event::Lost {
                session,
                name: name.clone(),
                token,
            });
            entry.changes.push(LockEvent::Expired {
                name,
                session,
                token,
                available_at_ms,
            });
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
        mode: LockMode,
    ) -> Response {
        validate_name(name)?;
        validate_mode(mode)?;
        if !self.sessions.contains_key(&session) {
            return Err(LockError::UnknownSession(session));
        }
        if let Some(answer) = self.asked_before(name, session, mode) {
            return answer;
        }
        let now = self.now_ms;
        let lock = self.locks.get(name);
        let grantable = lock.is_none_or(|lock| {
            lock.waiters.is_empty() && lock.admits(mode) && now >= lock.available_at_ms
        }) && entry.grants.allows(name, mode);
        if !grantable && !wait {
            let holder = lock.and_then(|l| l.holders.first()).map(|h| h.session);
            let available_at_ms = lock.map_or(0, |l| l.available_at_ms);
            let holder = holder.map(|h| (h, self.label_of(h)));
            self.drop_if_idle(name);
            return Ok(Outcome::Busy {
                holder,
                available_at_ms,
            });
        }
        // Every refusal comes before the first change.
        self.check_name_quota(name)?;
        self.check_claim_quota(session, name, !grantable)?;
        self.ensure_lock(name);
        if grantable {
            self.grant(entry, name, session, mode);
            return Ok(Outcome::Granted {
                token: entry.index,
                reentrant: false,
            });
        }
        let waiter = Waiter { session, mode };
        let position = self
            .with_lock(name, |lock| lock.push_waiter(waiter))
            .unwrap_or_default();
        self.with_session(session, |s| s.waiting.insert(name.to_owned()));
        entry.changes.push(LockEvent::Queued {
            name: name.to_owned(),
            session,
            mode,
        });
        // Admitted but held back because of a grant earlier in this entry:
        // this makes the name due for the next entry.
        self.promote(entry, name);
        Ok(Outcome::Queued { position })
    }

    /// The answer to an acquire by a session that already holds or waits
    /// for `name` (the same answer again, or a refusal of another mode),
    /// or to one that asks for it as another kind than it is in use as.
    fn asked_before(&self, name: &str, session: SessionId, mode: LockMode) -> Option<Response> {
        let lock = self.locks.get(name)?;
        if let Some(in_use_as) = lock.kind().filter(|kind| *kind != mode.kind()) {
            return Some(Err(LockError::ModeConflict {
                name: name.to_owned(),
                in_use_as,
                asked: mode,
            }));
        }
        if let Some(h) = lock.holding(session) {
            if h.mode == mode {
                return Some(Ok(Outcome::Granted {
                    token: h.token,
                    reentrant: true,
                }));
            }
            return Some(Err(own_conflict(name, h.mode, mode, false)));
        }
        let (position, w) = lock.waiting(session)?;
        if w.mode == mode {
            return Some(Ok(Outcome::Queued { position }));
        }
        Some(Err(own_conflict(name, w.mode, mode, true)))
    }

    fn release(&mut self, entry: &mut EntryApply, session: SessionId, name: &str) -> Response {
        validate_name(name)?;
        if !self.sessions.contains_key(&session) {
            return Err(LockError::UnknownSession(session));
        }
        let Some(removed) = self.with_lock(name, |lock| lock.remove_holder(session)) else {
            return Err(LockError::NotHeld {
                name: name.to_owned(),
            });
        };
        let Some(holder) = removed else {
            let other = self.locks.get(name).and_then(|l| l.holders.first());
            let Some(other) = other.map(|h| h.session) else {
                return Err(LockError::NotHeld {
                    name: name.to_owned(),
                });
            };
            return Err(LockError::NotHolder {
                name: name.to_owned(),
                holder_label: self.label_of(other),
                holder_session: other,
            });
        };
        self.with_session(session, |s| s.held.remove(name));
        entry.changes.push(LockEvent::Released {
            name: name.to_owned(),
            session,
            token: holder.token,
        });
        self.promote(entry, name);
        Ok(Outcome::Released)
    }

    fn cancel_wait(&mut self, entry: &mut EntryApply, session: SessionId, name: &str) -> Response {
        validate_name(name)?;
        self.with_session(session, |s| s.waiting.remove(name))
            .ok_or(LockError::UnknownSession(session))?;
        let Some(lock) = self.locks.get(name) else {
            return Ok(Outcome::WaitCancelled);
        };
        // The grant may have raced ahead of the cancel: then the caller holds it.
        if let Some(h) = lock.holding(session) {
            return Ok(Outcome::Granted {
                token: h.token,
                reentrant: true,
            });
        }
        if self.with_lock(name, |lock| lock.remove_waiter(session)) == Some(true) {
            entry.changes.push(LockEvent::LeftQueue {
                name: name.to_owned(),
                session,
                reason: LeaveReason::Cancelled,
            });
            // A writer leaving the front may let the readers behind it in.
            self.promote(entry, name);
        }
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
        // Collected first: a name held back for the next entry goes back
        // into `delayed` while this loop runs.
        for name in due {
            self.promote(entry, &name);
        }
    }

    /// Grants the front of the queue for as long as the holders admit it
    /// and the lock-delay is over; forgets the lock if nobody holds or
    /// wants it any more.
    fn promote(&mut self, entry: &mut EntryApply, name: &str) {
        let now = self.now_ms;
        loop {
            let Some(lock) = self.locks.get(name) else {
                return;
            };
            let Some(next) = lock.waiters.first().cloned() else {
                break;
            };
            if now < lock.available_at_ms || !lock.admits(next.mode) {
                break;
            }
            if !entry.grants.allows(name, next.mode) {
                // Granting now would break the token rule: due at once, so
                // the next entry (the leader proposes a Tick for it) grants it.
                self.delay(name, now);
                break;
            }
            self.with_lock(name, |lock| lock.remove_waiter(next.session));
            self.grant(entry, name, next.session, next.mode);
            entry.events.push(Event::Granted {
                session: next.session,
                name: name.to_owned(),
                token: entry.index,
            });
        }
        self.drop_if_idle(name);
    }

    /// Makes `session` a holder of `name` (which the holders admit), with
    /// this entry's index as its token.
    fn grant(&mut self, entry: &mut EntryApply, name: &str, session: SessionId, mode: LockMode) {
        let holder = Holder {
            session,
            mode,
            token: entry.index,
            since_ms: self.now_ms,
        };
        let delayed_until = self.with_lock(name, |lock| {
            lock.push_holder(holder);
            std::mem::take(&mut lock.available_at_ms)
        });
        if let Some(at) = delayed_until.filter(|at| *at > 0) {
            self.delayed.remove(&(at, name.to_owned()));
        }
        entry.grants.record(name, mode);
        entry.changes.push(LockEvent::Granted {
            name: name.to_owned(),
            session,
            mode,
            token: entry.index,
        });
        self.with_session(session, |s| {
            s.waiting.remove(name);
            s.held.insert(name.to_owned());
        });
    }

    /// Makes `name` grantable no earlier than `at` (keeping any later time
    /// it already has), and due in `delayed` then.
    fn delay(&mut self, name: &str, at: u64) {
        let Some(lock) = self.locks.get_mut(name) else {
            return;
        };
        let old = lock.available_at_ms;
        if old > 0 {
            self.delayed.remove(&(old, name.to_owned()));
        }
        lock.available_at_ms = old.max(at);
        self.delayed.insert((lock.available_at_ms, name.to_owned()));
    }

    fn drop_if_idle(&mut self, name: &str) {
        let now = self.now_ms;
        if let Some(lock) = self.locks.get(name) {
            if lock.is_idle() {
                if lock.available_at_ms > now {
                    return;
                }
                let at = lock.available_at_ms;
                self.remove_lock(name);
                if at > 0 {
                    self.delayed.remove(&(at, name.to_owned()));
                }
            }
        }
    }
}

fn own_conflict(name: &str, current: LockMode, asked: LockMode, waiting: bool) -> LockError {
    LockError::OwnModeConflict {
        name: name.to_owned(),
        current,
        asked,
        waiting,
    }
}
