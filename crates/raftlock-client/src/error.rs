//! Client errors, one variant per thing a caller may want to handle.

use raftlock_proto::ErrorKind;
use tonic::{Code, Status};

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Try-lock failed or the wait ran out. `holder` is the holder's label.
    #[error("lock {name:?} not acquired{}", holder.as_ref().map(|h| format!(": held by {h:?}")).unwrap_or_default())]
    NotAcquired {
        name: String,
        holder: Option<String>,
    },
    /// Release by someone who does not hold the lock; names the holder.
    #[error("{0}")]
    NotHolder(String),
    /// Release of a lock nobody holds.
    #[error("{0}")]
    NotHeld(String),
    /// The session expired (or was closed): its locks are gone.
    #[error("session lost: {0}")]
    SessionLost(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No node could serve the request within the retry period.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub(crate) fn from_status(status: &Status) -> Error {
        let message = status.message().to_string();
        match (status.code(), ErrorKind::of(status)) {
            (Code::PermissionDenied, _) => Error::NotHolder(message),
            (Code::NotFound, Some(ErrorKind::SessionExpired)) => Error::SessionLost(message),
            (Code::FailedPrecondition, Some(ErrorKind::NotHeld)) => Error::NotHeld(message),
            (Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted, _) => {
                // The server's text may already say so; our Display adds it.
                let message = message
                    .strip_prefix("invalid argument: ")
                    .unwrap_or(&message);
                Error::InvalidArgument(message.to_string())
            }
            (Code::Unavailable, _) => Error::Unavailable(message),
            (code, _) => Error::Other(format!("{code:?}: {message}")),
        }
    }
}
