//! The raftlock lock table: a pure, deterministic state machine.
//!
//! Every replica applies the same [`Proposal`]s in the same log order and so
//! reaches the same [`LockTable`]. Nothing here does I/O, reads a clock or
//! draws random numbers: time arrives inside each proposal (stamped by the
//! leader that proposed it) and session ids are chosen by the proposer. That
//! is what lets Raft replicate it and lets property tests drive it directly.
//!
//! The rules for lock modes (exclusive, shared, semaphore), fairness and
//! fencing tokens are in the [`table`] module's documentation; the change
//! events a watcher sees are in [`events`].

mod command;
mod compat;
pub mod events;
mod limits;
mod owner;
mod queue;
mod quotas;
mod session_list;
mod sessions;
mod stored;
pub mod table;
mod tracked;
mod types;
mod usage;
mod validate;
mod view;

pub use command::{Applied, Command, Event, LockError, Outcome, Proposal, Response};
pub use compat::{LockTableV2, LockTableV3, LockTableV4};
pub use events::{LeaveReason, LockEvent, LockMirror, MirroredLock};
pub use limits::{Limits, Quota, QuotaUsage, MAX_LIMIT};
pub use owner::{SecretHash, SessionOwner};
pub use table::LockTable;
pub use types::{
    validate_label, validate_lock_delay, validate_mode, validate_name, validate_ttl, LockKind,
    LockMode, SessionId, DEDUP_WINDOW, MAX_LABEL_LEN, MAX_LOCK_DELAY_MS, MAX_NAME_LEN,
    MAX_SEMAPHORE_LIMIT, MAX_TTL_MS, MIN_TTL_MS,
};
pub use view::{HolderView, LockView, SessionView, TableStats, WaiterView};
