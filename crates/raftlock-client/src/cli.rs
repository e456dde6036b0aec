//! The command-line flags every client command takes to say how it
//! connects (`raftlock lock`, `status`, `locks`, `watch`, `cluster`,
//! `gateway`), shared so they read and behave the same everywhere.
//! Only with the `cli` feature.

use std::path::PathBuf;

use clap::Args;

use crate::credentials::{process_env, Given, Transport};
use crate::Error;

/// How a client command connects: TLS with a CA and a token or client
/// certificate, or plain text. Flags win over the `RAFTLOCK_*` variables,
/// which win over the profile directory `raftlock dev` writes.
#[derive(Args, Clone, Debug, Default)]
pub struct TransportArgs {
    /// The cluster's CA certificate (PEM): connect with TLS and check the
    /// nodes' certificates against it [env: RAFTLOCK_CA].
    #[arg(long, global = true, value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// A file holding this client's auth token (mode 600: a file others
    /// can read is refused), sent with every call
    /// [env: RAFTLOCK_AUTH_TOKEN_FILE].
    #[arg(long, global = true, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// A client certificate (PEM) from the cluster's CA, instead of or
    /// besides a token [env: RAFTLOCK_CERT].
    #[arg(long, global = true, value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM) [env: RAFTLOCK_KEY].
    #[arg(long, global = true, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Plain text and no authentication, for a cluster run with
    /// --insecure [env: RAFTLOCK_INSECURE=1].
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl TransportArgs {
    /// What the flags name.
    pub fn given(&self) -> Given {
        Given {
            ca: self.ca.clone(),
            token_file: self.auth_token_file.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
        }
    }

    /// The transport these flags, the environment and the profile say;
    /// an unusable credential is an [`Error::Credentials`].
    pub fn transport(&self) -> Result<Transport, Error> {
        Transport::resolve(&self.given(), &process_env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        transport: TransportArgs,
    }

    #[test]
    fn the_flags_become_what_is_given() {
        let parsed = Command::parse_from([
            "x",
            "--ca",
            "ca.pem",
            "--auth-token-file",
            "t",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ]);
        let given = parsed.transport.given();
        assert_eq!(given.ca.as_deref(), Some("ca.pem".as_ref()));
        assert_eq!(given.token_file.as_deref(), Some("t".as_ref()));
        assert_eq!(given.cert.as_deref(), Some("c.pem".as_ref()));
        assert_eq!(given.key.as_deref(), Some("k.pem".as_ref()));
        assert!(!given.insecure);
        let insecure = Command::parse_from(["x", "--insecure"]).transport;
        assert!(insecure.given().insecure);
        assert!(matches!(insecure.transport(), Ok(Transport::Plain)));
    }
}
