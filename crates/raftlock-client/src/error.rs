//! Client errors, one variant per thing a caller may want to handle.

use raftlock_proto::ErrorKind;
use tonic::{Code, Status};

use crate::reader::Reader;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Try-lock failed or the wait ran out. `holder` is the holder's label.
    #[error("lock {name:?} not acquired{}", holder.as_ref().map(|h| format!(": held by {h:?}")).unwrap_or_default())]
    NotAcquired {
        name: String,
        holder: Option<String>,
    },
    /// Release by a session that does not hold the lock: who does.
    #[error(
        "lock {name:?} is held by {holder_label:?} (session {holder_session}), not by the caller"
    )]
    NotHolder {
        name: String,
        holder_label: String,
        holder_session: String,
    },
    /// Release of a lock nobody holds.
    #[error("lock {name:?} is not held by anyone")]
    NotHeld { name: String },
    /// The name is in use in another mode (a semaphore asked for as a
    /// read/write lock, another semaphore limit, or the reverse), or this
    /// session already holds or waits for it in another mode. The server's
    /// message says which.
    #[error("{0}")]
    ModeConflict(String),
    /// The call acted as a session it does not own: another principal
    /// opened it, or the session's secret was missing or wrong. Nothing
    /// changed; retrying cannot help. `message` is the server's words.
    #[error("{message}")]
    NotSessionOwner { session_id: String, message: String },
    /// The session expired (or was closed): its locks are gone.
    #[error("session lost: {0}")]
    SessionLost(String),
    /// A request number older than the session's retry window: the
    /// outcome of that request is no longer known. (Shown with its gRPC
    /// code first, as before it had a variant of its own.)
    #[error("FailedPrecondition: request {seq} is older than the retry window (oldest remembered is {oldest})")]
    StaleRequest { seq: u64, oldest: u64 },
    /// Opening a session under an id that is taken.
    #[error("AlreadyExists: session id {session_id} is already in use")]
    SessionExists { session_id: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A quota of the cluster is reached (the message names it and the
    /// server flag that raises it). Not retried: it holds until something
    /// is released, closed or expires.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// No node could serve the request within the retry period.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The cluster did not accept the caller: no token, or one its auth
    /// file does not hold. Never retried.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but its role or lock-name prefixes do not
    /// allow the call. Never retried.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The TLS handshake failed: the node's certificate is not from the
    /// CA the client trusts, or one side is not speaking TLS. Never retried.
    #[error("TLS: {0}")]
    Tls(String),
    /// The client's own credentials cannot be used (a missing CA file, a
    /// token file others can read, half a certificate): nothing was sent.
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Other(String),
}

/// What to check when the cluster does not accept the token.
const TOKEN_HINT: &str =
    "check the token (--auth-token-file, RAFTLOCK_AUTH_TOKEN_FILE, or the profile's token file) \
     against the cluster's auth file";

impl Error {
    pub(crate) fn from_status(status: &Status) -> Error {
        let code = status.code();
        let message = status.message().to_string();
        // A refusal with fields, read from the message, and whether it is
        // shown as the bare message or after its code.
        let (refusal, bare) = match (code, ErrorKind::of(status)) {
            (Code::PermissionDenied, Some(ErrorKind::NotSessionOwner)) => {
                return not_session_owner(message)
            }
            (Code::PermissionDenied, Some(ErrorKind::NotHolder)) => (not_holder(&message), true),
            // The auth layer's refusal, and a name outside the caller's
            // prefixes: no kind, nothing a retry changes. (A server from
            // before kinds sent a bare not-holder refusal.)
            (Code::PermissionDenied, None) => {
                return not_holder(&message)
                    .filter(|e| e.to_string() == message)
                    .unwrap_or(Error::PermissionDenied(message))
            }
            (Code::PermissionDenied, _) => (None, true),
            (Code::Unauthenticated, _) => {
                return Error::Unauthenticated(format!("{message}; {TOKEN_HINT}"))
            }
            (Code::FailedPrecondition, Some(ErrorKind::NotHeld)) => (not_held(&message), true),
            (Code::FailedPrecondition, Some(ErrorKind::StaleRequest)) => {
                (stale_request(&message), false)
            }
            (Code::AlreadyExists, Some(ErrorKind::SessionExists)) => {
                (session_exists(&message), false)
            }
            (Code::FailedPrecondition, Some(ErrorKind::ModeConflict)) => {
                return Error::ModeConflict(message)
            }
            (Code::NotFound, Some(ErrorKind::SessionExpired)) => {
                return Error::SessionLost(message)
            }
            (Code::ResourceExhausted, Some(ErrorKind::QuotaExceeded)) => {
                return Error::QuotaExceeded(message)
            }
            (Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted, _) => {
                // The server's text may already say so; our Display adds it.
                let message = message
                    .strip_prefix("invalid argument: ")
                    .unwrap_or(&message);
                return Error::InvalidArgument(message.to_string());
            }
            (Code::Unavailable, _) => return Error::Unavailable(message),
            _ => (None, false),
        };
        let shown = if bare {
            message
        } else {
            format!("{code:?}: {message}")
        };
        // Fields are only believed if they say exactly what the server
        // did; a message worded otherwise (another server version) is
        // passed on as it came.
        match refusal {
            Some(error) if error.to_string() == shown => error,
            _ => Error::Other(shown),
        }
    }
}

/// `lock "NAME" is held by "LABEL" (session SESSION), not by the caller`
fn not_holder(message: &str) -> Option<Error> {
    let mut r = Reader::new(message);
    r.literal("lock ")?;
    let name = r.quoted()?;
    r.literal(" is held by ")?;
    let holder_label = r.quoted()?;
    r.literal(" (session ")?;
    let holder_session = r.word(')')?.to_string();
    r.literal("), not by the caller")?;
    r.end()?;
    Some(Error::NotHolder {
        name,
        holder_label,
        holder_session,
    })
}

/// `session SESSION belongs to another caller: ...`: the session is read
/// if the message names it; the message is kept whole either way.
fn not_session_owner(message: String) -> Error {
    let session_id = message
        .strip_prefix("session ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_string();
    Error::NotSessionOwner {
        session_id,
        message,
    }
}

/// `lock "NAME" is not held by anyone`
fn not_held(message: &str) -> Option<Error> {
    let mut r = Reader::new(message);
    r.literal("lock ")?;
    let name = r.quoted()?;
    r.literal(" is not held by anyone")?;
    r.end()?;
    Some(Error::NotHeld { name })
}

/// `request SEQ is older than the retry window (oldest remembered is OLDEST)`
fn stale_request(message: &str) -> Option<Error> {
    let mut r = Reader::new(message);
    r.literal("request ")?;
    let seq = r.number()?;
    r.literal(" is older than the retry window (oldest remembered is ")?;
    let oldest = r.number()?;
    r.literal(")")?;
    r.end()?;
    Some(Error::StaleRequest { seq, oldest })
}

/// `session id SESSION is already in use`
fn session_exists(message: &str) -> Option<Error> {
    let mut r = Reader::new(message);
    r.literal("session id ")?;
    let session_id = r.word(' ')?.to_string();
    r.literal(" is already in use")?;
    r.end()?;
    Some(Error::SessionExists { session_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raftlock_core::{LockError, LockKind, LockMode, SessionId};

    /// The status a node answers with for `refusal` (as raftlock-node's
    /// `lock_error_status` makes it).
    fn answer(refusal: &LockError) -> Status {
        let (code, kind) = match refusal {
            LockError::NotHolder { .. } => (Code::PermissionDenied, ErrorKind::NotHolder),
            LockError::NotHeld { .. } => (Code::FailedPrecondition, ErrorKind::NotHeld),
            LockError::StaleRequest { .. } => (Code::FailedPrecondition, ErrorKind::StaleRequest),
            LockError::SessionExists(_) => (Code::AlreadyExists, ErrorKind::SessionExists),
            LockError::ModeConflict { .. } | LockError::OwnModeConflict { .. } => {
                (Code::FailedPrecondition, ErrorKind::ModeConflict)
            }
            other => panic!("not a refusal these tests use: {other:?}"),
        };
        kind.status(code, refusal.to_string())
    }

    #[test]
    fn refusals_come_with_their_fields_and_the_servers_words() {
        let session = SessionId(0xabc);
        let cases = [
            (
                LockError::NotHolder {
                    name: "results.h5".into(),
                    holder_label: "host pid 7".into(),
                    holder_session: session,
                },
                Error::NotHolder {
                    name: "results.h5".into(),
                    holder_label: "host pid 7".into(),
                    holder_session: session.to_string(),
                },
            ),
            (
                LockError::NotHeld { name: "a".into() },
                Error::NotHeld { name: "a".into() },
            ),
            (
                LockError::StaleRequest { seq: 3, oldest: 9 },
                Error::StaleRequest { seq: 3, oldest: 9 },
            ),
            (
                LockError::SessionExists(session),
                Error::SessionExists {
                    session_id: session.to_string(),
                },
            ),
        ];
        for (refusal, want) in cases {
            let status = answer(&refusal);
            let got = Error::from_status(&status);
            assert_eq!(got, want);
            // As shown before these variants had fields.
            let before = match refusal {
                LockError::NotHolder { .. } | LockError::NotHeld { .. } => refusal.to_string(),
                _ => format!("{:?}: {}", status.code(), status.message()),
            };
            assert_eq!(got.to_string(), before);
        }
    }

    #[test]
    fn a_mode_conflict_keeps_the_servers_words() {
        let refusals = [
            LockError::ModeConflict {
                name: "pool".into(),
                in_use_as: LockKind::Semaphore { limit: 2 },
                asked: LockMode::Semaphore { limit: 3 },
            },
            LockError::OwnModeConflict {
                name: "db".into(),
                current: LockMode::Shared,
                asked: LockMode::Exclusive,
                waiting: false,
            },
        ];
        for refusal in refusals {
            let got = Error::from_status(&answer(&refusal));
            assert_eq!(got, Error::ModeConflict(refusal.to_string()));
            assert_eq!(got.to_string(), refusal.to_string());
        }
        // Without its kind it is just another failed precondition.
        let bare = Status::new(Code::FailedPrecondition, "in use as a semaphore");
        assert!(matches!(Error::from_status(&bare), Error::Other(_)));
    }

    #[test]
    fn a_call_without_the_secret_is_refused_as_not_the_owner() {
        let refusal = LockError::NotSessionOwner {
            session: SessionId(0xabc),
            request: "release \"db\"".into(),
        };
        let status = ErrorKind::NotSessionOwner.status(Code::PermissionDenied, refusal.to_string());
        let got = Error::from_status(&status);
        assert_eq!(
            got,
            Error::NotSessionOwner {
                session_id: SessionId(0xabc).to_string(),
                message: refusal.to_string(),
            }
        );
        assert_eq!(got.to_string(), refusal.to_string());
        // Never retried: the next try would be refused the same way.
        assert!(matches!(
            crate::retry::Next::<()>::after(&status),
            crate::retry::Next::Fail(Error::NotSessionOwner { .. })
        ));
    }

    #[test]
    fn auth_refusals_are_their_own_errors_and_never_retried() {
        let unknown = Status::unauthenticated("missing or unknown token");
        let got = Error::from_status(&unknown);
        let Error::Unauthenticated(message) = &got else {
            panic!("{got:?}")
        };
        assert!(message.starts_with("missing or unknown token"), "{message}");
        assert!(message.contains("--auth-token-file"), "{message}");
        let role = Status::permission_denied("principal \"ro\" (role read) may not call Acquire");
        assert_eq!(
            Error::from_status(&role),
            Error::PermissionDenied(role.message().to_string())
        );
        for status in [unknown, role] {
            assert!(matches!(
                crate::retry::Next::<()>::after(&status),
                crate::retry::Next::Fail(Error::Unauthenticated(_) | Error::PermissionDenied(_))
            ));
        }
    }

    #[test]
    fn a_quota_refusal_is_its_own_error() {
        let message = "quota sessions reached (50 of 50); raise it with --max-sessions";
        let status = ErrorKind::QuotaExceeded.status(Code::ResourceExhausted, message);
        assert_eq!(
            Error::from_status(&status),
            Error::QuotaExceeded(message.into())
        );
    }

    #[test]
    fn a_refusal_worded_otherwise_is_passed_on_as_it_came() {
        let odd = ErrorKind::NotHolder.status(Code::PermissionDenied, "not yours");
        assert_eq!(Error::from_status(&odd), Error::Other("not yours".into()));
        let odd = ErrorKind::StaleRequest.status(Code::FailedPrecondition, "request 3 is old");
        assert_eq!(
            Error::from_status(&odd),
            Error::Other("FailedPrecondition: request 3 is old".into())
        );
    }

    proptest! {
        #[test]
        fn any_name_and_label_come_back_exactly(name in any::<String>(), label in any::<String>(), id in any::<u128>()) {
            let refusal = LockError::NotHolder {
                name: name.clone(),
                holder_label: label.clone(),
                holder_session: SessionId(id),
            };
            let got = Error::from_status(&answer(&refusal));
            prop_assert_eq!(got.to_string(), refusal.to_string());
            prop_assert_eq!(got, Error::NotHolder {
                name,
                holder_label: label,
                holder_session: SessionId(id).to_string(),
            });
        }

        #[test]
        fn any_message_makes_an_error_without_panic(message in any::<String>()) {
            for kind in ErrorKind::ALL {
                for code in [Code::PermissionDenied, Code::FailedPrecondition, Code::AlreadyExists] {
                    let _ = Error::from_status(&kind.status(code, message.clone()));
                }
            }
        }
    }
}
