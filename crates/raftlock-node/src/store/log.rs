//! The Raft log and vote in sled, with group commit: appends are written
//! at once and synced (flush + fdatasync) by one background thread for
//! every append waiting at that time. A follower's appends are acknowledged
//! to openraft after their sync; a leader's own entries at once, with the
//! gates in [`super::early_ack`] keeping them invisible until synced.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};

use super::early_ack::EarlyAck;
use super::purge::{key, remove_indexes, Purger};
use super::{decode, encode, sled_to_io, Durable};
use crate::fail_stop;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    syncer: Arc<Syncer>,
    purger: Arc<Purger>,
    /// First index not purged (0: nothing purged). Entries below it may
    /// still be on disk until the purger deletes them.
    first_kept: Arc<AtomicU64>,
    /// Decides which appends are acknowledged before their sync.
    early_ack: Arc<EarlyAck>,
}

impl LogStore {
    pub fn open(durable: Durable, early_ack: Arc<EarlyAck>) -> io::Result<Self> {
        let log = durable.tree("log")?;
        let store = LogStore {
            purger: Arc::new(Purger::start(log.clone())?),
            log,
            meta: durable.tree("meta")?,
            syncer: Arc::new(Syncer::start(durable, early_ack.clone())?),
            first_kept: Arc::new(AtomicU64::new(0)),
            early_ack,
        };
        if let Some(purged) = store.get_meta::<LogId>(LAST_PURGED)? {
            // Any bytes may decode as a log id: this one is from a damaged disk.
            let first_kept = purged.index.checked_add(1).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "purge point at u64::MAX")
            })?;
            store.first_kept.store(first_kept, Ordering::SeqCst);
        }
        if let Some(vote) = store.get_meta(VOTE)? {
            store.early_ack.vote_saved(vote);
        }
        Ok(store)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(sled_to_io)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        self.meta.insert(key, encode(value)?).map_err(sled_to_io)?;
        Ok(())
    }

    fn last_log_id(&self) -> io::Result<Option<LogId>> {
        match self.log.last().map_err(sled_to_io)? {
            Some((key, bytes)) => Ok(Some(decode_entry(&key, &bytes)?.log_id)),
            None => Ok(None),
        }
    }
}

/// Decodes the entry stored under `key`. openraft assumes an entry read
/// back for an index has that index, and may panic if not: an entry
/// filed under another index (a damaged or altered disk) is an error here.
fn decode_entry(key: &[u8], bytes: &[u8]) -> io::Result<Entry> {
    let entry: Entry = decode(bytes)?;
    if key != super::purge::key(entry.log_id.index) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "log entry {} is stored under key {key:02x?}",
                entry.log_id.index
            ),
        ));
    }
    Ok(entry)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        }
        .max(self.first_kept.load(Ordering::SeqCst));
        let end = match range.end_bound() {
            Bound::Included(i) => Some(*i),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => Some(i - 1),
            Bound::Unbounded => None,
        };
        let iter = match end {
            Some(end) if end < start => return Ok(Vec::new()),
            Some(end) => self.log.range(key(start)..=key(end)),
            None => self.log.range(key(start)..),
        };
        let mut entries = Vec::new();
        let mut expected = None;
        for item in iter {
            let (key, bytes) = item.map_err(|e| StorageIOError::read_logs(&sled_to_io(e)))?;
            let entry = decode_entry(&key, &bytes).map_err(|e| StorageIOError::read_logs(&e))?;
            // openraft expects consecutive entries: a hole is damage too.
            if let Some(expected) = expected.filter(|i| *i != entry.log_id.index) {
                let hole = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("log entry {expected} is missing"),
                );
                return Err(StorageIOError::read_logs(&hole).into());
            }
            expected = Some(entry.log_id.index.saturating_add(1));
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = |e: io::Error| StorageIOError::read_logs(&e);
        let last_purged: Option<LogId> = self.get_meta(LAST_PURGED).map_err(read)?;
        // Entries at or below the purge point may linger while the
        // background purge runs: they never count as the last entry.
        let last = self.last_log_id().map_err(read)?.max(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let write = |e: io::Error| StorageIOError::write_vote(&e);
        self.put_meta(VOTE, vote).map_err(write)?;
        // A vote must survive a crash, or this node could vote twice in a term.
        self.syncer.barrier().await.map_err(write)?;
        self.early_ack.vote_saved(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying from the last snapshot.
        self.put_meta(COMMITTED, &committed)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(COMMITTED)
            .map_err(|e| StorageIOError::read(&e))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let write = |e: io::Error| StorageIOError::write_logs(&e);
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let [only] = entries.as_slice() {
            // The usual case. A plain insert: sled's apply_batch first rolls
            // its IO buffer and writes a batch marker, two more serial
            // pwrite + sync_file_range calls in front of our flush.
            self.log
                .insert(key(only.log_id.index), encode(only).map_err(write)?)
                .map_err(|e| write(sled_to_io(e)))?;
        } else {
            // Several (a follower catching up): all or none after a crash.
            let mut batch = sled::Batch::default();
            for entry in &entries {
                batch.insert(&key(entry.log_id.index), encode(entry).map_err(write)?);
            }
            self.log
                .apply_batch(batch)
                .map_err(|e| write(sled_to_io(e)))?;
        }
        match self.early_ack.acknowledge_early(&entries) {
            Some(seq) => {
                // Replicate now, sync alongside the followers (module docs).
                callback.log_io_completed(Ok(()));
                self.syncer.send(SyncJob::Acknowledged(seq));
            }
            None => self.syncer.send(SyncJob::Appended(callback)),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let write = |e: io::Error| StorageIOError::write_logs(&e);
        remove_indexes(&self.log, log_id.index, u64::MAX).map_err(write)?;
        // Conflicting entries must not come back after a crash.
        self.syncer.barrier().await.map_err(write)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let write = |e: io::Error| StorageIOError::write_logs(&e);
        // The purge point is what counts (openraft never reads below it);
        // the entries themselves go in the background (see `purge`).
        self.put_meta(LAST_PURGED, &log_id).map_err(write)?;
        self.first_kept
            .fetch_max(log_id.index.saturating_add(1), Ordering::SeqCst);
        self.purger.purge_through(log_id.index);
        Ok(())
    }
}

impl LogStore {
    /// For tests: no sync starts while the guard lives.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn pause_syncs(&self) -> std::sync::MutexGuard<'_, ()> {
        fail_stop::lock(&self.syncer.paused)
    }
}

