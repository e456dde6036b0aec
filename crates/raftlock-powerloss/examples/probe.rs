//! Runs file operations given as arguments, through Rust's std as raftlock
//! does, so the power-loss tests can check what the shim keeps of them.
//!
//! `probe OP ARGS... [-- OP ARGS...]`, paths relative to `$PROBE_ROOT`:
//! `create P TEXT`, `append P TEXT`, `pwrite P OFFSET TEXT`, `fsync P`,
//! `fdatasync P`, `mkdir P`, `rename FROM TO`, `remove P`.
//! `fsync` and `fdatasync` open the path anew: a sync covers the file,
//! whichever descriptor wrote it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var_os("PROBE_ROOT").expect("PROBE_ROOT"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    for op in args.split(|a| a == "--") {
        let path = |i: usize| root.join(&op[i]);
        match op[0].as_str() {
            "create" => File::create(path(1))
                .and_then(|mut f| f.write_all(op[2].as_bytes()))
                .unwrap(),
            "append" => OpenOptions::new()
                .append(true)
                .open(path(1))
                .and_then(|mut f| f.write_all(op[2].as_bytes()))
                .unwrap(),
            "pwrite" => OpenOptions::new()
                .write(true)
                .open(path(1))
                .and_then(|f| f.write_all_at(op[3].as_bytes(), op[2].parse().unwrap()))
                .unwrap(),
            "fsync" => File::open(path(1)).and_then(|f| f.sync_all()).unwrap(),
            "fdatasync" => File::open(path(1)).and_then(|f| f.sync_data()).unwrap(),
            "mkdir" => fs::create_dir(path(1)).unwrap(),
            "rename" => fs::rename(path(1), path(2)).unwrap(),
            "remove" => fs::remove_file(path(1)).unwrap(),
            other => panic!("unknown op {other}"),
        }
    }
}
