//! Durable storage in one sled database: the Raft log and vote
//! ([`LogStore`], in `log`, with old entries deleted by `purge`) and the
//! applied lock table's snapshots ([`StateMachineStore`], in
//! `state_machine`). `early_ack` decides which of the leader's entries are
//! acknowledged before their fsync and keeps them invisible until it lands;
//! `files` makes the files around sled's own durable.
//!
//! sled 0.34's `flush` ends in `sync_file_range`, which does not make data
//! durable across power loss on Linux (no metadata, no disk cache flush).
//! So every flush we rely on is followed by an `fdatasync` of sled's data
//! file, done in [`Durable::sync`].
//!
//! Failures here stop the node rather than being worked around: a failed
//! sync fails every later one (see [`Durable`]), a sync failure with entries
//! already acknowledged aborts (see `log`), and a poisoned lock aborts too
//! ([`crate::fail_stop`], the policy for every std lock in the node): a
//! thread that panicked while holding one may have left a vote, the record
//! of unsynced entries or the lock table half-written, and a node that went
//! on from there could count as durable what is not. Restarting from disk is
//! always safe; guessing is not.

mod early_ack;
mod files;
mod log;
mod purge;
mod snapshot_files;
mod state_machine;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use early_ack::CommitGate;
pub use log::LogStore;
pub use snapshot_files::DEFAULT_MAX_SNAPSHOT_BYTES;
pub use state_machine::StateMachineStore;

use crate::applied_table::AppliedTable;
use crate::fail_stop;
use crate::types::NodeId;
use early_ack::EarlyAck;

/// The sled database plus a handle on its data file for fdatasync.
#[derive(Clone)]
pub struct Durable {
    db: sled::Db,
    data_file: Arc<File>,
    /// The other files and directories sled writes (see `files`).
    files: Arc<Mutex<files::Files>>,
    /// Set by the first failed sync. Linux may drop the dirty pages and
    /// report the error to one fsync only, so a later "successful" sync
    /// proves nothing: every sync after a failure fails too, in this
    /// process through this flag and in later ones through the mark.
    failed: Arc<AtomicBool>,
    failed_mark: Arc<files::FailedMark>,
}

impl Durable {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let failed_mark = files::FailedMark::beside(dir);
        failed_mark.check()?;
        files::create_dir_durably(dir)?;
        // An earlier version may have created the directory without this.
        if let Some(data_dir) = dir.parent() {
            files::sync_dir(data_dir)?;
        }
        let db = sled::Config::new()
            .path(dir)
            // Our own fsync schedule decides durability; no background flusher.
            .flush_every_ms(None)
            // sled caches up to 1 GiB by default; the log is read back only
            // by lagging followers, and the lock table lives in memory anyway.
            // With 16 MiB the cache filled under sustained writes and each
            // node's RSS grew by as much; 4 MiB held throughput the same.
            .cache_capacity(4 << 20)
            .open()
            .map_err(sled_to_io)?;
        // sled 0.34 keeps every page in the file named `db` inside its directory.
        let data_file = File::open(dir.join("db"))?;
        let durable = Durable {
            db,
            data_file: Arc::new(data_file),
            files: Arc::new(Mutex::new(files::Files::new(dir))),
            failed: Arc::default(),
            failed_mark: Arc::new(failed_mark),
        };
        // A previous process may have died between sled's write and our
        // fdatasync: make what it left in the page cache durable before
        // this node acts on it (a leader's entries may have been
        // acknowledged before their sync; see `early_ack`).
        durable.sync()?;
        Ok(durable)
    }

    pub fn tree(&self, name: &str) -> io::Result<sled::Tree> {
        self.db.open_tree(name).map_err(sled_to_io)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(io::Error::other("an earlier sync of this database failed"));
        }
        let mut files = fail_stop::lock(&self.files);
        let result = self
            .db
            .flush()
            .map_err(sled_to_io)
            .and_then(|_| files.sync_before_db())
            .and_then(|()| self.data_file.sync_data())
            .and_then(|()| files.sync_after_db());
        if let Err(e) = &result {
            self.failed.store(true, Ordering::SeqCst);
            self.failed_mark.set(e);
        }
        result
    }
}

/// Opens the log store and state machine store that live in `dir`, and
/// the gate the network must pass outgoing commit indexes through.
/// `early_ack`: acknowledge the leader's own entries before their sync
/// (see `early_ack`); off, every entry waits for its sync.
pub fn open(
    dir: &Path,
    table: AppliedTable,
    own_id: NodeId,
    early_ack: bool,
) -> io::Result<(LogStore, StateMachineStore, CommitGate)> {
    let durable = Durable::open(dir)?;
    let early_ack = Arc::new(EarlyAck::new(early_ack, own_id));
    let files = snapshot_files::SnapshotFiles::open(dir)?;
    let log = LogStore::open(durable.clone(), early_ack.clone())?;
    let sm = StateMachineStore::open(durable, table, early_ack.clone(), files)?;
    Ok((log, sm, CommitGate::new(early_ack)))
}

pub(crate) fn sled_to_io(e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    crate::codec::encode(value).map_err(io::Error::other)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    crate::codec::decode(bytes).map_err(io::Error::other)
}

/// Decodes a snapshot's data as a node restoring or installing it would,
/// for a snapshot whose last entry is `last_applied`.
pub(crate) fn decode_snapshot(last_applied: u64, bytes: &[u8]) -> io::Result<()> {
    state_machine::decode_snapshot(last_applied, bytes)
}

/// `table`'s snapshot data as a node writes it.
pub(crate) fn encode_snapshot(table: &raftlock_core::LockTable) -> io::Result<Vec<u8>> {
    state_machine::encode_snapshot(table)
}
