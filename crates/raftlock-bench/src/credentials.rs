//! The secured section's credentials, made fresh in the run's directory:
//! one CA (raftlock-tls's [`Ca`]) for both systems, node certificates
//! 1..N (worn by raftlock node N and etcd member N alike: both listen on
//! 127.0.0.1, which every node certificate names), raftlock's auth file
//! with one `lock` principal and its token, and etcd's side: a client
//! certificate per etcd user (etcd requires one from every client when
//! `--client-cert-auth` is on, and takes its CN as the user when no token
//! is sent), the `lock` user's password, and the key etcd signs its JWT
//! auth tokens with.

use std::path::{Path, PathBuf};

use anyhow::Context;
use raftlock_client::{Credentials, Token, Transport};
use raftlock_node::auth::{token, AuthFile, PrincipalEntry};
use raftlock_tls::{Ca, CredentialsDir, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS};

use crate::etcd_api::{EtcdLogin, EtcdTls};

/// raftlock's principal, and etcd's user, that the workloads run as.
pub const LOCK_USER: &str = "lock";
/// etcd's administrator: `AuthEnable` needs it to exist. The bench's
/// status calls present its certificate (CN `root`) and no token.
pub const ETCD_ROOT: &str = "root";
/// The certificate whose key signs etcd's JWT tokens (and whose public
/// key checks them): a client certificate, since it only carries the key.
const ETCD_JWT_SIGNER: &str = "etcd-jwt";

/// Everything both secured clusters and their clients need.
pub struct BenchCredentials {
    dir: CredentialsDir,
    /// raftlock's `--auth-file`.
    pub auth_file: PathBuf,
    /// The `lock` principal's bearer token.
    pub raftlock_token: Token,
    /// The `lock` user's password in etcd.
    pub etcd_lock_password: String,
    /// The root user's password in etcd (set, but never used to log in).
    pub etcd_root_password: String,
}

impl BenchCredentials {
    /// Makes the CA and every certificate for `nodes` nodes under `dir`,
    /// and raftlock's auth file.
    pub fn create(dir: &Path, nodes: u64) -> anyhow::Result<BenchCredentials> {
        let creds = CredentialsDir::new(dir);
        let ca = Ca::create(&creds, DEFAULT_CA_DAYS).context("creating the CA")?;
        for id in 1..=nodes {
            ca.issue_node(id, &[], DEFAULT_LEAF_DAYS, &creds)
                .with_context(|| format!("issuing node {id}'s certificate"))?;
        }
        for name in [LOCK_USER, ETCD_ROOT, ETCD_JWT_SIGNER] {
            ca.issue_client(name, DEFAULT_LEAF_DAYS, &creds)
                .with_context(|| format!("issuing client {name}'s certificate"))?;
        }
        let raftlock_token = token::generate();
        let auth_file = dir.join("auth.toml");
        let file = AuthFile {
            principals: vec![PrincipalEntry {
                name: LOCK_USER.into(),
                role: "lock".into(),
                token_sha256: token::hash_hex(&raftlock_token),
                prefixes: None,
                client_cert: false,
            }],
        };
        file.save(&auth_file)
            .with_context(|| format!("writing {}", auth_file.display()))?;
        Ok(BenchCredentials {
            dir: creds,
            auth_file,
            raftlock_token: Token::new(raftlock_token),
            etcd_lock_password: token::generate(),
            etcd_root_password: token::generate(),
        })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.ca_cert()
    }

    /// Node `id`'s certificate and key.
    pub fn node(&self, id: u64) -> (PathBuf, PathBuf) {
        (self.dir.node_cert(id), self.dir.node_key(id))
    }

    /// raftlock's client transport: TLS against the CA, with the token.
    pub fn raftlock_transport(&self) -> Transport {
        Transport::Tls(Credentials {
            ca: self.ca(),
            token: Some(self.raftlock_token.clone()),
            identity: None,
        })
    }

    /// TLS for an etcd client presenting `user`'s certificate.
    pub fn etcd_tls(&self, user: &str) -> EtcdTls {
        EtcdTls {
            ca: self.ca(),
            cert: self.dir.client_cert(user),
            key: self.dir.client_key(user),
        }
    }

    /// The workloads' etcd login.
    pub fn etcd_lock_login(&self) -> EtcdLogin {
        EtcdLogin {
            user: LOCK_USER.into(),
            password: self.etcd_lock_password.clone(),
        }
    }

    /// etcd's `--auth-token`: JWT signed with ES256 (P-256, the kind of key
    /// the CA issues), valid an hour, longer than any secured section.
    pub fn etcd_auth_token_flag(&self) -> String {
        format!(
            "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=1h",
            self.dir.client_cert(ETCD_JWT_SIGNER).display(),
            self.dir.client_key(ETCD_JWT_SIGNER).display()
        )
    }
}

#[cfg(test)]
mod tests {
    use raftlock_node::auth::{token, AuthFile};

    use super::*;

    #[test]
    fn every_file_exists_and_the_auth_file_admits_the_token_as_lock() {
        let dir = tempfile::tempdir().unwrap();
        let creds = BenchCredentials::create(&dir.path().join("c"), 3).unwrap();
        assert!(creds.ca().exists());
        for id in 1..=3 {
            let (cert, key) = creds.node(id);
            assert!(cert.exists() && key.exists(), "node {id}");
        }
        for user in [LOCK_USER, ETCD_ROOT, ETCD_JWT_SIGNER] {
            let tls = creds.etcd_tls(user);
            assert!(tls.cert.exists() && tls.key.exists(), "{user}");
        }
        // Loading refuses a file others can read: this checks the mode too.
        let file = AuthFile::load(&creds.auth_file).unwrap();
        let entry = file.principal(LOCK_USER).unwrap();
        assert_eq!(entry.role, "lock");
        assert_eq!(
            entry.token_sha256,
            token::hash_hex(creds.raftlock_token.expose())
        );
        assert_ne!(creds.etcd_lock_password, creds.etcd_root_password);
        assert!(creds.etcd_auth_token_flag().contains("sign-method=ES256"));
    }
}
