//! The durable image of a directory tree: what a power cut would leave of
//! it, kept in a separate directory (the image) as the process under test
//! syncs.
//!
//! The model is the strict one POSIX promises and lazyfs enforces: a
//! file's data is durable up to its last `fsync`/`fdatasync` (of any
//! descriptor of the file), and a directory's entries (creations, renames,
//! removals) are durable up to its last `fsync`. Nothing else survives.
//! Files and directories are known by inode (device, inode number and
//! birth time, so a reused inode number is a new file), which is why a
//! rename keeps a file's durable data and a directory's durable entries.
//!
//! Layout of the image directory:
//! - `root`: the key of the tree's root directory;
//! - `files/KEY`: a file's durable bytes;
//! - `dirs/KEY`: a directory's durable entries, one per line:
//!   `f KEY HEXNAME` or `d KEY HEXNAME`.
//!
//! A file or directory whose entry is durable but whose own data never was
//! comes back empty.

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Identifies a file or directory for as long as it exists.
pub type Key = String;

pub fn key_of(meta: &Metadata) -> Key {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}-{:x}", meta.dev(), meta.ino(), born)
}

/// A byte range `[start, end)` written since the file's last sync.
pub type Range = (u64, u64);

pub struct Image {
    dir: PathBuf,
}

impl Image {
    pub fn new(dir: impl Into<PathBuf>) -> Image {
        Image { dir: dir.into() }
    }

    pub fn exists(&self) -> bool {
        self.dir.join("root").exists()
    }

    /// Takes everything under `root` as durable, as it is right after a
    /// restore or before the process under test first runs.
    pub fn start(&self, root: &Path) -> io::Result<()> {
        fs::create_dir_all(self.dir.join("files"))?;
        fs::create_dir_all(self.dir.join("dirs"))?;
        let root_meta = fs::metadata(root)?;
        self.scan(root, &root_meta)?;
        self.replace(&self.dir.join("root"), key_of(&root_meta).as_bytes())
    }

    fn scan(&self, dir: &Path, meta: &Metadata) -> io::Result<()> {
        self.record_dir(dir, meta)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                self.scan(&path, &meta)?;
            } else if meta.is_file() {
                fs::copy(&path, self.file_path(&key_of(&meta)))?;
            }
        }
        Ok(())
    }

    /// Makes `dir`'s current entries durable (its `fsync` returned).
    pub fn record_dir(&self, dir: &Path, meta: &Metadata) -> io::Result<()> {
        let mut listing = String::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            // Gone since it was listed: then it is not an entry any more.
            let Ok(child) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let kind = if child.is_dir() {
                'd'
            } else if child.is_file() {
                'f'
            } else {
                continue;
            };
            listing.push_str(&format!(
                "{kind} {} {}\n",
                key_of(&child),
                hex(entry.file_name().as_bytes())
            ));
        }
        self.replace(
            &self.dir.join("dirs").join(key_of(meta)),
            listing.as_bytes(),
        )
    }

    /// Makes a file's data durable (its `fsync` or `fdatasync` returned):
    /// the ranges written since its last sync, read back from `file`, and
    /// its length now.
    pub fn record_file(&self, key: &str, file: &File, dirty: &[Range]) -> io::Result<()> {
        let len = file.metadata()?.len();
        let image = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.file_path(key))?;
        let mut buf = vec![0u8; 1 << 16];
        for &(start, end) in dirty {
            let mut at = start;
            while at < end.min(len) {
                let want = (end.min(len) - at).min(buf.len() as u64) as usize;
                let got = file.read_at(&mut buf[..want], at)?;
                if got == 0 {
                    break;
                }
                image.write_all_at(&buf[..got], at)?;
                at += got as u64;
            }
        }
        image.set_len(len)
    }

    fn file_path(&self, key: &str) -> PathBuf {
        self.dir.join("files").join(key)
    }

    /// Writes an image file whole or not at all: the process under test
    /// can be killed in the middle of any sync.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        File::create(&tmp)?.write_all(bytes)?;
        fs::rename(tmp, path)
    }

    /// Power comes back: replaces everything under `root` with the durable
    /// image. `root` itself stays (it was there before the process ran).
    pub fn restore(&self, root: &Path) -> io::Result<()> {
        let root_key = fs::read_to_string(self.dir.join("root"))?;
        for entry in fs::read_dir(root)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        self.rebuild(root, root_key.trim(), &mut HashSet::new())
    }

    fn rebuild(&self, dir: &Path, key: &str, seen: &mut HashSet<Key>) -> io::Result<()> {
        if !seen.insert(key.to_owned()) {
            return Err(io::Error::other(format!(
                "directory {key} is its own ancestor"
            )));
        }
        let listing = match fs::read_to_string(self.dir.join("dirs").join(key)) {
            Ok(listing) => listing,
            // Created, but its entries were never synced.
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        for line in listing.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(kind), Some(child), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(io::Error::other(format!("bad image line {line:?}")));
            };
            let path = dir.join(std::ffi::OsStr::from_bytes(&unhex(name)?));
            match kind {
                "d" => {
                    fs::create_dir(&path)?;
                    self.rebuild(&path, child, seen)?;
                }
                _ => {
                    let mut out = File::create(&path)?;
                    match File::open(self.file_path(child)) {
                        Ok(mut data) => {
                            data.seek(SeekFrom::Start(0))?;
                            let mut bytes = Vec::new();
                            data.read_to_end(&mut bytes)?;
                            out.write_all(&bytes)?;
                        }
                        // Its entry is durable, its data never was.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> io::Result<Vec<u8>> {
    let bad = || io::Error::other(format!("bad hex name {text:?}"));
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}
