//! The LD_PRELOAD side: libc's write and sync calls, wrapped.
//!
//! Writes to files under the watched root are remembered as dirty ranges;
//! a successful `fsync`/`fdatasync` copies a file's dirty ranges into the
//! [`Image`] (or, for a directory, its entries); `sync`/`syncfs` do that
//! for the whole tree. Everything else passes straight through, and every
//! call reaches the real libc function first, so the process sees exactly
//! what it would without the shim. `sync_file_range` is not wrapped: it
//! makes nothing durable, and that is the point.
//!
//! Known gaps, all on the strict side (they can only make the image keep
//! less than a real disk would): writes through `mmap`, `O_SYNC`/`O_DSYNC`
//! descriptors and `copy_file_range` are not seen as written.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use libc::{iovec, off64_t, size_t, ssize_t};

use crate::image::{key_of, Image, Key, Range};
use crate::{IMAGE_ENV, ROOT_ENV};

thread_local! {
    /// Set while the shim itself does I/O, so its own writes pass through.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

struct Shim {
    root: PathBuf,
    image: Image,
    dirty: Mutex<HashMap<Key, Vec<Range>>>,
    /// Writes hold it shared, syncs exclusively: a sync then reads back
    /// exactly what its real call made durable, never a write that landed
    /// after it (which would make the image keep more than a disk would).
    gate: RwLock<()>,
}

static SHIM: OnceLock<Option<Shim>> = OnceLock::new();

/// Runs when the shared object is loaded, before the program's `main`:
/// takes the tree as it is now as durable.
#[used]
#[link_section = ".init_array"]
static START: extern "C" fn() = start;

extern "C" fn start() {
    busy(|| {
        SHIM.get_or_init(|| {
            let root = std::env::var_os(ROOT_ENV)?;
            let image = Image::new(std::env::var_os(IMAGE_ENV)?);
            let root = Path::new(&root)
                .canonicalize()
                .unwrap_or_else(|e| fatal(&e));
            let mut dirty = HashMap::new();
            if image.exists() {
                // A restart after a crash without power loss: what the last
                // process wrote may still sit unsynced in the page cache,
                // and the first fsync of a file makes all of it durable.
                all_files(&root, &mut dirty).unwrap_or_else(|e| fatal(&e));
            } else {
                image.start(&root).unwrap_or_else(|e| fatal(&e));
            }
            Some(Shim {
                root,
                image,
                dirty: Mutex::new(dirty),
                gate: RwLock::default(),
            })
        });
    });
}

/// Every file under `dir`, whole, as a dirty range.
fn all_files(dir: &Path, dirty: &mut HashMap<Key, Vec<Range>>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            all_files(&path, dirty)?;
        } else if meta.is_file() {
            dirty.insert(key_of(&meta), vec![(0, meta.len())]);
        }
    }
    Ok(())
}

fn fatal(e: &dyn std::fmt::Display) -> ! {
    eprintln!("raftlock-powerloss: {e}");
    std::process::abort()
}

fn busy<T>(work: impl FnOnce() -> T) -> T {
    BUSY.with(|b| b.set(true));
    let out = work();
    BUSY.with(|b| b.set(false));
    out
}

/// The shim, unless it is off or already on this thread's stack.
fn active() -> Option<&'static Shim> {
    if BUSY.with(|b| b.get()) {
        return None;
    }
    SHIM.get()?.as_ref()
}

/// Looks up the next definition of a libc symbol (the real one).
fn real<F: Copy>(slot: &'static OnceLock<usize>, name: &CStr) -> F {
    let addr = *slot.get_or_init(|| {
        // SAFETY: dlsym with a valid NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if p.is_null() {
            fatal(&format!("no libc symbol {name:?}"));
        }
        p as usize
    });
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    // SAFETY: F is the function pointer type of the named symbol.
    unsafe { std::mem::transmute_copy(&addr) }
}

macro_rules! real {
    ($name:literal, $ty:ty) => {{
        static SLOT: OnceLock<usize> = OnceLock::new();
        real::<$ty>(&SLOT, $name)
    }};
}

impl Shim {
    fn path_of(&self, fd: c_int) -> Option<PathBuf> {
        let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        path.starts_with(&self.root).then_some(path)
    }

    fn written(&self, fd: c_int, start: Option<u64>, len: usize) {
        if len == 0 {
            return;
        }
        busy(|| {
            let file = borrow(fd);
            let Ok(meta) = file.metadata() else { return };
            if !meta.is_file() || self.path_of(fd).is_none() {
                return;
            }
            let start = start.unwrap_or_else(|| meta.len().saturating_sub(len as u64));
            let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
            dirty
                .entry(key_of(&meta))
                .or_default()
                .push((start, start + len as u64));
        });
    }

    fn synced(&self, fd: c_int) {
        busy(|| {
            let file = borrow(fd);
            let Ok(meta) = file.metadata() else { return };
            let Some(path) = self.path_of(fd) else { return };
            let result = if meta.is_dir() {
                self.image.record_dir(&path, &meta)
            } else if meta.is_file() {
                let key = key_of(&meta);
                let ranges = self.take_dirty(&key);
                // The program's descriptor may be write-only: read the
                // same inode back through a descriptor of our own.
                File::open(format!("/proc/self/fd/{fd}"))
                    .and_then(|reader| self.image.record_file(&key, &reader, &ranges))
            } else {
                Ok(())
            };
            result.unwrap_or_else(|e| fatal(&format!("recording {}: {e}", path.display())));
        });
    }

    /// `sync`/`syncfs`: everything under the root becomes durable.
    fn synced_all(&self) {
        busy(|| {
            let result = self.sync_tree(&self.root.clone());
            result.unwrap_or_else(|e| fatal(&format!("sync: {e}")));
        });
    }

