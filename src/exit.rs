//! Every exit status the `raftlock` command uses, and the one way a client
//! command reports an error on its way out. `raftlock lock`'s are in the
//! README's table and its `--help`, which must agree with these.

use raftlock_client::Error;

/// Done. For `status`: the leader and a majority of the voters answered.
pub const OK: i32 = 0;
/// `server` or `dev` could not start, or stopped uncleanly. (A running
/// node that loses its storage exits from the node itself: 74 for a
/// storage error, 70 for a panic; docs/safety.md has the table.)
pub const FAILURE: i32 = 1;
/// `status`: some node answered, but no leader confirmed itself or no
/// majority of the voters answered.
pub const UNHEALTHY: i32 = 1;
/// Bad arguments; nothing was done.
pub const USAGE: i32 = 2;
/// The cluster could not be reached, or another error (sysexits' EX_UNAVAILABLE).
pub const UNAVAILABLE: i32 = 69;
/// `lock`'s guard could not wait for the command (sysexits' EX_SOFTWARE).
pub const GUARD_FAILED: i32 = 70;
/// The cluster refused this client's credentials: an unknown token, a role
/// or lock-name prefix that does not allow the call, or a failed TLS
/// handshake (sysexits' EX_NOPERM). Credentials that cannot even be used
/// (a missing CA file, a token file others can read) are a [`USAGE`] error.
pub const AUTH: i32 = 77;
/// The lock could not be had in time (or at once, with --no-wait).
pub const NOT_ACQUIRED: i32 = 75;
/// The lock was lost while the command ran; the command was terminated.
pub const LOCK_LOST: i32 = 76;
/// The command was found but could not be run, as a shell reports it.
pub const CANNOT_RUN: i32 = 126;
/// The command was not found, as a shell reports it.
pub const NOT_FOUND: i32 = 127;
/// Added to a signal's number for a process it ended, as shells do.
const SIGNALLED: i32 = 128;

/// The status for a process ended by signal `sig` (ours or the command's).
pub const fn signalled(sig: libc::c_int) -> i32 {
    SIGNALLED + sig
}

/// Says what went wrong talking to the cluster; the status to exit with:
/// [`AUTH`] or [`USAGE`] for a credentials problem, else [`UNAVAILABLE`].
pub fn unavailable(error: &Error) -> i32 {
    eprintln!("raftlock: {error}");
    code(error)
}

/// The exit status for a client error that ends a command.
pub fn code(error: &Error) -> i32 {
    match error {
        Error::Unauthenticated(_) | Error::PermissionDenied(_) | Error::Tls(_) => AUTH,
        Error::Credentials(_) => USAGE,
        _ => UNAVAILABLE,
    }
}
