//! The credentials directory: the one place that knows which file holds
//! what (`ca.pem`, `ca-key.pem`, `node-<ID>.pem`, `node-<ID>-key.pem`,
//! `client-<NAME>.pem`, `client-<NAME>-key.pem`), and whether writing may
//! replace what is there.

use std::path::{Path, PathBuf};

/// Where `raftlock certs` writes when no directory is given.
pub const DEFAULT_DIR: &str = "./raftlock-certs";

/// A credentials directory, and whether files written into it may replace
/// existing ones.
#[derive(Clone, Debug)]
pub struct CredentialsDir {
    root: PathBuf,
    force: bool,
}

impl CredentialsDir {
    /// The directory at `root`; writing into it refuses to replace files.
    pub fn new(root: impl Into<PathBuf>) -> CredentialsDir {
        CredentialsDir {
            root: root.into(),
            force: false,
        }
    }

    /// Whether writing may replace existing files.
    #[must_use]
    pub fn force(self, force: bool) -> CredentialsDir {
        CredentialsDir { force, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn replaces_files(&self) -> bool {
        self.force
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca-key.pem")
    }

    pub fn node_cert(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}.pem"))
    }

    pub fn node_key(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}-key.pem"))
    }

    /// `name` must be a valid client name (see `Identity`): it becomes
    /// part of a file name.
    pub fn client_cert(&self, name: &str) -> PathBuf {
        self.root.join(format!("client-{name}.pem"))
    }

    pub fn client_key(&self, name: &str) -> PathBuf {
        self.root.join(format!("client-{name}-key.pem"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_documented_layout() {
        let dir = CredentialsDir::new("/c");
        assert_eq!(dir.ca_cert(), Path::new("/c/ca.pem"));
        assert_eq!(dir.ca_key(), Path::new("/c/ca-key.pem"));
        assert_eq!(dir.node_cert(3), Path::new("/c/node-3.pem"));
        assert_eq!(dir.node_key(3), Path::new("/c/node-3-key.pem"));
        assert_eq!(dir.client_cert("ci"), Path::new("/c/client-ci.pem"));
        assert_eq!(dir.client_key("ci"), Path::new("/c/client-ci-key.pem"));
        assert!(!dir.replaces_files());
        assert!(dir.force(true).replaces_files());
    }
}
