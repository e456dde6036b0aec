//! `raftlock._native`, the compiled half of the `raftlock` Python package:
//! thin PyO3 bindings over `raftlock-client`, so Python gets the same
//! leader following, safe retries (request numbers) and keepalive as Rust.
//! The friendly API (`Client.lock()`, `Lock`, exceptions) is Python code in
//! `python/raftlock/`, built into one package by maturin.
//!
//! Each process has its own tokio runtime ([`runtime`]); what belongs to a
//! process is wrapped in [`fork::ForkLocal`] so a forked child never uses
//! (or drops) its parent's runtime, connections or sessions.
//!
//! The pure parts ([`fork`], [`runtime`], [`wait`]) have Rust unit tests.
//! The PyO3 parts are left out of `cargo test` builds, so the test binary
//! needs no libpython; they are tested from Python (`tests/`).

#![cfg_attr(test, allow(dead_code))]

pub mod fork;
pub mod runtime;
pub mod wait;

#[cfg(not(test))]
mod blocking;
#[cfg(not(test))]
mod client;
#[cfg(not(test))]
mod errors;
#[cfg(not(test))]
mod session;
#[cfg(not(test))]
mod watch;

/// Compiled part of the raftlock client (PyO3 over the Rust client).
#[cfg(not(test))]
#[pyo3::pymodule(name = "_native")]
mod native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::client::PyClient;
    #[pymodule_export]
    use crate::session::{CancelToken, PySession};
    #[pymodule_export]
    use crate::watch::PyWatch;

    /// A number identifying this process that changes in a forked child.
    #[pyfunction]
    fn process_token() -> u64 {
        crate::fork::Process::current().token()
    }

    #[pymodule_init]
    fn init() {
        crate::fork::install();
    }
}
