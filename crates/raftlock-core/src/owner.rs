//! Who may act as a session: the principal that opened it and a hash of
//! the secret only that opener was given.
//!
//! The table never sees a secret, only its hash (the node hashes what the
//! client sends), so a copied snapshot or data directory gives nobody the
//! power to act as a session. [`Command::AsSession`] carries the caller's
//! principal and hash; the table applies its command only for the owner.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::table::LockTable;
use crate::{Command, LockError, SessionId};

/// A hash of a session's secret. Its Debug output shows no bytes: even a
/// hash has no business in logs.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Equality that takes the same time however many bytes match, so the
    /// time an answer takes does not tell a guesser how close it came.
    pub fn matches(&self, other: &SecretHash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// Who opened a session: only the same principal with the same secret may
/// act as it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOwner {
    /// The authenticated principal ("" when the node runs without
    /// authentication).
    pub principal: String,
    pub secret_hash: SecretHash,
}

impl SessionOwner {
    /// Whether a caller with `principal` and `secret_hash` is this owner.
    pub fn admits(&self, principal: &str, secret_hash: &SecretHash) -> bool {
        // Both compared always: no early exit on the principal.
        let same_secret = self.secret_hash.matches(secret_hash);
        let same_principal = self.principal == principal;
        same_secret & same_principal
    }
}

impl LockTable {
    /// Who owns `session`: `None` if there is no such session, `Some(None)`
    /// if it was opened before sessions had owners (anyone may act as it).
    pub fn session_owner(&self, session: SessionId) -> Option<Option<&SessionOwner>> {
        self.sessions.get(&session).map(|s| s.owner.as_ref())
    }

    /// Refuses an [`Command::AsSession`] whose caller does not own the
    /// session its command acts as; every other command passes. Runs
    /// before the retry memory is consulted, so a caller without the
    /// secret never learns a remembered answer.
    pub(crate) fn check_owner(&self, command: &Command) -> Result<(), LockError> {
        let Command::AsSession {
            principal,
            secret_hash,
            command: inner,
        } = command
        else {
            return Ok(());
        };
        let Some(session) = acting_session(inner) else {
            return Err(LockError::InvalidArgument(format!(
                "{} is not a request made as a session",
                inner.describe()
            )));
        };
        match self.session_owner(session) {
            // Nothing to act on: the inner command's own refusal says so.
            None => Err(LockError::UnknownSession(session)),
            Some(None) => Ok(()),
            Some(Some(owner)) if owner.admits(principal, secret_hash) => Ok(()),
            Some(Some(_)) => Err(LockError::NotSessionOwner {
                session,
                request: inner.describe(),
            }),
        }
    }
}

/// The session a command acts as, if it is one that may be sent as a
/// session ([`Command::AsSession`] wraps nothing else).
fn acting_session(command: &Command) -> Option<SessionId> {
    match command {
        Command::CloseSession { session, .. }
        | Command::Acquire { session, .. }
        | Command::AcquireWith { session, .. }
        | Command::Release { session, .. }
        | Command::CancelWait { session, .. } => Some(*session),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_only_itself_and_never_prints_its_bytes() {
        let a = SecretHash([7; 32]);
        let mut b = a;
        assert!(a.matches(&b));
        b.0[31] ^= 1;
        assert!(!a.matches(&b));
        assert_eq!(format!("{a:?}"), "SecretHash(..)");
        let owner = SessionOwner {
            principal: "alice".into(),
            secret_hash: a,
        };
        assert!(owner.admits("alice", &a));
        assert!(!owner.admits("bob", &a));
        assert!(!owner.admits("alice", &b));
        assert!(!format!("{owner:?}").contains('7'));
    }
}
