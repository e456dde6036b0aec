//! `raftlock._native.Client`: the Rust [`Client`] (leader following,
//! retries) for one process. A forked child gets a new one, with its own
//! connections on its own runtime, the first time it uses the object.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use raftlock_client::{
    mode_from_wire, process_env, Client, ClientOptions, Given, LockHolder, LockInfo, LockMode,
    SessionOptions, Transport,
};

use crate::blocking::block_on;
use crate::errors::{self, to_py};
use crate::fork::ForkLocal;
use crate::session::PySession;
use crate::wait::seconds;

/// Connections to a raftlock cluster (the Rust client underneath).
#[pyclass(frozen, module = "raftlock._native", name = "Client")]
pub struct PyClient {
    endpoints: Vec<String>,
    options: ClientOptions,
    /// This process's client. Only touched with the GIL held, and never
    /// across a GIL release, so a fork cannot catch the mutex locked.
    client: Mutex<Option<ForkLocal<Client>>>,
}

impl PyClient {
    /// The Rust client for this process, made anew after a fork.
    fn client(&self) -> PyResult<Client> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref().and_then(ForkLocal::get) {
            return Ok(client.clone());
        }
        let client =
            Client::with_options(self.endpoints.clone(), self.options.clone()).map_err(to_py)?;
        // Replacing a parent's client leaks it (see ForkLocal).
        *slot = Some(ForkLocal::new(client.clone()));
        Ok(client)
    }
}

fn to_duration(what: &str, secs: f64) -> PyResult<Duration> {
    seconds(what, secs).map_err(errors::invalid)
}

/// A mode as Python sees it: "exclusive", "shared", "semaphore", or
/// "unknown" for one this client does not know (a newer server).
fn mode_name(mode: i32, limit: u32) -> &'static str {
    match mode_from_wire(mode, limit) {
        Some(LockMode::Exclusive) => "exclusive",
        Some(LockMode::Shared) => "shared",
        Some(LockMode::Semaphore { .. }) => "semaphore",
        None => "unknown",
    }
}

fn holder<'py>(py: Python<'py>, h: LockHolder, limit: u32) -> PyResult<Bound<'py, PyDict>> {
    let holder = PyDict::new(py);
    holder.set_item("session_id", h.session_id)?;
    holder.set_item("label", h.label)?;
    holder.set_item("token", h.fencing_token)?;
    holder.set_item("since_ms", h.since_ms)?;
    holder.set_item("mode", mode_name(h.mode, limit))?;
    Ok(holder)
}

fn lock_info<'py>(py: Python<'py>, info: LockInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let limit = info.limit;
    dict.set_item("name", info.name)?;
    // A server without modes sends only `holder`.
    let holders = if info.holders.is_empty() {
        info.holder.into_iter().collect()
    } else {
        info.holders
    };
    let holders = holders
        .into_iter()
        .map(|h| holder(py, h, limit))
        .collect::<PyResult<Vec<_>>>()?;
    dict.set_item("holder", holders.first())?;
    dict.set_item("holders", holders)?;
    let waiters = info
        .waiters
        .into_iter()
        .map(|w| {
            let waiter = PyDict::new(py);
            waiter.set_item("session_id", w.session_id)?;
            waiter.set_item("label", w.label)?;
            waiter.set_item("mode", mode_name(w.mode, limit))?;
            Ok(waiter)
        })
        .collect::<PyResult<Vec<_>>>()?;
    dict.set_item("waiters", waiters)?;
    dict.set_item("available_at_ms", info.available_at_ms)?;
    dict.set_item("limit", limit)?;
    Ok(dict)
}

