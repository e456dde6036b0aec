//! Refusing a node's data directory that another process is using, with
//! that process's pid, before anything starts (sled alone would only say
//! `could not acquire lock on ".../db": WouldBlock`).

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The file sled locks while a node has its data directory open.
fn lock_file(data_dir: &Path) -> PathBuf {
    data_dir.join("sled").join("db")
}

/// `Err` with a message naming the other process if one holds `data_dir`.
/// Anything else (no data yet, unreadable) is left for the node to report.
pub fn check_free(data_dir: &Path) -> Result<(), String> {
    let path = lock_file(data_dir);
    let Ok(file) = File::open(&path) else {
        return Ok(());
    };
    // Try the same lock sled takes; dropping the file releases it again.
    // SAFETY: flock(2) on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Ok(());
    }
    drop(file);
    let dir = data_dir.display();
    Err(match holder(&path) {
        Some((pid, command)) if command.contains("raftlock") => {
            format!("another raftlock process is using {dir} (pid {pid}); stop it first")
        }
        Some((pid, command)) => {
            format!("another process is using {dir} (pid {pid}: {command}); stop it first")
        }
        None => format!("another process is using {dir} (its pid is not visible here)"),
    })
}

/// The pid and command line of a process other than this one with `path`
/// open, found through /proc.
fn holder(path: &Path) -> Option<(u32, String)> {
    let path = path.canonicalize().ok()?;
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let has_it = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path));
        if has_it {
            let command = std::fs::read(entry.path().join("cmdline"))
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .split('\0')
                        .filter(|a| !a.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            return Some((pid, command));
        }
    }
    None
}
