//! The loaded auth file a running node checks requests against, and its
//! reload: tokens rotate by editing the file and sending the node SIGHUP.
//!
//! A reload that finds the new file invalid keeps the old table and says
//! why: a typo while rotating one token must not lock every client out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use super::file::{AuthFile, AuthFileError};
use super::table::AuthTable;
use crate::fail_stop;

/// The auth file at `path`, as last loaded successfully. Cheap to clone:
/// clones share the table, so a reload reaches every layer built on it.
#[derive(Clone, Debug)]
pub struct AuthStore {
    path: Arc<PathBuf>,
    // The table is swapped whole, and requests take an `Arc` of it, so a
    // check never holds the lock.
    table: Arc<RwLock<Arc<AuthTable>>>,
}

impl AuthStore {
    /// Loads and checks the file at `path` (see [`AuthFile::load`]).
    pub fn load(path: impl Into<PathBuf>) -> Result<AuthStore, AuthFileError> {
        let path = path.into();
        let table = load_table(&path)?;
        Ok(AuthStore {
            path: Arc::new(path),
            table: Arc::new(RwLock::new(Arc::new(table))),
        })
    }

    /// Reads the file again. If it is valid it replaces the table, and the
    /// number of principals is returned; if not, the old table stays and
    /// the error is logged (and returned).
    pub fn reload(&self) -> Result<usize, AuthFileError> {
        match load_table(&self.path) {
            Ok(table) => {
                let principals = table.len();
                *fail_stop::write(&self.table) = Arc::new(table);
                tracing::info!("auth file reloaded: {principals} principals");
                Ok(principals)
            }
            Err(error) => {
                tracing::error!("auth file not reloaded, keeping the previous one: {error}");
                Err(error)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many principals the current table has.
    pub fn principals(&self) -> usize {
        self.table().len()
    }

    pub(crate) fn table(&self) -> Arc<AuthTable> {
        fail_stop::read(&self.table).clone()
    }
}

fn load_table(path: &Path) -> Result<AuthTable, AuthFileError> {
    let file = AuthFile::load(path)?;
    AuthTable::new(&file).map_err(|source| AuthFileError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Rereads `store`'s file each time the process gets SIGHUP, until the
/// runtime stops. Installing the handler also stops SIGHUP from killing
/// the process, so call this before anyone may send one.
pub fn spawn_reload_on_sighup(store: AuthStore) -> std::io::Result<JoinHandle<()>> {
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The outcome is logged by `reload`.
            let _ = store.reload();
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::file::PrincipalEntry;
    use crate::auth::token;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, names: &[&str]) {
        let file = AuthFile {
            principals: names
                .iter()
                .map(|name| PrincipalEntry {
                    name: (*name).into(),
                    role: "read".into(),
                    token_sha256: token::hash_hex(&format!("rlt_{name}")),
                    prefixes: None,
                    client_cert: false,
                })
                .collect(),
        };
        file.save(path).unwrap();
    }

    #[test]
    fn a_valid_new_file_replaces_the_table_for_every_clone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        write(&path, &["alice"]);
        let store = AuthStore::load(&path).unwrap();
        let layer_side = store.clone();
        assert!(layer_side.table().by_token("rlt_alice").is_some());

        write(&path, &["bob", "carol"]);
        assert_eq!(store.reload().unwrap(), 2);
        assert_eq!(layer_side.principals(), 2);
        assert!(layer_side.table().by_token("rlt_alice").is_none());
        assert!(layer_side.table().by_token("rlt_carol").is_some());
    }

    #[test]
    fn an_invalid_new_file_keeps_the_old_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        write(&path, &["alice"]);
        let store = AuthStore::load(&path).unwrap();

        std::fs::write(
            &path,
            "[[principal]]\nname = \"alice\"\nrole = \"wizard\"\n",
        )
        .unwrap();
        assert!(store.reload().is_err());
        assert!(store.table().by_token("rlt_alice").is_some());

        write(&path, &["bob"]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = store.reload().unwrap_err();
        assert!(matches!(error, AuthFileError::ReadableByOthers { .. }));
        assert!(store.table().by_token("rlt_alice").is_some());

        std::fs::remove_file(&path).unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.principals(), 1);
    }

    #[tokio::test]
    async fn sighup_reloads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        write(&path, &["alice"]);
        let store = AuthStore::load(&path).unwrap();
        let task = spawn_reload_on_sighup(store.clone()).unwrap();
        write(&path, &["alice", "bob"]);
        // SAFETY: raise(3) only sends a signal to this process, whose
        // SIGHUP handler the call above installed.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.principals() != 2 {
            assert!(std::time::Instant::now() < until, "SIGHUP did not reload");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        task.abort();
    }
}
