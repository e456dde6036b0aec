//! Session secrets: made when a session opens, hashed whenever a call
//! claims to act as a session.
//!
//! The opener is given 32 random bytes from the OS, as 64 lowercase hex
//! characters; the lock table keeps only their SHA-256, next to the
//! opener's principal. A call acting as the session sends the secret back
//! and is wrapped in [`Command::AsSession`], which the table applies only
//! for the owner. The secret itself is never stored, logged or returned by
//! a read.

use raftlock_core::{Command, SecretHash, SessionOwner};
use rand::RngCore;

use crate::auth::token;
use crate::caller::Caller;

/// A fresh secret for a session being opened.
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    token::to_hex(&bytes)
}

/// The hash the table keeps of `secret`: of its text exactly as sent (a
/// client echoes what it was given, so there is nothing to normalize).
pub(crate) fn hash(secret: &str) -> SecretHash {
    SecretHash(token::hash(secret))
}

/// Who a call says it is: its principal and the hash of the secret it sent.
pub(crate) struct Claim {
    pub principal: String,
    pub secret_hash: SecretHash,
}

impl Claim {
    pub fn new(caller: &Caller, secret: &str) -> Claim {
        Claim {
            principal: caller.principal.clone(),
            secret_hash: hash(secret),
        }
    }

    /// The owner a session opened with this claim gets.
    pub fn owner(&self) -> SessionOwner {
        SessionOwner {
            principal: self.principal.clone(),
            secret_hash: self.secret_hash,
        }
    }

    /// `command`, to be applied only if this claim owns its session.
    pub fn wrap(&self, command: Command) -> Command {
        Command::AsSession {
            principal: self.principal.clone(),
            secret_hash: self.secret_hash,
            command: Box::new(command),
        }
    }

    /// Whether this claim may act as a session with `owner` (none: a
    /// session opened before owners existed, which anyone may).
    pub fn owns(&self, owner: Option<&SessionOwner>) -> bool {
        match owner {
            None => true,
            Some(o) => o.admits(&self.principal, &self.secret_hash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_64_hex_characters_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
        assert!(hash(&a).matches(&hash(&a)));
        assert!(!hash(&a).matches(&hash(&b)));
    }

    #[test]
    fn a_claim_owns_only_sessions_it_opened_or_ownerless_ones() {
        let secret = new_secret();
        let alice = Caller {
            principal: "alice".into(),
            prefixes: None,
        };
        let bob = Caller {
            principal: "bob".into(),
            ..alice.clone()
        };
        let owner = Claim::new(&alice, &secret).owner();
        assert!(Claim::new(&alice, &secret).owns(Some(&owner)));
        assert!(!Claim::new(&bob, &secret).owns(Some(&owner)));
        assert!(!Claim::new(&alice, "").owns(Some(&owner)));
        assert!(!Claim::new(&alice, &secret.to_uppercase()).owns(Some(&owner)));
        assert!(Claim::new(&bob, "").owns(None));
    }
}
