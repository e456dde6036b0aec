//! Calling async Rust from Python: run the call on this process's runtime
//! while the calling thread waits with the GIL released, so other Python
//! threads run, and stop early when a signal (Ctrl-C) is pending.

use std::future::Future;

use pyo3::prelude::*;

use crate::errors;
use crate::runtime::{runtime, wait_for, Stopped};

/// A check for [`wait_for`] that lets Python run its signal handlers; an
/// error (KeyboardInterrupt) ends the wait. Only Python's main thread gets
/// signals, so other threads never re-attach while they wait: a daemon
/// thread still waiting when the interpreter shuts down stays out of it.
pub fn signal_check() -> impl FnMut() -> PyResult<()> {
    // SAFETY: gettid and getpid cannot fail.
    let main_thread = unsafe { libc::gettid() == libc::getpid() };
    move || {
        if main_thread {
            Python::try_attach(|py| py.check_signals()).unwrap_or(Ok(()))
        } else {
            Ok(())
        }
    }
}

/// Runs `fut` to completion with the GIL released. If a signal handler
/// raises, the call is abandoned (dropped) and that exception returned.
pub fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime().map_err(errors::no_runtime)?;
    py.detach(|| match wait_for(rt, Box::pin(fut), signal_check(), None) {
        Ok(out) => Ok(out),
        Err((Stopped::Interrupted(e), leftover)) => {
            drop(leftover);
            Err(e)
        }
        Err((Stopped::Cancelled, _)) => unreachable!("no cancel flag was given"),
    })
}
