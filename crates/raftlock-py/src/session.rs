//! `raftlock._native.Session`: the Rust [`Session`] (owner of locks, kept
//! alive in the background) and `CancelToken`, which lets an asyncio task
//! abandon a wait that runs on another thread.
//!
//! A session belongs to the process that opened it: a forked child must
//! not act as the parent's session, so every method refuses to run there.

use std::time::Duration;

use pyo3::prelude::*;
use raftlock_client::{LockMode, Session, Wait};
use tokio::sync::watch;

use crate::blocking::{block_on, signal_check};
use crate::errors::{self, to_py, to_py_for, LockNotAcquired};
use crate::fork::ForkLocal;
use crate::runtime::{runtime, wait_for, Stopped};
use crate::wait::{seconds, wait_for as wait_from};

/// How long an interrupted wait may spend leaving the server's queue.
const LEAVE_QUEUE_WITHIN: Duration = Duration::from_secs(5);

/// A flag another thread (an asyncio event loop) sets to end a wait.
#[pyclass(frozen, module = "raftlock._native", name = "CancelToken")]
pub struct CancelToken {
    flag: watch::Sender<bool>,
}

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> CancelToken {
        CancelToken {
            flag: watch::channel(false).0,
        }
    }

    /// Ends the wait that was given this token (it raises LockNotAcquired).
    fn cancel(&self) {
        self.flag.send_replace(true);
    }

    #[getter]
    fn cancelled(&self) -> bool {
        *self.flag.borrow()
    }
}

/// A raftlock session of this process.
#[pyclass(frozen, module = "raftlock._native", name = "Session")]
pub struct PySession {
    session: ForkLocal<Session>,
    id: String,
    label: String,
    ttl: f64,
}

impl PySession {
    pub fn new(session: Session, label: String) -> PySession {
        PySession {
            id: session.id().to_string(),
            ttl: session.ttl().as_secs_f64(),
            session: ForkLocal::new(session),
            label,
        }
    }

    fn session(&self) -> PyResult<Session> {
        self.session
            .get()
            .cloned()
            .ok_or_else(|| errors::foreign("session", self.session.owner().pid()))
    }
}

/// The mode Python asks for: `"exclusive"`, `"shared"`, or `"semaphore"`
/// with its `limit` (which only a semaphore takes).
fn lock_mode(mode: &str, limit: u32) -> Result<LockMode, String> {
    match (mode, limit) {
        ("exclusive", 0) => Ok(LockMode::Exclusive),
        ("shared", 0) => Ok(LockMode::Shared),
        ("semaphore", 1..) => Ok(LockMode::Semaphore { limit }),
        ("semaphore", 0) => Err("a semaphore's limit must be at least 1".into()),
        ("exclusive" | "shared", _) => Err(format!("only a semaphore takes a limit, not {mode}")),
        _ => Err(format!(
            "mode must be \"exclusive\", \"shared\" or \"semaphore\", not {mode:?}"
        )),
    }
}

/// Leaves the server's queue for `name` after an abandoned wait; if the
/// grant won the race, gives the lock back (unless it was held before).
async fn leave_queue(session: &Session, name: &str, mode: LockMode, held_before: bool) {
    if session.lost_reason().is_some() {
        return;
    }
    // A try-lock in the mode waited for cancels the wait server-side (in
    // another mode it would be refused as a mode conflict).
    if session.lock_with(name, Wait::No, mode).await.is_ok() && !held_before {
        let _ = session.release(name).await;
    }
}

#[pymethods]
impl PySession {
    /// The session id (32 hex digits).
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// Shown to others as the holder or a waiter.
    #[getter]
    fn label(&self) -> &str {
        &self.label
    }

    /// Seconds after the last confirmed keepalive that the session expires.
    #[getter]
    fn ttl(&self) -> f64 {
        self.ttl
    }

    /// The pid of the process that opened the session.
    #[getter]
    fn owner_pid(&self) -> u32 {
        self.session.owner().pid()
    }

    /// True in the process that opened the session, false in a forked child.
    fn is_current(&self) -> bool {
        self.session.is_current()
    }

    /// Why the session was lost (expired, closed, keepalive unconfirmed
    /// for a TTL), or None while it lives.
    fn lost_reason(&self) -> PyResult<Option<String>> {
        Ok(self.session()?.lost_reason())
    }

