//! The simulator is strict: a power cut keeps exactly what fsync made
//! durable. Each test runs the `probe` example under the shim, cuts the
//! power, and looks at what the restored directory holds. The negative
//! cases are the point: a store that skips one fsync of a file, or one of
//! a directory, must lose what it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use raftlock_powerloss::{build_shim, Image, IMAGE_ENV, ROOT_ENV};

fn target_dir() -> PathBuf {
    // .../target/debug/deps/strict-HASH -> .../target
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| build_shim(&target_dir().join("powerloss-shim")).expect("build the shim"))
}

fn probe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(2).unwrap().join("examples/probe")
}

/// A fresh root (with `before` already durable in it) and image.
struct Disk {
    _tmp: TempDir,
    root: PathBuf,
    image: PathBuf,
}

impl Disk {
    fn new(before: &[(&str, &str)]) -> Disk {
        let tmp = TempDir::new();
        let root = tmp.0.join("root");
        std::fs::create_dir(&root).unwrap();
        for (name, text) in before {
            std::fs::write(root.join(name), text).unwrap();
        }
        let image = tmp.0.join("image");
        Disk {
            _tmp: tmp,
            root,
            image,
        }
    }

    /// Runs the operations under the shim; the process ends normally, as
    /// after a crash the page cache keeps what it wrote.
    fn run(&self, ops: &[&str]) {
        let status = Command::new(probe())
            .args(ops)
            .env("LD_PRELOAD", shim())
            .env("PROBE_ROOT", &self.root)
            .env(ROOT_ENV, &self.root)
            .env(IMAGE_ENV, &self.image)
            .status()
            .unwrap();
        assert!(status.success(), "probe failed: {status}");
    }

    fn cut(&self) {
        Image::new(&self.image).restore(&self.root).unwrap();
    }

    /// Runs the operations under the shim, then cuts the power.
    fn run_and_cut(&self, ops: &[&str]) {
        self.run(ops);
        self.cut();
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(name)).ok()
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("powerloss-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ops(text: &str) -> Vec<&str> {
    text.split(' ').collect()
}

#[test]
fn synced_file_in_synced_directory_survives() {
    let disk = Disk::new(&[]);
    disk.run_and_cut(&ops("create f hello -- fsync f -- fsync ."));
    assert_eq!(disk.read("f").as_deref(), Some("hello"));
}

#[test]
fn skipped_file_fsync_loses_the_data() {
    let disk = Disk::new(&[]);
    disk.run_and_cut(&ops("create f hello -- fsync ."));
    assert_eq!(
        disk.read("f").as_deref(),
        Some(""),
        "entry durable, data not"
    );
}

#[test]
fn skipped_directory_fsync_loses_the_file() {
    let disk = Disk::new(&[]);
    disk.run_and_cut(&ops("create f hello -- fsync f"));
    assert_eq!(disk.read("f"), None);
}

#[test]
fn writes_after_the_last_sync_are_lost() {
    let disk = Disk::new(&[("f", "old-old-old")]);
    disk.run_and_cut(&ops(
        "pwrite f 0 new -- fdatasync f -- pwrite f 4 NEW -- append f +tail",
    ));
    assert_eq!(disk.read("f").as_deref(), Some("new-old-old"));
}

#[test]
fn unsynced_overwrite_of_an_old_file_keeps_the_old_data() {
    let disk = Disk::new(&[("f", "durable")]);
    disk.run_and_cut(&ops("create f replaced -- fsync ."));
    assert_eq!(disk.read("f").as_deref(), Some("durable"));
}

#[test]
fn rename_needs_a_directory_fsync() {
    let disk = Disk::new(&[("current", "v1")]);
    disk.run_and_cut(&ops("create tmp v2 -- fsync tmp -- rename tmp current"));
    assert_eq!(disk.read("current").as_deref(), Some("v1"));
    assert_eq!(disk.read("tmp"), None);

    let disk = Disk::new(&[("current", "v1")]);
    disk.run_and_cut(&ops(
        "create tmp v2 -- fsync tmp -- rename tmp current -- fsync .",
    ));
    assert_eq!(disk.read("current").as_deref(), Some("v2"));
    assert_eq!(disk.read("tmp"), None);
}

#[test]
fn removal_needs_a_directory_fsync() {
    let disk = Disk::new(&[("f", "still here")]);
    disk.run_and_cut(&ops("remove f"));
    assert_eq!(disk.read("f").as_deref(), Some("still here"));

    let disk = Disk::new(&[("f", "gone")]);
    disk.run_and_cut(&ops("remove f -- fsync ."));
    assert_eq!(disk.read("f"), None);
}

#[test]
fn a_new_directory_needs_its_parent_synced() {
    let disk = Disk::new(&[]);
    disk.run_and_cut(&ops("mkdir d -- create d/f x -- fsync d/f -- fsync d"));
    assert!(!disk.root.join("d").exists());

    let disk = Disk::new(&[]);
    disk.run_and_cut(&ops(
        "mkdir d -- create d/f x -- fsync d/f -- fsync d -- fsync .",
    ));
    assert_eq!(disk.read("d/f").as_deref(), Some("x"));
}

#[test]
fn untouched_files_come_back_as_they_were() {
    let disk = Disk::new(&[("a", "alpha"), ("b", "beta")]);
    disk.run_and_cut(&ops("create c gamma"));
    assert_eq!(disk.read("a").as_deref(), Some("alpha"));
    assert_eq!(disk.read("b").as_deref(), Some("beta"));
    assert_eq!(disk.read("c"), None);
}

#[test]
fn a_crash_keeps_the_page_cache_for_the_next_process_to_sync() {
    // First process: writes, no sync, crashes (no power cut): the page
    // cache still holds the write. Second process: syncs, then the power
    // goes. The write must survive, since the second fsync covered it.
    let disk = Disk::new(&[("f", "old")]);
    disk.run(&ops("pwrite f 0 new"));
    disk.run(&ops("fsync f"));
    disk.cut();
    assert_eq!(disk.read("f").as_deref(), Some("new"));
}
