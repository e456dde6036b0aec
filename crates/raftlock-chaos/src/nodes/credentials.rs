//! The credentials a secure [`super::LocalCluster`] runs with, made with
//! the binary under test (`raftlock certs`, `raftlock auth`) so that the
//! files are exactly what an operator would make.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A secure cluster's credentials, made with the binary under test in
/// `<dir>/credentials`: the CA, a certificate per node, an auth file with
/// the principal `admin` (role admin), and admin's client certificate
/// (membership changes on the peer ports need it: a token is not enough).
#[derive(Clone, Debug)]
pub struct ClusterCredentials {
    pub dir: PathBuf,
    /// `admin`'s bearer token.
    pub admin_token: String,
}

impl ClusterCredentials {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("auth.toml")
    }

    /// `admin`'s client certificate and its key.
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("client-admin.pem")
    }

    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("client-admin-key.pem")
    }

    /// The CA, node 1..=n's certificates, the auth file, admin's token and
    /// admin's client certificate.
    pub(super) fn create(
        binary: &Path,
        dir: PathBuf,
        n: u64,
    ) -> anyhow::Result<ClusterCredentials> {
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(binary).args(args).output()?;
            anyhow::ensure!(
                out.status.success(),
                "raftlock {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let root = dir.to_string_lossy().to_string();
        run(&["certs", "init", "--dir", &root])?;
        let credentials = ClusterCredentials {
            admin_token: String::new(),
            dir,
        };
        for id in 1..=n {
            credentials.issue_node(binary, id)?;
        }
        let auth = credentials.auth_file().to_string_lossy().to_string();
        let admin_token = run(&["auth", "add", "admin", "--role", "admin", "--file", &auth])?;
        run(&["certs", "client", "admin", "--dir", &root])?;
        Ok(ClusterCredentials {
            admin_token,
            ..credentials
        })
    }

    /// Node `id`'s certificate, issued if it has none yet.
    pub(super) fn issue_node(&self, binary: &Path, id: u64) -> anyhow::Result<()> {
        if self.dir.join(format!("node-{id}.pem")).exists() {
            return Ok(());
        }
        let out = Command::new(binary)
            .args(["certs", "node", &id.to_string(), "--dir"])
            .arg(&self.dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "raftlock certs node {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The flags node `id` serves with.
    pub(super) fn server_args(&self, id: u64) -> Vec<String> {
        let path = |name: String| self.dir.join(name).to_string_lossy().to_string();
        vec![
            "--tls-cert".into(),
            path(format!("node-{id}.pem")),
            "--tls-key".into(),
            path(format!("node-{id}-key.pem")),
            "--tls-ca".into(),
            path("ca.pem".into()),
            "--auth-file".into(),
            path("auth.toml".into()),
        ]
    }
}