/// The group-commit thread: each flush + fdatasync covers every append
/// queued before it started, then acknowledges them in order.
struct Syncer {
    jobs: Option<mpsc::Sender<SyncJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held by tests to hold syncs back (see `pause_syncs`).
    #[cfg(any(test, feature = "test-hooks"))]
    paused: Arc<Mutex<()>>,
}

enum SyncJob {
    /// Acknowledge to openraft once synced.
    Appended(LogFlushed<TypeConfig>),
    /// Already acknowledged: report to [`EarlyAck`] once synced.
    Acknowledged(u64),
    Barrier(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl Drop for Syncer {
    /// Waits for the last syncs, so the database is closed when the store is.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Syncer {
    fn start(durable: Durable, early_ack: Arc<EarlyAck>) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<SyncJob>();
        let paused = Arc::new(Mutex::new(()));
        let thread = {
            let paused = paused.clone();
            std::thread::Builder::new()
                .name("raftlock-fsync".into())
                .spawn(move || run_syncs(&durable, &early_ack, &queue, &paused))?
        };
        Ok(Syncer {
            jobs: Some(jobs),
            thread: Some(thread),
            #[cfg(any(test, feature = "test-hooks"))]
            paused,
        })
    }

    fn send(&self, job: SyncJob) {
        if let Some(jobs) = &self.jobs {
            // The thread only exits when this sender is dropped, so a
            // failed send means it died: entries acknowledged early would
            // never be synced, and the node would hang as a leader.
            if jobs.send(job).is_err() {
                tracing::error!("the fsync thread is gone; aborting");
                std::process::abort();
            }
        }
    }

    async fn barrier(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(SyncJob::Barrier(tx));
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("fsync thread stopped")))
    }
}

/// The fsync thread, until the store closes: each round syncs once for
/// every job queued when it starts.
fn run_syncs(
    durable: &Durable,
    early_ack: &EarlyAck,
    queue: &mpsc::Receiver<SyncJob>,
    paused: &Mutex<()>,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let result = timed_sync(durable, paused);
        let acknowledged = report(jobs, &result);
        settle_early_acks(early_ack, acknowledged, &result);
    }
}

fn timed_sync(durable: &Durable, paused: &Mutex<()>) -> io::Result<()> {
    let started = std::time::Instant::now();
    let result = {
        let _unpaused = fail_stop::lock(paused);
        durable.sync()
    };
    crate::metrics::fsync(started.elapsed());
    result
}

/// Tells each job how the sync went; returns the last early-acknowledged
/// append it covered.
fn report(jobs: Vec<SyncJob>, result: &io::Result<()>) -> Option<u64> {
    let mut acknowledged = None;
    for job in jobs {
        let result = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        match job {
            SyncJob::Appended(callback) => callback.log_io_completed(result),
            SyncJob::Acknowledged(seq) => acknowledged = acknowledged.max(Some(seq)),
            SyncJob::Barrier(done) => {
                let _ = done.send(result);
            }
        }
    }
    acknowledged
}

/// Marks the early-acknowledged entries a sync covered as durable, or, if
/// it failed while any are pending, stops the process.
fn settle_early_acks(early_ack: &EarlyAck, acknowledged: Option<u64>, result: &io::Result<()>) {
    match result {
        Ok(()) => {
            if let Some(seq) = acknowledged {
                early_ack.synced(seq);
            }
        }
        // openraft already counts early-acknowledged entries (this batch's
        // among them) as on disk, and a failed sync is never retried (see
        // `Durable`): the only safe way on is to stop.
        Err(e) if early_ack.any_pending() => {
            tracing::error!(%e, "sync failed with log entries acknowledged before it; aborting");
            std::process::abort();
        }
        Err(_) => {}
    }
}
