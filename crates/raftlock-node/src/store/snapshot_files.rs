//! Snapshot data on its way between nodes, as files rather than memory.
//!
//! openraft writes each chunk a leader sends at the chunk's offset into
//! the snapshot data we hand it. In memory, a chunk at offset 2^40 would
//! make the node zero-fill a terabyte; in a file it is a sparse hole, and
//! the network refuses any chunk past `--max-snapshot-bytes` before
//! openraft sees it (`crate::network`). The durable copy of the current
//! snapshot stays in sled (`state_machine`); these files only carry it to
//! and from openraft.
//!
//! Every file is unlinked as soon as it is opened: its handle is all
//! anyone needs, and a crash then leaves nothing behind. The few left by a
//! crash between the two steps are removed when the store opens.

use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The default `--max-snapshot-bytes`: the largest snapshot a node accepts
/// from a leader. A table at the default quotas' one million locks, all
/// held, with names of the longest length (512 bytes), encodes to about
/// 1.1 GB (about 1,120 bytes per lock, measured with 10,000 such locks),
/// so this leaves room for the sessions and their remembered answers. It
/// may be raised up to [`crate::codec::MAX_DECODE_BYTES`], past which a
/// snapshot could not be decoded anyway.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 2 << 30;

/// Where snapshot files are made: `snapshots/incoming` (from a leader)
/// and `snapshots/outgoing` (to followers) in the data dir.
pub(crate) struct SnapshotFiles {
    incoming: PathBuf,
    outgoing: PathBuf,
    /// Makes each file name unique within this process.
    next: AtomicU64,
}

impl SnapshotFiles {
    /// Creates the directories beside the sled directory `sled_dir` and
    /// removes whatever an earlier process left in them.
    pub fn open(sled_dir: &Path) -> io::Result<Self> {
        let data_dir = sled_dir.parent().unwrap_or(sled_dir);
        let root = data_dir.join("snapshots");
        let files = SnapshotFiles {
            incoming: root.join("incoming"),
            outgoing: root.join("outgoing"),
            next: AtomicU64::new(0),
        };
        for dir in [&files.incoming, &files.outgoing] {
            fs::create_dir_all(dir)?;
            remove_leftovers(dir)?;
        }
        Ok(files)
    }

    /// An empty file for openraft to write a leader's chunks into.
    pub fn incoming(&self) -> io::Result<tokio::fs::File> {
        Ok(tokio::fs::File::from_std(self.create(&self.incoming)?))
    }

    /// A file holding `data`, positioned at its start, for openraft to send.
    pub fn outgoing(&self, data: &[u8]) -> io::Result<tokio::fs::File> {
        let mut file = self.create(&self.outgoing)?;
        file.write_all(data)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(tokio::fs::File::from_std(file))
    }

    /// A new, already unlinked, read-write file in `dir`.
    fn create(&self, dir: &Path) -> io::Result<fs::File> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(file),
            // Another store opening on the same directory cleared it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(file),
            Err(e) => Err(e),
        }
    }
}

/// Reads a whole snapshot file from its start, refusing more than `limit`
/// bytes whatever its length claims.
pub(crate) fn read_all(mut file: fs::File, limit: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    crate::codec::read_bounded(file, limit)
        .map_err(|e| io::Error::new(e.kind(), format!("snapshot file: {e}")))
}

fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "removed a snapshot file left by an earlier process")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_leave_nothing_behind_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("sled");
        let files = SnapshotFiles::open(&sled_dir).unwrap();
        let _incoming = files.incoming().unwrap();
        let _outgoing = files.outgoing(b"snapshot").unwrap();
        let incoming_dir = dir.path().join("snapshots/incoming");
        assert_eq!(fs::read_dir(&incoming_dir).unwrap().count(), 0);

        fs::write(incoming_dir.join("left-by-a-crash"), b"half a snapshot").unwrap();
        SnapshotFiles::open(&sled_dir).unwrap();
        assert_eq!(fs::read_dir(&incoming_dir).unwrap().count(), 0);
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::open(&dir.path().join("sled")).unwrap();
        let file = |data: &[u8]| files.outgoing(data).unwrap();
        let read = |f: tokio::fs::File| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            read_all(runtime.block_on(f.into_std()), 4)
        };
        assert_eq!(read(file(b"four")).unwrap(), b"four");
        assert!(read(file(b"fives")).is_err());
    }
}
