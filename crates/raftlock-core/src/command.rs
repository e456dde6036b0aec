//! What goes into the replicated log, and what comes out of applying it.

use serde::{Deserialize, Serialize};

use crate::{Limits, LockKind, LockMode, Quota, SecretHash, SessionId, SessionOwner};

/// One replicated log entry's payload: the commands the leader gathered
/// while its previous entry was being written, plus its wall-clock time,
/// so every replica sees the same "now". Batching many commands into one
/// entry is what makes one fsync serve many clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub time_ms: u64,
    pub commands: Vec<Command>,
}

impl Proposal {
    /// An entry carrying a single command.
    pub fn single(time_ms: u64, command: Command) -> Self {
        Proposal {
            time_ms,
            commands: vec![command],
        }
    }
}

/// A change to the lock table. Commands that carry a `seq` are client
/// requests: a retry with the same (session, seq) returns the first
/// answer instead of applying twice. `seq == 0` opts out of dedup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    OpenSession {
        session: SessionId,
        label: String,
        ttl_ms: u64,
        lock_delay_ms: u64,
    },
    CloseSession {
        session: SessionId,
        seq: u64,
    },
    /// Proposed by the leader when a session's keepalive deadline passes.
    ExpireSession {
        session: SessionId,
    },
    Acquire {
        session: SessionId,
        seq: u64,
        name: String,
        wait: bool,
    },
    Release {
        session: SessionId,
        seq: u64,
        name: String,
    },
    /// Leave a lock's wait queue (the client's wait timed out).
    CancelWait {
        session: SessionId,
        seq: u64,
        name: String,
    },
    /// Proposed by the leader when a lock-delay ends, to grant waiters.
    Tick,
    /// An acquire that names its mode. Appended after the others so log
    /// entries written before modes existed still decode: their
    /// [`Command::Acquire`] means this with [`LockMode::Exclusive`].
    AcquireWith {
        session: SessionId,
        seq: u64,
        name: String,
        wait: bool,
        mode: LockMode,
    },
    /// Opens a session bound to its opener: only `owner` may act as it.
    /// Appended (like [`Command::AsSession`]) so older entries still decode.
    OpenSessionOwned {
        session: SessionId,
        label: String,
        ttl_ms: u64,
        lock_delay_ms: u64,
        owner: SessionOwner,
    },
    /// `command` (a close, acquire, release or cancel), sent by the caller
    /// with this principal and secret hash. Applied only if the session it
    /// names is owned by that caller (or has no owner); otherwise refused
    /// with [`LockError::NotSessionOwner`], changing and remembering nothing.
    AsSession {
        principal: String,
        secret_hash: SecretHash,
        #[serde(deserialize_with = "wrapped::deserialize")]
        command: Box<Command>,
    },
    /// Proposed by the leader: the quotas every replica enforces from this
    /// entry on (see [`crate::Limits`]). Appended so older entries decode.
    SetLimits(Limits),
}

impl Command {
    /// The (session, seq) pair used for retry dedup, if this is a client request.
    pub fn request_id(&self) -> Option<(SessionId, u64)> {
        match self {
            Command::CloseSession { session, seq }
            | Command::Acquire { session, seq, .. }
            | Command::AcquireWith { session, seq, .. }
            | Command::Release { session, seq, .. }
            | Command::CancelWait { session, seq, .. } => Some((*session, *seq)),
            Command::AsSession { command, .. } => command.request_id(),
            _ => None,
        }
    }

