//! Identifiers and input limits shared by every layer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::LockError;

/// Longest lock name accepted, in bytes. Any byte sequence that is valid
/// UTF-8 is a valid name (`:` included), as long as it is non-empty.
pub const MAX_NAME_LEN: usize = 512;
/// Longest free-text client label, in bytes.
pub const MAX_LABEL_LEN: usize = 256;
/// Session TTL bounds: long enough to survive an election, short enough
/// that a dead client's locks come back within the hour.
pub const MIN_TTL_MS: u64 = 1_000;
pub const MAX_TTL_MS: u64 = 3_600_000;
/// Longest lock-delay a session may ask for (Chubby uses up to a minute).
pub const MAX_LOCK_DELAY_MS: u64 = 60_000;
/// How many recent responses each session remembers for retried requests.
pub const DEDUP_WINDOW: usize = 64;
/// Largest semaphore limit accepted: far more holders than any real pool,
/// small enough that a name's holder list stays a reasonable size.
pub const MAX_SEMAPHORE_LIMIT: u32 = 65_536;

/// How a session asks to hold a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockMode {
    /// The only holder (a write lock). What every acquire was before modes existed.
    Exclusive,
    /// One of any number of readers; excludes exclusive holders.
    Shared,
    /// One of at most `limit` holders of a counting semaphore.
    Semaphore { limit: u32 },
}

impl LockMode {
    /// What kind of name this mode belongs to.
    pub fn kind(self) -> LockKind {
        match self {
            LockMode::Exclusive | LockMode::Shared => LockKind::ReadWrite,
            LockMode::Semaphore { limit } => LockKind::Semaphore { limit },
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockMode::Exclusive => f.write_str("exclusive"),
            LockMode::Shared => f.write_str("shared"),
            LockMode::Semaphore { limit } => write!(f, "semaphore (limit {limit})"),
        }
    }
}

/// What a name is while anyone holds or waits for it: a read/write lock
/// (exclusive and shared holders) or a semaphore with a fixed limit. The
/// first acquirer decides; the name forgets once nobody holds or waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockKind {
    ReadWrite,
    Semaphore { limit: u32 },
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKind::ReadWrite => f.write_str("a read/write lock"),
            LockKind::Semaphore { limit } => write!(f, "a semaphore with limit {limit}"),
        }
    }
}

/// A session id: 128 random bits chosen by the node that proposes the
/// session, so one client cannot guess another's id and act as its owner.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u128);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = LockError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // from_str_radix alone would take a leading '+'.
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LockError::InvalidSession(s.chars().take(64).collect()));
        }
        u128::from_str_radix(s, 16)
            .map(SessionId)
            .map_err(|_| LockError::InvalidSession(s.chars().take(64).collect()))
    }
}

pub fn validate_name(name: &str) -> Result<(), LockError> {
    if name.is_empty() {
        return Err(LockError::InvalidName("lock name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(LockError::InvalidName(format!(
            "lock name is {} bytes, the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

pub fn validate_label(label: &str) -> Result<(), LockError> {
    if label.len() > MAX_LABEL_LEN {
        return Err(LockError::InvalidArgument(format!(
            "client label is {} bytes, the limit is {MAX_LABEL_LEN}",
            label.len()
        )));
    }
    Ok(())
}

pub fn validate_ttl(ttl_ms: u64) -> Result<(), LockError> {
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        return Err(LockError::InvalidArgument(format!(
            "session TTL {ttl_ms} ms is out of range ({MIN_TTL_MS} ms .. {MAX_TTL_MS} ms)"
        )));
    }
    Ok(())
}

pub fn validate_lock_delay(delay_ms: u64) -> Result<(), LockError> {
    if delay_ms > MAX_LOCK_DELAY_MS {
        return Err(LockError::InvalidArgument(format!(
            "lock-delay {delay_ms} ms is over the limit of {MAX_LOCK_DELAY_MS} ms"
        )));
    }
    Ok(())
}

pub fn validate_mode(mode: LockMode) -> Result<(), LockError> {
    if let LockMode::Semaphore { limit } = mode {
        if !(1..=MAX_SEMAPHORE_LIMIT).contains(&limit) {
            return Err(LockError::InvalidArgument(format!(
                "semaphore limit {limit} is out of range (1 .. {MAX_SEMAPHORE_LIMIT})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_exactly_32_hex_digits() {
        let id: SessionId = "0123456789abcdefABCDEF0123456789".parse().unwrap();
        assert_eq!(id.to_string(), "0123456789abcdefabcdef0123456789");
        for bad in [
            "+123456789abcdef0123456789abcdef",
            "",
            "0x23456789abcdef0123456789abcdef",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad:?}");
        }
    }
}
