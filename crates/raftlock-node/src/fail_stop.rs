//! The crate's one policy for a poisoned std lock: fail-stop.
//!
//! A lock is poisoned when a thread panicked while holding it, so what it
//! guards may be half-updated: a lock table with half an entry applied, a
//! record of unsynced entries missing one, a peer's health half-written.
//! Carrying on with that could make this replica answer differently from
//! the others, or count an entry as durable that is not. So every std
//! `Mutex` and `RwLock` in the node is taken through these functions, which
//! stop the process on poison; the node then restarts from what is on disk
//! like after any crash, and the cluster carries on meanwhile. (A panic
//! unwinds only one tokio task, so a plain `unwrap` would leave the rest of
//! the node running beside the broken state.)

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|_| stop())
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|_| stop())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|_| stop())
}

#[cold]
fn stop() -> ! {
    let backtrace = std::backtrace::Backtrace::force_capture();
    tracing::error!(
        %backtrace,
        "a lock is poisoned (a thread panicked holding it); stopping the node"
    );
    std::process::abort()
}
