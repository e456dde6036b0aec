//! The raftlock lock table: a pure, deterministic state machine.
//!
//! Every replica applies the same [`Proposal`]s in the same log order and so
//! reaches the same [`LockTable`]. Nothing here does I/O, reads a clock or
//! draws random numbers: time arrives inside each proposal (stamped by the
//! leader that proposed it) and session ids are chosen by the proposer. That
//! is what lets Raft replicate it and lets property tests drive it directly.

mod command;
mod table;
mod types;

pub use command::{Applied, Command, Event, LockError, Outcome, Proposal, Response};
pub use table::{HolderView, LockTable, LockView, SessionView, TableStats, WaiterView};
pub use types::{
    validate_label, validate_lock_delay, validate_name, validate_ttl, SessionId, DEDUP_WINDOW,
    MAX_LABEL_LEN, MAX_LOCK_DELAY_MS, MAX_NAME_LEN, MAX_TTL_MS, MIN_TTL_MS,
};
