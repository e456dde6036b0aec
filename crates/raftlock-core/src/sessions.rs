//! Sessions: who may hold locks, and the per-session memory of recent
//! answers that makes a retried request safe.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::table::LockTable;
use crate::types::{validate_label, validate_lock_delay, validate_ttl};
use crate::{Command, LockError, Outcome, Response, SessionId, SessionOwner, DEDUP_WINDOW};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) label: String,
    pub(crate) ttl_ms: u64,
    pub(crate) lock_delay_ms: u64,
    pub(crate) held: BTreeSet<String>,
    pub(crate) waiting: BTreeSet<String>,
    /// Answers to the most recent requests, oldest first.
    pub(crate) recent: VecDeque<Remembered>,
    /// Highest seq evicted from `recent`; older retries are refused.
    pub(crate) evicted_through: u64,
    /// Who may act as this session; `None` for a session opened before
    /// sessions had owners (anyone may, until it ends).
    pub(crate) owner: Option<SessionOwner>,
}

/// A numbered request's first answer, and what that request asked
/// ([`Command::request_digest`]) so a different request with the same
/// number cannot be handed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    pub(crate) seq: u64,
    pub(crate) digest: u64,
    pub(crate) response: Response,
}

impl Session {
    /// Who opened it, for the per-principal quota: "" when it has no
    /// owner (opened without one, or before sessions had owners).
    pub(crate) fn principal(&self) -> &str {
        self.owner.as_ref().map_or("", |o| o.principal.as_str())
    }

    /// Checks the settings a session from outside (a snapshot) carries.
    pub(crate) fn check(&self, id: SessionId) -> Result<(), String> {
        validate_ttl(self.ttl_ms)
            .and_then(|()| validate_lock_delay(self.lock_delay_ms))
            .and_then(|()| validate_label(&self.label))
            .map_err(|e| format!("session {id}: {e}"))?;
        if self.recent.len() > DEDUP_WINDOW {
            return Err(format!(
                "session {id} remembers {} answers",
                self.recent.len()
            ));
        }
        Ok(())
    }
}

impl LockTable {
    pub(crate) fn open_session(
        &mut self,
        session: SessionId,
        label: &str,
        ttl_ms: u64,
        lock_delay_ms: u64,
        owner: Option<SessionOwner>,
    ) -> Response {
        validate_ttl(ttl_ms)?;
        validate_label(label)?;
        validate_lock_delay(lock_delay_ms)?;
        if self.sessions.contains_key(&session) {
            return Err(LockError::SessionExists(session));
        }
        let principal = owner.as_ref().map_or("", |o| o.principal.as_str());
        self.check_open_quota(principal)?;
        self.insert_session(
            session,
            Session {
                label: label.to_owned(),
                ttl_ms,
                lock_delay_ms,
                held: BTreeSet::new(),
                waiting: BTreeSet::new(),
                recent: VecDeque::new(),
                evicted_through: 0,
                owner,
            },
        );
        Ok(Outcome::SessionOpened { session, ttl_ms })
    }

    /// A retried request's first answer; a refusal if its number is too
    /// old to know or was first used for a different request.
    pub(crate) fn remembered(
        &self,
        session: SessionId,
        seq: u64,
        command: &Command,
    ) -> Option<Response> {
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

    pub(crate) fn remember(
        &mut self,
        session: SessionId,
        seq: u64,
        digest: u64,
        response: &Response,
    ) {
        self.with_session(session, |s| {
            if s.recent.len() >= DEDUP_WINDOW {
                if let Some(old) = s.recent.pop_front() {
                    s.evicted_through = s.evicted_through.max(old.seq);
                }
            }
            s.recent.push_back(Remembered {
                seq,
                digest,
                response: response.clone(),
            });
        });
    }

    pub(crate) fn label_of(&self, session: SessionId) -> String {
        self.sessions
            .get(&session)
            .map(|s| s.label.clone())
            .unwrap_or_default()
    }
}