#[pymethods]
impl PyClient {
    #[new]
    #[pyo3(signature = (
        endpoints, retry_for=30.0, rpc_timeout=5.0, connect_timeout=1.0,
        ca=None, token_file=None, cert=None, key=None, insecure=false,
    ))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each
    fn new(
        endpoints: Vec<String>,
        retry_for: f64,
        rpc_timeout: f64,
        connect_timeout: f64,
        ca: Option<PathBuf>,
        token_file: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        insecure: bool,
    ) -> PyResult<PyClient> {
        let given = Given {
            ca,
            token_file,
            cert,
            key,
            insecure,
        };
        // What was given, else RAFTLOCK_* in the environment, else the
        // profile directory, else plain text: as every client does.
        let transport = Transport::resolve(&given, &process_env).map_err(to_py)?;
        let options = ClientOptions {
            retry_for: to_duration("retry_for", retry_for)?,
            rpc_timeout: to_duration("rpc_timeout", rpc_timeout)?,
            connect_timeout: to_duration("connect_timeout", connect_timeout)?,
            transport,
        };
        // Validates the endpoints and credential files now; connects lazily.
        let client = Client::with_options(endpoints, options).map_err(to_py)?;
        Ok(PyClient {
            endpoints: client.endpoints().to_vec(),
            // Resolved: a forked child uses the same credentials.
            options: client.options().clone(),
            client: Mutex::new(Some(ForkLocal::new(client))),
        })
    }

    /// The endpoints (`host:port`) this client tries.
    #[getter]
    fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    /// Opens a session (blocking, GIL released); it keeps itself alive in
    /// the background until closed or dropped.
    #[pyo3(signature = (ttl=10.0, lock_delay=0.0, label=None))]
    fn open_session(
        &self,
        py: Python<'_>,
        ttl: f64,
        lock_delay: f64,
        label: Option<String>,
    ) -> PyResult<PySession> {
        let defaults = SessionOptions::default();
        let options = SessionOptions {
            ttl: to_duration("ttl", ttl)?,
            lock_delay: to_duration("lock_delay", lock_delay)?,
            label: label.unwrap_or(defaults.label),
        };
        let label = options.label.clone();
        let client = self.client()?;
        let session = block_on(py, async move { client.open_session(options).await })?;
        Ok(PySession::new(session.map_err(to_py)?, label))
    }

    /// One lock's holder and waiters as a dict (linearizable read), or None.
    fn get_lock<'py>(&self, py: Python<'py>, name: String) -> PyResult<Option<Bound<'py, PyDict>>> {
        let client = self.client()?;
        let info = block_on(py, async move { client.get_lock(&name).await })?.map_err(to_py)?;
        info.map(|i| lock_info(py, i)).transpose()
    }

    /// Locks whose names start with `prefix`, at most `limit` (0: 10 000),
    /// read page by page, and whether `limit` cut the list.
    #[pyo3(signature = (prefix=String::new(), limit=0))]
    fn list_locks<'py>(
        &self,
        py: Python<'py>,
        prefix: String,
        limit: u32,
    ) -> PyResult<(Vec<Bound<'py, PyDict>>, bool)> {
        let client = self.client()?;
        let (locks, truncated) =
            block_on(py, async move { client.list_locks(&prefix, limit).await })?.map_err(to_py)?;
        let locks = locks
            .into_iter()
            .map(|i| lock_info(py, i))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((locks, truncated))
    }

    /// One page of the locks under `prefix`: at most `page_size` (0: the
    /// server's largest page), after the page that returned `page_token`
    /// (None: the first). Returns the locks and the next page's token
    /// (None after the last page).
    #[pyo3(signature = (prefix=String::new(), page_size=0, page_token=None))]
    fn list_locks_page<'py>(
        &self,
        py: Python<'py>,
        prefix: String,
        page_size: u32,
        page_token: Option<String>,
    ) -> PyResult<(Vec<Bound<'py, PyDict>>, Option<String>)> {
        let client = self.client()?;
        let (locks, next) = block_on(py, async move {
            client
                .list_locks_page(&prefix, page_size, page_token.as_deref())
                .await
        })?
        .map_err(to_py)?;
        let locks = locks
            .into_iter()
            .map(|i| lock_info(py, i))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((locks, next))
    }

    /// One node's own view (role, term, leader), asked of that node only.
    #[pyo3(signature = (addr, timeout=1.0))]
    fn node_status<'py>(
        &self,
        py: Python<'py>,
        addr: String,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let timeout = to_duration("timeout", timeout)?;
        let client = self.client()?;
        let status = block_on(py, async move { client.node_status(&addr, timeout).await })?
            .map_err(to_py)?;
        let dict = PyDict::new(py);
        dict.set_item("id", status.id)?;
        dict.set_item("role", status.role().label())?;
        dict.set_item("addr", status.addr)?;
        dict.set_item("term", status.term)?;
        dict.set_item("last_applied", status.last_applied)?;
        dict.set_item("leader_id", status.has_leader.then_some(status.leader_id))?;
        dict.set_item(
            "leader_addr",
            status.has_leader.then_some(status.leader_addr),
        )?;
        Ok(dict)
    }

    /// Watches the locks under `prefix`: their state, then every change.
    #[pyo3(signature = (prefix=String::new()))]
    fn watch(&self, py: Python<'_>, prefix: String) -> PyResult<crate::watch::PyWatch> {
        let client = self.client()?;
        let watch = block_on(py, async move { client.watch(&prefix) })?;
        Ok(crate::watch::PyWatch::new(watch))
    }

    fn __repr__(&self) -> String {
        format!("raftlock._native.Client({:?})", self.endpoints)
    }
}
