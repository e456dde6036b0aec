//! `raftlock._native.Watch`: a [`Watch`] stream read from Python one event
//! at a time, each `next` waiting with the GIL released.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use raftlock_client::{ChangeKind, LeaveReason, LockChange, Watch, WatchEvent};

use crate::blocking::block_on;
use crate::errors::{self, to_py};
use crate::wait::seconds;

/// A running watch of the locks under a prefix; see `Client.watch`.
#[pyclass(frozen, module = "raftlock._native", name = "Watch")]
pub struct PyWatch {
    /// `None` once closed. A tokio mutex: a `next` holds it while it waits.
    watch: Arc<tokio::sync::Mutex<Option<Watch>>>,
    /// Set by `close`, which ends a waiting `next` at once.
    closed: tokio::sync::watch::Sender<bool>,
}

impl PyWatch {
    pub fn new(watch: Watch) -> Self {
        PyWatch {
            watch: Arc::new(tokio::sync::Mutex::new(Some(watch))),
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

#[pymethods]
impl PyWatch {
    /// The next event as a dict, waiting at most `timeout` seconds (None:
    /// as long as it takes); None when the time ran out or the watch was
    /// closed.
    #[pyo3(signature = (timeout=None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let timeout = timeout
            .map(|t| seconds("timeout", t).map_err(errors::invalid))
            .transpose()?;
        let watch = self.watch.clone();
        let mut closed = self.closed.subscribe();
        let event = block_on(py, async move {
            let mut watch = watch.lock().await;
            let watch = watch.as_mut()?;
            let forever = std::time::Duration::from_secs(u32::MAX.into());
            tokio::select! {
                event = tokio::time::timeout(timeout.unwrap_or(forever), watch.next()) => {
                    event.ok().flatten()
                }
                _ = closed.wait_for(|closed| *closed) => None,
            }
        })?;
        match event {
            None => Ok(None),
            Some(Err(error)) => Err(to_py(error)),
            Some(Ok(event)) => event_dict(py, event).map(Some),
        }
    }

    /// Stops the watch; a waiting `next` returns None first.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.send_replace(true);
        let watch = self.watch.clone();
        let dropped = block_on(py, async move { watch.lock().await.take() })?;
        // Dropped here, outside the runtime's thread: it only closes a channel.
        drop(dropped);
        Ok(())
    }
}

fn kind_name(change: &LockChange) -> &'static str {
    match change.kind() {
        ChangeKind::Queued => "queued",
        ChangeKind::Granted => "granted",
        ChangeKind::Released => "released",
        ChangeKind::Expired => "expired",
        ChangeKind::LeftQueue => "left_queue",
        ChangeKind::Unspecified => "unknown",
    }
}

fn event_dict(py: Python<'_>, event: WatchEvent) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("index", event.index())?;
    let (change, state) = match event {
        WatchEvent::Reset { resync, .. } => {
            dict.set_item("kind", "reset")?;
            dict.set_item("resync", resync)?;
            return Ok(dict);
        }
        WatchEvent::Synced { .. } => {
            dict.set_item("kind", "synced")?;
            return Ok(dict);
        }
        WatchEvent::State { change, .. } => (change, true),
        WatchEvent::Change { change, .. } => (change, false),
    };
    dict.set_item("kind", kind_name(&change))?;
    dict.set_item("state", state)?;
    dict.set_item("name", &change.name)?;
    dict.set_item("session_id", &change.session_id)?;
    let mode = change.mode().as_str_name();
    dict.set_item("mode", mode.trim_start_matches("LOCK_MODE_").to_lowercase())?;
    dict.set_item("limit", change.limit)?;
    dict.set_item("token", change.fencing_token)?;
    dict.set_item("available_at_ms", change.available_at_ms)?;
    let reason = match change.reason() {
        LeaveReason::Cancelled => Some("cancelled"),
        LeaveReason::SessionClosed => Some("session_closed"),
        LeaveReason::SessionExpired => Some("session_expired"),
        LeaveReason::Unspecified => None,
    };
    dict.set_item("reason", reason)?;
    Ok(dict)
}