    /// What a numbered request asks for, reduced to 64 bits: its kind and
    /// arguments without the (session, seq) that identify it. The table
    /// keeps it beside each remembered answer, so that a seq reused for a
    /// different request is refused instead of being handed the first
    /// request's answer. It is stored in snapshots and compared across
    /// replicas and versions: the encoding below must never change.
    /// An exclusive [`Command::AcquireWith`] asks what [`Command::Acquire`]
    /// asks, so it has the same digest.
    pub fn request_digest(&self) -> u64 {
        let mut digest = Fnv1a::new();
        match self {
            // Who sends a request does not change what it asks.
            Command::AsSession { command, .. } => return command.request_digest(),
            Command::CloseSession { .. } => digest.write(&[1]),
            Command::Acquire { name, wait, .. }
            | Command::AcquireWith {
                name,
                wait,
                mode: LockMode::Exclusive,
                ..
            } => {
                digest.write(&[2, u8::from(*wait)]);
                digest.write(name.as_bytes());
            }
            Command::AcquireWith {
                name, wait, mode, ..
            } => {
                digest.write(&[5, u8::from(*wait)]);
                match mode {
                    LockMode::Semaphore { limit } => {
                        digest.write(&[2]);
                        digest.write(&limit.to_le_bytes());
                    }
                    _ => digest.write(&[1]),
                }
                digest.write(name.as_bytes());
            }
            Command::Release { name, .. } => {
                digest.write(&[3]);
                digest.write(name.as_bytes());
            }
            Command::CancelWait { name, .. } => {
                digest.write(&[4]);
                digest.write(name.as_bytes());
            }
            Command::OpenSession { .. }
            | Command::OpenSessionOwned { .. }
            | Command::ExpireSession { .. }
            | Command::Tick
            | Command::SetLimits(_) => digest.write(&[0]),
        }
        digest.finish()
    }

    /// A short description for error messages: what a request asked.
    pub fn describe(&self) -> String {
        match self {
            Command::OpenSession { .. } | Command::OpenSessionOwned { .. } => {
                "open a session".into()
            }
            Command::AsSession { command, .. } => command.describe(),
            Command::CloseSession { .. } => "close the session".into(),
            Command::ExpireSession { .. } => "expire a session".into(),
            Command::Acquire { name, wait, .. } => {
                let how = if *wait {
                    "acquire (waiting)"
                } else {
                    "try-acquire"
                };
                format!("{how} {name:?}")
            }
            Command::AcquireWith {
                name, wait, mode, ..
            } => {
                let how = if *wait {
                    "acquire (waiting)"
                } else {
                    "try-acquire"
                };
                format!("{how} {name:?} as {mode}")
            }
            Command::Release { name, .. } => format!("release {name:?}"),
            Command::CancelWait { name, .. } => format!("leave the queue of {name:?}"),
            Command::Tick => "tick".into(),
            Command::SetLimits(_) => "set the quotas".into(),
        }
    }
}

/// Decoding the command inside [`Command::AsSession`]: a wrapped command
/// may not wrap another. [`LockTable::apply`](crate::LockTable::apply)
/// refuses nesting anyway, but a log entry or a peer's message nesting
/// millions deep would overflow the stack while it is decoded, before
/// apply ever sees it.
mod wrapped {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer};

    use super::Command;

    thread_local! {
        static INSIDE: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Command>, D::Error> {
        if INSIDE.with(Cell::get) {
            return Err(serde::de::Error::custom(
                "a session command may not wrap another",
            ));
        }
        INSIDE.with(|inside| inside.set(true));
        let decoded = Command::deserialize(d);
        INSIDE.with(|inside| inside.set(false));
        decoded.map(Box::new)
    }
}

/// 64-bit FNV-1a: tiny, fixed forever, and the same on every platform,
/// which is all [`Command::request_digest`] needs (it guards against
/// mistakes, not against an adversary: a client can only confuse itself).
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A successful result of applying a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    SessionOpened {
        session: SessionId,
        ttl_ms: u64,
    },
    /// The session ended; `released` lists the locks it held.
    SessionEnded {
        released: Vec<String>,
    },
    /// The caller holds the lock. `token` is the log index of the granting
    /// entry (readers or semaphore holders granted by one entry share it; an
    /// exclusive grant is the only grant of its name in its entry);
    /// `reentrant` says the caller already held it before this call.
    Granted {
        token: u64,
        reentrant: bool,
    },
    /// The caller is in the wait queue, `position` waiters from the front (0 = next).
    Queued {
        position: usize,
    },
    /// Try-lock failed: someone holds it, or it is in its lock-delay.
    /// `holder` is the first holder whose hold is in the way, if any.
    Busy {
        holder: Option<(SessionId, String)>,
        available_at_ms: u64,
    },
    Released,
    WaitCancelled,
    Ticked,
    /// Appended: [`Command::SetLimits`] applied.
    LimitsSet,
}