    fn sync_tree(&self, dir: &Path) -> std::io::Result<()> {
        self.image.record_dir(dir, &std::fs::metadata(dir)?)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                self.sync_tree(&path)?;
            } else if meta.is_file() {
                let key = key_of(&meta);
                let ranges = self.take_dirty(&key);
                self.image.record_file(&key, &File::open(&path)?, &ranges)?;
            }
        }
        Ok(())
    }

    fn take_dirty(&self, key: &str) -> Vec<Range> {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        dirty.remove(key).unwrap_or_default()
    }
}

/// A `File` view of a descriptor the program owns; never closes it.
fn borrow(fd: c_int) -> ManuallyDrop<File> {
    // SAFETY: the File is never dropped, so the program's fd stays open.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

fn position(fd: c_int) -> Option<u64> {
    // SAFETY: lseek has no memory effects.
    let pos = unsafe { libc::lseek64(fd, 0, libc::SEEK_CUR) };
    // SAFETY: fcntl F_GETFL has no memory effects.
    let append = unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_APPEND != 0;
    // Appends land at the end: worked out from the length afterwards.
    (pos >= 0 && !append).then_some(pos as u64)
}

/// Runs a real write call and records what it wrote. `start` says where
/// it writes (None: work out the position first).
fn tracked_write(fd: c_int, start: Option<u64>, call: impl FnOnce() -> ssize_t) -> ssize_t {
    let Some(shim) = active() else {
        return call();
    };
    let _shared = shim.gate.read().unwrap_or_else(|e| e.into_inner());
    let start = start.or_else(|| position(fd));
    let ret = call();
    if ret > 0 {
        shim.written(fd, start, ret as usize);
    }
    ret
}

/// Runs a real sync call and, if it succeeded, records what it made durable.
fn tracked_sync(call: impl FnOnce() -> c_int, record: impl FnOnce(&Shim)) -> c_int {
    let Some(shim) = active() else {
        return call();
    };
    let _exclusive = shim.gate.write().unwrap_or_else(|e| e.into_inner());
    let ret = call();
    if ret == 0 {
        record(shim);
    }
    ret
}

type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t, off64_t) -> ssize_t;
type WritevFn = unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t;
type PwritevFn = unsafe extern "C" fn(c_int, *const iovec, c_int, off64_t) -> ssize_t;
type Pwritev2Fn = unsafe extern "C" fn(c_int, *const iovec, c_int, off64_t, c_int) -> ssize_t;
type FallocateFn = unsafe extern "C" fn(c_int, c_int, off64_t, off64_t) -> c_int;
type FdFn = unsafe extern "C" fn(c_int) -> c_int;
type SyncFn = unsafe extern "C" fn();

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    tracked_write(fd, None, || real!(c"write", WriteFn)(fd, buf, n))
}

/// A write at an explicit offset: `pwrite`-like (buffer, length) or
/// `pwritev`-like (iovecs, count), under each name glibc exports.
macro_rules! positioned_write {
    ($name:ident, $sym:literal, $buf:ty, $len:ty, $real:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: $buf, n: $len, at: off64_t) -> ssize_t {
            tracked_write(fd, Some(at as u64), || real!($sym, $real)(fd, buf, n, at))
        }
    };
}
positioned_write!(pwrite, c"pwrite64", *const c_void, size_t, PwriteFn);
positioned_write!(pwrite64, c"pwrite64", *const c_void, size_t, PwriteFn);
positioned_write!(pwritev, c"pwritev64", *const iovec, c_int, PwritevFn);
positioned_write!(pwritev64, c"pwritev64", *const iovec, c_int, PwritevFn);

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    tracked_write(fd, None, || real!(c"writev", WritevFn)(fd, iov, count))
}

macro_rules! positioned_writev2 {
    ($name:ident, $sym:literal) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const iovec,
            count: c_int,
            at: off64_t,
            flags: c_int,
        ) -> ssize_t {
            // An offset of -1 means "at the current position".
            let start = (at >= 0).then_some(at as u64);
            tracked_write(fd, start, || {
                real!($sym, Pwritev2Fn)(fd, iov, count, at, flags)
            })
        }
    };
}
positioned_writev2!(pwritev2, c"pwritev64v2");
positioned_writev2!(pwritev64v2, c"pwritev64v2");

macro_rules! fallocate_fn {
    ($name:ident, $sym:literal) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, mode: c_int, at: off64_t, len: off64_t) -> c_int {
            let mut ret = 0;
            // Punched or zeroed ranges change content: dirty them.
            tracked_write(fd, Some(at as u64), || {
                ret = real!($sym, FallocateFn)(fd, mode, at, len);
                if ret == 0 {
                    len as ssize_t
                } else {
                    0
                }
            });
            ret
        }
    };
}
fallocate_fn!(fallocate, c"fallocate64");
fallocate_fn!(fallocate64, c"fallocate64");

#[no_mangle]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    tracked_sync(|| real!(c"fsync", FdFn)(fd), |shim| shim.synced(fd))
}

#[no_mangle]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    tracked_sync(|| real!(c"fdatasync", FdFn)(fd), |shim| shim.synced(fd))
}

#[no_mangle]
pub unsafe extern "C" fn sync() {
    tracked_sync(
        || {
            real!(c"sync", SyncFn)();
            0
        },
        Shim::synced_all,
    );
}

#[no_mangle]
pub unsafe extern "C" fn syncfs(fd: c_int) -> c_int {
    tracked_sync(|| real!(c"syncfs", FdFn)(fd), Shim::synced_all)
}