    /// Whether this session holds `name`, as far as this client knows.
    fn holds(&self, name: &str) -> PyResult<bool> {
        Ok(self.session()?.holds(name))
    }

    /// Takes `name` in `mode` ("exclusive", "shared", or "semaphore" with
    /// `limit`), blocking with the GIL released. Returns
    /// `(fencing_token, reentrant)`. Raises LockNotAcquired when the wait
    /// ends (or `cancel` is set), LockLost if the session is lost,
    /// ModeConflict if the name is in use in another mode. On Ctrl-C or
    /// cancel, it leaves the server's queue before returning.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (name, timeout=None, blocking=true, cancel=None, mode="exclusive", limit=0))]
    fn lock(
        &self,
        py: Python<'_>,
        name: String,
        timeout: Option<f64>,
        blocking: bool,
        cancel: Option<PyRef<'_, CancelToken>>,
        mode: &str,
        limit: u32,
    ) -> PyResult<(u64, bool)> {
        let wait = wait_from(timeout, blocking).map_err(errors::invalid)?;
        let mode = lock_mode(mode, limit).map_err(errors::invalid)?;
        let session = self.session()?;
        let rt = runtime().map_err(errors::no_runtime)?;
        let cancel = cancel.map(|c| c.flag.subscribe());
        let held_before = session.holds(&name);
        py.detach(move || {
            let waiting = {
                let (session, name) = (session.clone(), name.clone());
                Box::pin(async move { session.lock_with(&name, wait, mode).await })
            };
            let (stopped, leftover) = match wait_for(rt, waiting, signal_check(), cancel) {
                Ok(grant) => {
                    return grant
                        .map(|g| (g.token, g.reentrant))
                        .map_err(|e| to_py_for(e, &name))
                }
                Err(stopped) => stopped,
            };
            // Dropped here, outside the runtime, the Rust client's own
            // cleanup (spawned, not awaited) stays off: ours below is
            // awaited, so the caller may wait again at once without racing it.
            drop(leftover);
            let leave = Box::pin(async move {
                let leave = leave_queue(&session, &name, mode, held_before);
                let _ = tokio::time::timeout(LEAVE_QUEUE_WITHIN, leave).await;
                name
            });
            let name = match wait_for(rt, leave, || Ok::<(), ()>(()), None) {
                Ok(name) => name,
                Err(_) => unreachable!("the cleanup is never interrupted"),
            };
            Err(match stopped {
                Stopped::Interrupted(e) => e,
                Stopped::Cancelled => LockNotAcquired::new_err((
                    format!("lock {name:?} not acquired: the wait was cancelled"),
                    name,
                    None::<String>,
                )),
            })
        })
    }

    /// Releases `name`. Raises NotOwner / NotHeld if this session does not
    /// hold it, LockLost if the session is gone, ClusterUnavailable if no
    /// node answered (the lock is then still held: try again).
    fn release(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let session = self.session()?;
        block_on(py, async move { session.release(&name).await })?.map_err(to_py)
    }

    /// Ends the session, releasing everything it holds; returns those
    /// names. Gives up after `timeout` seconds (the session then expires
    /// after its TTL anyway).
    #[pyo3(signature = (timeout=5.0))]
    fn close(&self, py: Python<'_>, timeout: f64) -> PyResult<Vec<String>> {
        let within = seconds("timeout", timeout).map_err(errors::invalid)?;
        let session = self.session()?;
        let closed = block_on(py, async move {
            tokio::time::timeout(within, session.close()).await
        })?;
        match closed {
            Ok(result) => result.map_err(to_py),
            Err(_) => Err(to_py(raftlock_client::Error::Unavailable(format!(
                "session not closed within {timeout} s; it expires after its TTL"
            )))),
        }
    }

    /// Blocks (GIL released) until the session is lost or `timeout`
    /// seconds pass; returns the reason, or None on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait_lost(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<String>> {
        let within = timeout
            .map(|t| seconds("timeout", t).map_err(errors::invalid))
            .transpose()?;
        let session = self.session()?;
        block_on(py, async move {
            match within {
                Some(within) => tokio::time::timeout(within, session.lost()).await.ok(),
                None => Some(session.lost().await),
            }
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "raftlock._native.Session(id={:?}, label={:?}, ttl={}, pid={})",
            self.id,
            self.label,
            self.ttl,
            self.session.owner().pid()
        )
    }
}
