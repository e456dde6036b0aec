//! Reading credentials with errors that name the file, and writing them
//! with the right permissions: private keys readable by their owner only,
//! and nothing replaced unless replacing was asked for.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Permissions of a private key file.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Permissions of a certificate file (public by nature).
pub(crate) const CERT_MODE: u32 = 0o644;
/// Permissions of a credentials directory the tools create: it holds keys.
const DIR_MODE: u32 = 0o700;

/// The whole file, or an error saying it is missing or unreadable.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::file(path, "missing"),
        _ => Error::file(path, format!("unreadable: {e}")),
    })
}

/// Creates `dir` (owner-only) if it does not exist.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder
        .create(dir)
        .map_err(|e| Error::file(dir, format!("cannot create the directory: {e}")))
}

/// Fails if any of `paths` exists and `replace` is false. Checked for all
/// files of a certificate before writing any, so that a refusal leaves no
/// half-written pair behind.
pub(crate) fn check_absent(paths: &[&Path], replace: bool) -> Result<()> {
    if replace {
        return Ok(());
    }
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(existing) => Err(Error::Exists {
            path: existing.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Writes `contents` to `path` with permissions `mode`. Without `replace`
/// an existing file is an error; with it, the new file is written beside
/// it and renamed over it, so a key never exists with wider permissions
/// than `mode`, not even for a moment.
pub(crate) fn write(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<()> {
    let fail = |e: io::Error| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::Exists {
            path: path.to_path_buf(),
        },
        _ => Error::file(path, format!("cannot write: {e}")),
    };
    if !replace {
        return write_new(path, contents, mode).map_err(fail);
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".tmp{}", std::process::id()));
    let staging = Path::new(&staging);
    // A staging file left by a crashed run of the same pid is ours to drop.
    let _ = fs::remove_file(staging);
    write_new(staging, contents, mode)
        .and_then(|()| fs::rename(staging, path))
        .map_err(|e| {
            let _ = fs::remove_file(staging);
            fail(e)
        })
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_replace_unless_asked_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write(&path, b"one", KEY_MODE, false).unwrap();
        let refused = write(&path, b"two", KEY_MODE, false).unwrap_err();
        assert!(matches!(refused, Error::Exists { .. }), "{refused}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert!(check_absent(&[&path], false).is_err());
        assert!(check_absent(&[&path], true).is_ok());

        write(&path, b"two", KEY_MODE, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, KEY_MODE);
        }
        let left = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 1, "the staging file is gone");
    }

    #[test]
    fn read_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing.pem");
        let text = read(&missing).unwrap_err().to_string();
        assert!(
            text.contains("nothing.pem") && text.contains("missing"),
            "{text}"
        );
        let text = read(dir.path()).unwrap_err().to_string();
        assert!(text.contains("unreadable"), "{text}");
    }
}