/// Why a command was refused. Refusals change nothing in the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LockError {
    #[error("invalid lock name: {0}")]
    InvalidName(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("malformed session id {0:?}")]
    InvalidSession(String),
    #[error("session {0} is unknown or has expired")]
    UnknownSession(SessionId),
    #[error("session id {0} is already in use")]
    SessionExists(SessionId),
    #[error(
        "lock {name:?} is held by {holder_label:?} (session {holder_session}), not by the caller"
    )]
    NotHolder {
        name: String,
        holder_label: String,
        holder_session: SessionId,
    },
    #[error("lock {name:?} is not held by anyone")]
    NotHeld { name: String },
    #[error("request {seq} is older than the retry window (oldest remembered is {oldest})")]
    StaleRequest { seq: u64, oldest: u64 },
    #[error(
        "request number {seq} of session {session} was already used for a different request \
         than this one ({request}); a retry must repeat its request exactly, and each new \
         request needs a new number"
    )]
    SeqReused {
        session: SessionId,
        seq: u64,
        request: String,
    },
    /// The name is in use as another kind of lock (a semaphore asked for as
    /// a read/write lock, or with a different limit, or the reverse). Holds
    /// only while anyone holds or waits: an idle name takes any kind.
    #[error("lock {name:?} is in use as {in_use_as}; it cannot be acquired as {asked}")]
    ModeConflict {
        name: String,
        in_use_as: LockKind,
        asked: LockMode,
    },
    /// The caller already holds (or waits for) the name in another mode.
    /// There are no upgrades or downgrades: two readers that both waited to
    /// become the writer would wait for each other forever.
    #[error(
        "the caller already {} lock {name:?} as {current}, so it cannot ask for it as {asked}; \
         release it first",
        if *waiting { "waits for" } else { "holds" }
    )]
    OwnModeConflict {
        name: String,
        current: LockMode,
        asked: LockMode,
        waiting: bool,
    },
    /// Appended: refusals are kept in snapshots' retry memory, so the
    /// variants before it keep their places. The caller is not the principal that opened the session, or did
    /// not send its secret. Says what was refused, never the secret.
    #[error("session {session} belongs to another caller: {request} needs the session's secret")]
    NotSessionOwner { session: SessionId, request: String },
    /// Appended. A quota is reached; `detail` says whose (the session, the
    /// principal or the name). Nothing changed.
    #[error("quota {quota} reached ({used} of {limit}{detail}); raise it with {flag}", flag = quota.flag())]
    QuotaExceeded {
        quota: Quota,
        limit: u64,
        used: u64,
        detail: String,
    },
}

pub type Response = Result<Outcome, LockError>;

/// Something that happened to a session other than the caller's own
/// answer: a waiter granted by someone else's release, a lock lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Granted {
        session: SessionId,
        name: String,
        token: u64,
    },
    Lost {
        session: SessionId,
        name: String,
        token: u64,
    },
    SessionEnded {
        session: SessionId,
        expired: bool,
    },
}

/// The full result of applying one entry: one response per command, in
/// order, and what happened to other sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub responses: Vec<Response>,
    pub events: Vec<Event>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    fn wrap(command: Command) -> Command {
        Command::AsSession {
            principal: "p".into(),
            secret_hash: SecretHash([7; 32]),
            command: Box::new(command),
        }
    }

    #[test]
    fn a_wrapped_command_decodes_but_a_doubly_wrapped_one_does_not() {
        let inner = Command::Release {
            session: SessionId(1),
            seq: 2,
            name: "n".into(),
        };
        let once = wrap(inner.clone());
        let bytes = bincode::serialize(&once).unwrap();
        assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), once);

        let twice = bincode::serialize(&wrap(wrap(inner))).unwrap();
        let err = bincode::deserialize::<Command>(&twice).unwrap_err();
        assert!(err.to_string().contains("may not wrap another"), "{err}");
        // The guard is reset after a refusal: the next decode works.
        assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), once);
    }

    #[test]
    fn nesting_a_million_deep_is_refused_without_recursing() {
        // Variant 9 (AsSession), empty principal, a hash, repeated.
        let mut level = Vec::new();
        level.extend_from_slice(&9u32.to_le_bytes());
        level.extend_from_slice(&0u64.to_le_bytes());
        level.extend_from_slice(&[0; 32]);
        let bytes = level.repeat(1_000_000);
        assert!(bincode::deserialize::<Command>(&bytes).is_err());
    }
}
