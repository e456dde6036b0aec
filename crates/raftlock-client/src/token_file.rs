//! Reading a bearer token from a file, as a client is given one: the file
//! must be private to its owner (ssh refuses a key others can read, for
//! the same reason), and surrounding whitespace is not part of the token.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// More than any token; a bigger file is not a token file.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The token in the file at `path`. Refused if group or others may read
/// the file, or if it holds no token.
pub fn read_token_file(path: &Path) -> io::Result<String> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(context)?;
    // The open file's own mode: no window between the check and the read.
    let mode = file.metadata().map_err(context)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by others (mode {mode:03o}): chmod 600 it",
                path.display()
            ),
        ));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(context)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(context(io::Error::new(
            io::ErrorKind::InvalidData,
            "too large for a token file",
        )));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(context(io::Error::new(
            io::ErrorKind::InvalidData,
            "holds no token",
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn token_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "raftlock-token-file-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn a_private_file_gives_its_token_trimmed() {
        let dir = temp_dir();
        let path = token_file(&dir, "  rlt_abc\n", 0o600);
        assert_eq!(read_token_file(&path).unwrap(), "rlt_abc");
        std::fs::set_permissions(&path, Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "rlt_abc");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_group_or_others_can_read_is_refused() {
        let dir = temp_dir();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            let path = token_file(&dir, "rlt_abc", mode);
            let error = read_token_file(&path).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
            let expected = format!(
                "{} is readable by others (mode {mode:03o}): chmod 600 it",
                path.display()
            );
            assert_eq!(error.to_string(), expected);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_or_missing_file_is_an_error_naming_it() {
        let dir = temp_dir();
        let path = token_file(&dir, " \n", 0o600);
        assert!(read_token_file(&path)
            .unwrap_err()
            .to_string()
            .contains("holds no token"));
        let missing = dir.join("missing");
        let error = read_token_file(&missing).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("missing"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
