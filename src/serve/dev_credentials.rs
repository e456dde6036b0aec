//! `raftlock dev`'s credentials: a CA, a certificate per node, an auth
//! file with one admin principal and that admin's client certificate, made
//! on the first start in `<data-dir>/credentials/` and reused after; and
//! the client profile that lets `raftlock status` (token) and `raftlock
//! cluster add` (certificate: the peer port requires one) on this machine
//! use them without flags.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use raftlock_node::auth::{token, AuthFile, PrincipalEntry};
use raftlock_tls::{Ca, CredentialsDir, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS};

/// The principal `raftlock dev` makes, and the file its token is kept in.
const ADMIN: &str = "admin";
const ADMIN_TOKEN_FILE: &str = "admin.token";
const AUTH_FILE: &str = "auth.toml";
/// In a profile directory: `raftlock dev` wrote this profile, so a later
/// `raftlock dev` may replace it (and no other).
pub const PROFILE_MARKER: &str = ".written-by-raftlock-dev";

/// The credentials of a dev cluster, ready on disk.
pub struct DevCredentials {
    dir: CredentialsDir,
}

impl DevCredentials {
    /// Makes what is missing in `<data_dir>/credentials/` for nodes
    /// `1..=nodes`, keeping what is there.
    pub fn prepare(data_dir: &Path, nodes: u64) -> Result<DevCredentials, String> {
        let dir = CredentialsDir::new(data_dir.join("credentials"));
        let ca = if dir.ca_cert().exists() {
            Ca::load(&dir).map_err(|e| format!("the dev CA: {e}"))?
        } else {
            Ca::create(&dir, DEFAULT_CA_DAYS).map_err(|e| format!("creating the dev CA: {e}"))?
        };
        for id in 1..=nodes {
            if !dir.node_cert(id).exists() {
                ca.issue_node(id, &[], DEFAULT_LEAF_DAYS, &dir)
                    .map_err(|e| format!("issuing node {id}'s certificate: {e}"))?;
            }
        }
        // Made by a raftlock from before the peer port required one.
        if !dir.client_cert(ADMIN).exists() || !dir.client_key(ADMIN).exists() {
            ca.issue_client(ADMIN, DEFAULT_LEAF_DAYS, &dir.clone().force(true))
                .map_err(|e| format!("issuing {ADMIN}'s client certificate: {e}"))?;
        }
        let credentials = DevCredentials { dir };
        credentials.ensure_admin()?;
        Ok(credentials)
    }

    pub fn root(&self) -> &Path {
        self.dir.root()
    }

    fn auth_file(&self) -> PathBuf {
        self.root().join(AUTH_FILE)
    }

    fn admin_token_file(&self) -> PathBuf {
        self.root().join(ADMIN_TOKEN_FILE)
    }

    /// The auth file with principal `admin` and its token beside it, made
    /// together (a new token when either is missing).
    fn ensure_admin(&self) -> Result<(), String> {
        if self.auth_file().exists() && self.admin_token_file().exists() {
            return Ok(());
        }
        let new_token = token::generate();
        let file = AuthFile {
            principals: vec![PrincipalEntry {
                name: ADMIN.into(),
                role: "admin".into(),
                token_sha256: token::hash_hex(&new_token),
                prefixes: None,
                client_cert: false,
            }],
        };
        write_private(&self.admin_token_file(), new_token.as_bytes())
            .map_err(|e| format!("writing {}: {e}", self.admin_token_file().display()))?;
        file.save(&self.auth_file())
            .map_err(|e| format!("writing the dev auth file: {e}"))
    }

    /// The flags node `id` serves with.
    pub fn server_args(&self, id: u64) -> Vec<String> {
        let flag = |name: &str, path: PathBuf| format!("--{name}={}", path.display());
        vec![
            flag("tls-cert", self.dir.node_cert(id)),
            flag("tls-key", self.dir.node_key(id)),
            flag("tls-ca", self.dir.ca_cert()),
            flag("auth-file", self.auth_file()),
        ]
    }

    /// Writes the client profile (unless one `raftlock dev` did not write
    /// is there) and says in one line where everything is.
    pub fn publish_profile(&self) -> Result<(), String> {
        let ca = self.dir.ca_cert();
        let token_file = self.admin_token_file();
        let settings = format!(
            "RAFTLOCK_CA={} RAFTLOCK_AUTH_TOKEN_FILE={} RAFTLOCK_CERT={} RAFTLOCK_KEY={}",
            ca.display(),
            token_file.display(),
            self.dir.client_cert(ADMIN).display(),
            self.dir.client_key(ADMIN).display()
        );
        let Some(profile) = raftlock_client::profile_dir() else {
            println!(
                "credentials in {}; no profile directory (set RAFTLOCK_CONFIG_DIR or HOME), so use \
                 {settings}",
                self.root().display(),
            );
            return Ok(());
        };
        let someone_elses = profile.join(raftlock_client::PROFILE_CA).exists()
            && !profile.join(PROFILE_MARKER).exists();
        if someone_elses {
            println!(
                "credentials in {}; the profile in {} is not raftlock dev's, so it is left alone: \
                 use {settings}",
                self.root().display(),
                profile.display(),
            );
            return Ok(());
        }
        let admin_token = raftlock_client::read_token_file(&token_file)
            .map_err(|e| format!("reading the admin token: {e}"))?;
        let identity = (self.dir.client_cert(ADMIN), self.dir.client_key(ADMIN));
        let identity = Some((identity.0.as_path(), identity.1.as_path()));
        raftlock_client::write_profile(&profile, &ca, &admin_token, identity)
            .and_then(|()| std::fs::write(profile.join(PROFILE_MARKER), b""))
            .map_err(|e| format!("writing the profile in {}: {e}", profile.display()))?;
        println!(
            "credentials in {}; client profile (CA, admin token and certificate) in {}",
            self.root().display(),
            profile.display()
        );
        Ok(())
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
