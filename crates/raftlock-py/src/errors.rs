//! The Rust client's errors as the Python exceptions defined in
//! `raftlock/_errors.py` (defined in Python so they have real
//! constructors, attributes and docstrings, and pickle across processes).

use pyo3::import_exception;
use pyo3::PyErr;
use raftlock_client::Error;

import_exception!(raftlock._errors, RaftlockError);
import_exception!(raftlock._errors, LockNotAcquired);
import_exception!(raftlock._errors, NotOwner);
import_exception!(raftlock._errors, NotHeld);
import_exception!(raftlock._errors, LockLost);
import_exception!(raftlock._errors, ClusterUnavailable);
import_exception!(raftlock._errors, InvalidArgument);
import_exception!(raftlock._errors, QuotaExceeded);
import_exception!(raftlock._errors, ModeConflict);
import_exception!(raftlock._errors, NotAuthenticated);
import_exception!(raftlock._errors, PermissionDenied);
import_exception!(raftlock._errors, TlsError);
import_exception!(raftlock._errors, CredentialsError);

/// One exception per kind of error; the message is the Rust client's.
pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    let none = None::<String>;
    match error {
        Error::NotAcquired { name, holder } => LockNotAcquired::new_err((message, name, holder)),
        Error::NotHolder {
            name, holder_label, ..
        } => NotOwner::new_err((message, Some(name), Some(holder_label))),
        Error::NotHeld { name } => NotHeld::new_err((message, Some(name), none)),
        Error::SessionLost(reason) => LockLost::new_err((message, none, reason)),
        Error::InvalidArgument(_) => InvalidArgument::new_err((message,)),
        Error::QuotaExceeded(_) => QuotaExceeded::new_err((message,)),
        Error::Unavailable(_) => ClusterUnavailable::new_err((message,)),
        Error::ModeConflict(_) => ModeConflict::new_err((message, none)),
        Error::Unauthenticated(_) => NotAuthenticated::new_err((message,)),
        Error::PermissionDenied(_) => PermissionDenied::new_err((message,)),
        Error::Tls(_) => TlsError::new_err((message,)),
        Error::Credentials(_) => CredentialsError::new_err((message,)),
        Error::StaleRequest { .. }
        | Error::SessionExists { .. }
        | Error::NotSessionOwner { .. }
        | Error::Other(_) => RaftlockError::new_err((message,)),
    }
}

/// [`to_py`] for an error about lock `name`: a mode conflict names it
/// (the Rust error has only the server's message).
pub fn to_py_for(error: Error, name: &str) -> PyErr {
    match error {
        Error::ModeConflict(message) => ModeConflict::new_err((message, name.to_string())),
        other => to_py(other),
    }
}

/// A bad argument caught before anything was sent.
pub fn invalid(message: String) -> PyErr {
    InvalidArgument::new_err((message,))
}

/// The tokio runtime could not start (threads or file descriptors ran out).
pub fn no_runtime(error: std::io::Error) -> PyErr {
    RaftlockError::new_err((format!("cannot start the tokio runtime: {error}"),))
}

/// A session (or client connection) used in a forked child of its owner.
pub fn foreign(what: &str, owner_pid: u32) -> PyErr {
    RaftlockError::new_err((format!(
        "this {what} belongs to process {owner_pid}, not to this one (pid {}): \
         a forked child must open its own",
        std::process::id()
    ),))
}
