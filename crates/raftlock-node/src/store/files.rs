//! Durability of the files and directories around sled's `db` file.
//!
//! sled 0.34 writes pages larger than its blob threshold to files of their
//! own under `blobs/`, writes its own `conf` and `snap.*` files, and never
//! fsyncs any of them or a directory. After a power cut `db` could then
//! point to a blob that never reached the disk, and a directory entry
//! (of `sled/` itself in the data dir, of a new blob) could be missing. So
//! each sync also fsyncs every such file that is new or has grown since
//! the last sync, and every directory whose entries changed. Blobs go
//! before `db` (so durable pages never point at a missing blob), the
//! directory holding `db` after it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// What was last made durable in one directory: each file's length.
#[derive(Default)]
struct Synced(BTreeMap<OsString, u64>);

pub(crate) struct Files {
    /// The sled directory; `db` inside it is synced by the caller.
    dir: PathBuf,
    top: Synced,
    blobs: Synced,
}

impl Files {
    pub fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
            top: Synced::default(),
            blobs: Synced::default(),
        }
    }

    /// Before `db`'s fdatasync: blob files and other files sled wrote.
    pub fn sync_before_db(&mut self) -> io::Result<()> {
        let blobs = self.dir.join("blobs");
        if blobs.is_dir() && sync_changed(&blobs, &mut self.blobs, |_| true)? {
            sync_dir(&blobs)?;
        }
        Ok(())
    }

    /// After `db`'s fdatasync: the sled directory's own files and entries.
    pub fn sync_after_db(&mut self) -> io::Result<()> {
        if sync_changed(&self.dir, &mut self.top, |name| name != "db")? {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Fsyncs the files in `dir` (those `wanted`) that are new or changed
/// length since the last call; returns whether the set of names changed.
fn sync_changed(
    dir: &Path,
    synced: &mut Synced,
    wanted: impl Fn(&std::ffi::OsStr) -> bool,
) -> io::Result<bool> {
    let mut now = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(meta) = entry.metadata() else {
            continue; // removed while we looked
        };
        let name = entry.file_name();
        let len = if meta.is_file() { meta.len() } else { 0 };
        if meta.is_file() && wanted(&name) && synced.0.get(&name) != Some(&len) {
            match File::open(entry.path()) {
                Ok(file) => file.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        now.insert(name, len);
    }
    let names_changed = !now.keys().eq(synced.0.keys());
    synced.0 = now;
    Ok(names_changed)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all` that also makes each directory it creates durable
/// in its parent.
pub(crate) fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
        fs::create_dir(dir).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })?;
        sync_dir(parent)
    } else {
        fs::create_dir(dir)
    }
}

/// The mark a failed sync leaves beside the sled directory. Linux may drop
/// the pages a failed fsync could not write and report the failure only
/// once, so a later start that syncs again "successfully" would trust data
/// that is not on disk. The mark makes every later start refuse.
pub(crate) struct FailedMark(PathBuf);

impl FailedMark {
    pub fn beside(dir: &Path) -> FailedMark {
        let data_dir = dir.parent().unwrap_or(dir);
        FailedMark(data_dir.join("SYNC-FAILED"))
    }

    /// Refuses to open a data dir whose earlier sync failed.
    pub fn check(&self) -> io::Result<()> {
        match fs::read_to_string(&self.0) {
            Ok(what) => Err(io::Error::other(format!(
                "{} exists: an fsync of this node's data failed before ({}), so what is \
                 on disk cannot be trusted. Wipe the data dir and add the node back to \
                 the cluster (see docs/operations.md, \"A node that lost a write\")",
                self.0.display(),
                what.trim()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Best effort: the disk that failed a sync may fail this too.
    pub fn set(&self, error: &io::Error) {
        let written = fs::write(&self.0, format!("{error}\n"))
            .and_then(|()| File::open(&self.0)?.sync_all())
            .and_then(|()| sync_dir(self.0.parent().unwrap_or(Path::new("."))));
        if let Err(e) = written {
            tracing::error!(%e, mark = %self.0.display(), "could not leave the failed-sync mark");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sync_leaves_a_mark_that_refuses_later_opens() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("data/sled");
        create_dir_durably(&sled_dir).unwrap();
        let mark = FailedMark::beside(&sled_dir);
        mark.check().unwrap();
        mark.set(&io::Error::other("EIO on fdatasync"));
        let refused = FailedMark::beside(&sled_dir).check().unwrap_err();
        assert!(
            refused.to_string().contains("EIO on fdatasync"),
            "{refused}"
        );
        assert!(crate::store::Durable::open(&sled_dir).is_err());
    }
}
