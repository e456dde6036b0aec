//! The crate's fail-stop policy: a node that cannot trust its own state
//! stops the process, and a supervisor restarts it from what is on disk
//! like after any crash, while the cluster carries on meanwhile.
//!
//! - A poisoned std lock ([`lock`], [`read`], [`write`]): a thread panicked
//!   while holding it, so what it guards may be half-updated (a lock table
//!   with half an entry applied, a record of unsynced entries missing one).
//!   Carrying on could make this replica answer differently from the
//!   others, or count an entry as durable that is not. The process aborts.
//! - Raft stopping on its own ([`stop_when_raft_fails`]): openraft stops
//!   for good on any storage error (a failed read, write or fsync, a
//!   snapshot that cannot be installed), leaving a process that serves
//!   nothing. The process exits with [`EXIT_STORAGE_FAILED`], or
//!   [`EXIT_RAFT_FAILED`] if Raft's task died otherwise.
//! - A panic in any task ([`stop_when_raft_fails`] installs the hook): a
//!   panic unwinds only one tokio task, so the rest of the node would run
//!   on beside whatever it left half-done. The process exits with
//!   [`EXIT_PANICKED`].

use std::sync::{Mutex, MutexGuard, Once, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::error::Fatal;

use crate::types::Raft;

/// Exit status of a node whose storage failed (sysexits' EX_IOERR).
pub const EXIT_STORAGE_FAILED: i32 = 74;
/// Exit status of a node whose Raft stopped without a storage error: its
/// task died (sysexits' EX_SOFTWARE).
pub const EXIT_RAFT_FAILED: i32 = 70;
/// How often [`stop_when_raft_fails`] looks at Raft's state.
const RAFT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Exit status of a node after a panic in any of its threads or tasks
/// (sysexits' EX_SOFTWARE: a bug).
pub const EXIT_PANICKED: i32 = 70;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|_| poisoned())
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|_| poisoned())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|_| poisoned())
}

#[cold]
fn poisoned() -> ! {
    let backtrace = std::backtrace::Backtrace::force_capture();
    tracing::error!(
        %backtrace,
        "a lock is poisoned (a thread panicked holding it); stopping the node"
    );
    std::process::abort()
}

/// Exits the process when `raft` stops other than by `Raft::shutdown`,
/// and on a panic anywhere in it. Call once Raft runs, inside its runtime.
pub(crate) fn stop_when_raft_fails(raft: &Raft) {
    exit_on_panic();
    let metrics = raft.metrics();
    tokio::spawn(async move {
        // Polled, not woken by every change: openraft updates its metrics
        // on every append and heartbeat, and this need not run that often.
        let mut every = tokio::time::interval(RAFT_CHECK_EVERY);
        loop {
            every.tick().await;
            // Closed first: a final state sent before the close is then seen.
            let closed = metrics.has_changed().is_err();
            let running = metrics.borrow().running_state.clone();
            match running {
                // Raft's task ended, still saying it runs: it panicked.
                Ok(()) if closed => exit(EXIT_RAFT_FAILED, "Raft's task ended unexpectedly"),
                Ok(()) => {}
                Err(Fatal::Stopped) => return,
                Err(Fatal::StorageError(e)) => exit(
                    EXIT_STORAGE_FAILED,
                    &format!("storage failed, Raft stopped: {e}"),
                ),
                Err(Fatal::Panicked) => exit(EXIT_RAFT_FAILED, "Raft panicked"),
            }
        }
    });
}

/// Installs (once per process) a panic hook that reports the panic as
/// before and then exits with [`EXIT_PANICKED`].
fn exit_on_panic() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            exit(EXIT_PANICKED, &format!("panicked: {info}"));
        }));
    });
}

#[cold]
fn exit(code: i32, why: &str) -> ! {
    tracing::error!(
        exit_code = code,
        "{why}; stopping the node (exit status {code}) so that a supervisor restarts it from its data dir"
    );
    std::process::exit(code)
}
