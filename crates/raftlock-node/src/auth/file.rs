//! The auth file on disk (`--auth-file`, TOML): reading it, refusing one
//! that others can read, and writing it back without a window in which a
//! half-written file could be loaded.
//!
//! ```toml
//! [[principal]]
//! name = "alice"
//! role = "lock"
//! token_sha256 = "…64 hex digits…"
//! prefixes = ["alice/", "shared/"]
//! client_cert = true
//! ```
//!
//! What the fields must satisfy is checked in `table`, the one place that
//! turns a file into something a request is checked against.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{AuthTable, Invalid};

/// Larger than any real auth file by far; a bigger one is a mistake (or
/// an attack) and is refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

const HEADER: &str = "\
# raftlock auth file: one [[principal]] per client. Tokens are never stored,
# only the SHA-256 of each (`raftlock auth add|rotate|remove|list` edit it).
# A running node rereads it on SIGHUP. Keep it mode 0600.
";

/// The file as written: every field as text, so that a bad value is
/// reported with the principal it belongs to rather than as a parse error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    #[serde(default, rename = "principal")]
    pub principals: Vec<PrincipalEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    pub name: String,
    /// `read`, `lock` or `admin`.
    pub role: String,
    /// Hex of the SHA-256 of the principal's token.
    pub token_sha256: String,
    /// The lock-name prefixes it may lock; absent means every name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixes: Option<Vec<String>>,
    /// It may also authenticate with a client certificate whose identity
    /// is `raftlock://client/<name>`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub client_cert: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is readable by others (mode {mode:03o}): chmod 600 it", path.display())]
    ReadableByOthers { path: PathBuf, mode: u32 },
    #[error("{}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Invalid { path: PathBuf, source: Invalid },
}

impl AuthFile {
    /// Reads and checks the file at `path`; a file that group or others
    /// may read is refused, as ssh refuses such a key.
    pub fn load(path: &Path) -> Result<AuthFile, AuthFileError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        AuthFile::read(path, file)
    }

    /// Like [`AuthFile::load`], but `None` if there is no file yet.
    pub fn load_if_exists(path: &Path) -> Result<Option<AuthFile>, AuthFileError> {
        match File::open(path) {
            Ok(file) => AuthFile::read(path, file).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(path, e)),
        }
    }

    fn read(path: &Path, file: File) -> Result<AuthFile, AuthFileError> {
        // The open file's own metadata: no window between check and read.
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthFileError::ReadableByOthers {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| io_error(path, e))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(AuthFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        let parsed = AuthFile::parse(&text).map_err(|message| AuthFileError::Syntax {
            path: path.to_owned(),
            message,
        })?;
        parsed.check().map_err(|source| AuthFileError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        Ok(parsed)
    }

    /// Parses TOML text; says what is wrong with its syntax or shape.
    /// Does not check the values: see [`AuthFile::check`].
    pub fn parse(text: &str) -> Result<AuthFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Whether every principal is well-formed and none collides.
    pub fn check(&self) -> Result<(), Invalid> {
        AuthTable::new(self).map(drop)
    }

    pub fn principal(&self, name: &str) -> Option<&PrincipalEntry> {
        self.principals.iter().find(|p| p.name == name)
    }

    pub fn principal_mut(&mut self, name: &str) -> Option<&mut PrincipalEntry> {
        self.principals.iter_mut().find(|p| p.name == name)
    }

    /// Checks the file, then replaces `path` with it, mode 0600: written
    /// to a new file beside it and renamed over it, so a node rereading it
    /// on SIGHUP sees the old file or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), AuthFileError> {
        self.check().map_err(|source| AuthFileError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        let body = toml::to_string(self).map_err(|e| AuthFileError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let temp = temp_path(path);
        let written = write_private(&temp, &format!("{HEADER}\n{body}"))
            .and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(path, e));
        }
        Ok(())
    }
}

fn io_error(path: &Path, source: io::Error) -> AuthFileError {
    AuthFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `.NAME.tmpPID` in the file's own directory (rename is atomic only
/// within one file system).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Creates `path` (which must not exist) readable by its owner only, from
/// the first byte on, and makes its contents durable.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token;

    fn entry(name: &str, role: &str) -> PrincipalEntry {
        PrincipalEntry {
            name: name.into(),
            role: role.into(),
            token_sha256: token::hash_hex(&format!("token of {name}")),
            prefixes: None,
            client_cert: false,
        }
    }

    fn private_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("auth.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn parses_the_documented_format() {
        let text = r#"
            [[principal]]
            name = "alice"
            role = "lock"
            token_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            prefixes = ["alice/", "shared/"]
            client_cert = true

            [[principal]]
            name = "ops"
            role = "admin"
            token_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        "#;
        let file = AuthFile::parse(text).unwrap();
        assert_eq!(file.principals.len(), 2);
        let alice = file.principal("alice").unwrap();
        assert_eq!(alice.prefixes.as_deref().unwrap(), ["alice/", "shared/"]);
        assert!(alice.client_cert);
        assert!(!file.principal("ops").unwrap().client_cert);
        file.check().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_errors() {
        let typo = "[[principal]]\nname = \"a\"\nrole = \"read\"\ntoken_sha256 = \"00\"\nprefix = [\"a/\"]\n";
        assert!(AuthFile::parse(typo).unwrap_err().contains("prefix"));
        assert!(AuthFile::parse("[[principal]\n").is_err());
        assert_eq!(AuthFile::parse("").unwrap(), AuthFile::default());
    }

    #[test]
    fn a_file_others_can_read_is_refused_and_0600_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AuthFile::default();
        file.principals.push(entry("alice", "read"));
        let path = private_file(dir.path(), &toml::to_string(&file).unwrap());
        assert_eq!(AuthFile::load(&path).unwrap(), file);
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = AuthFile::load(&path).unwrap_err().to_string();
            assert!(error.contains("readable by others"), "{error}");
            assert!(error.contains("chmod 600"), "{error}");
        }
    }

    #[test]
    fn a_missing_file_is_none_only_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.toml");
        assert_eq!(AuthFile::load_if_exists(&path).unwrap(), None);
        assert!(matches!(
            AuthFile::load(&path),
            Err(AuthFileError::Io { .. })
        ));
    }

    #[test]
    fn an_invalid_file_names_the_file_and_the_principal() {
        let dir = tempfile::tempdir().unwrap();
        let path = private_file(
            dir.path(),
            "[[principal]]\nname = \"bob\"\nrole = \"root\"\ntoken_sha256 = \"00\"\n",
        );
        let error = AuthFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("auth.toml"), "{error}");
        assert!(error.contains("\"bob\""), "{error}");
    }

    #[test]
    fn save_writes_0600_and_round_trips_and_refuses_an_invalid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        let mut file = AuthFile::default();
        file.principals.push(entry("alice", "lock"));
        file.principals[0].prefixes = Some(vec!["alice/".into()]);
        file.principals[0].client_cert = true;
        file.principals.push(entry("ops", "admin"));
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(AuthFile::load(&path).unwrap(), file);

        file.principals.push(entry("alice", "read"));
        assert!(file.save(&path).is_err());
        assert_eq!(AuthFile::load(&path).unwrap().principals.len(), 2);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
