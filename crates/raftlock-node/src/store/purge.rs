//! Deleting log entries behind a purge point, on one long-lived thread.
//!
//! openraft never reads below the purge point, which the log store saves
//! at once; the entries themselves can go later. Deleting thousands of them
//! in the append path would hold up appends, so this thread deletes them
//! in small batches, one purge point at a time, however many arrive.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::sled_to_io;

/// Old entries deleted per batch: small enough that an append waiting for
/// sled's tree lock is not held up for long.
const PURGE_BATCH: u64 = 1000;

/// Hands purge points to the purge thread.
pub(crate) struct Purger {
    up_to: Option<mpsc::Sender<u64>>,
    thread: Option<JoinHandle<()>>,
}

impl Purger {
    pub fn start(log: sled::Tree) -> io::Result<Self> {
        let (up_to, requests) = mpsc::channel::<u64>();
        let thread = std::thread::Builder::new()
            .name("raftlock-purge".into())
            .spawn(move || {
                while let Ok(first) = requests.recv() {
                    // Only the highest pending point matters.
                    let last = requests.try_iter().fold(first, u64::max);
                    if let Err(e) = delete_through(&log, last) {
                        tracing::warn!(%e, "purging old log entries");
                    }
                }
            })?;
        Ok(Purger {
            up_to: Some(up_to),
            thread: Some(thread),
        })
    }

    /// Deletes, in the background, every entry at or below `index`.
    pub fn purge_through(&self, index: u64) {
        if let Some(up_to) = &self.up_to {
            // A dead purge thread only leaves old entries on disk, which
            // nothing reads: not worth stopping the node for.
            if up_to.send(index).is_err() {
                tracing::warn!("the log purge thread is gone; old entries stay on disk");
            }
        }
    }
}

impl Drop for Purger {
    /// Waits for the purge under way, so the database is closed when the
    /// store is.
    fn drop(&mut self) {
        self.up_to.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn delete_through(log: &sled::Tree, index: u64) -> io::Result<()> {
    let first = log.first().map_err(sled_to_io)?;
    let Some(mut from) = first.and_then(|(key, _)| index_of(&key)) else {
        return Ok(());
    };
    while from <= index {
        let to = index.min(from.saturating_add(PURGE_BATCH - 1));
        remove_indexes(log, from, to)?;
        from = to + 1;
    }
    Ok(())
}

/// Removes every entry with an index from `from` to `to_inclusive`.
pub(crate) fn remove_indexes(log: &sled::Tree, from: u64, to_inclusive: u64) -> io::Result<()> {
    let mut batch = sled::Batch::default();
    for key in log.range(key(from)..=key(to_inclusive)).keys() {
        batch.remove(key.map_err(sled_to_io)?);
    }
    log.apply_batch(batch).map_err(sled_to_io)
}

/// The log tree's key for an index: big-endian, so keys sort by index.
pub(crate) fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index a log key holds; `None` for a key that is not one.
fn index_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_through_the_highest_point_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let log = db.open_tree("log").unwrap();
        for index in 1..=2500u64 {
            log.insert(key(index), &b"entry"[..]).unwrap();
        }
        let purger = Purger::start(log.clone()).unwrap();
        purger.purge_through(10);
        purger.purge_through(2100);
        drop(purger); // waits for the thread
        let first = log.first().unwrap().map(|(k, _)| index_of(&k).unwrap());
        assert_eq!(first, Some(2101));
        assert_eq!(log.len(), 400);
    }
}
