//! `raftlock server`'s security flags: the node's TLS credentials and its
//! auth file, or `--insecure`, and the rule that it is one or the other.

use std::path::PathBuf;

use clap::Args;
use raftlock_node::auth::AuthStore;
use raftlock_node::Security;

use crate::exit;

#[derive(Args)]
pub struct SecurityArgs {
    /// This node's certificate (PEM), from `raftlock certs node ID`.
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): other nodes' and clients' certificates must
    /// come from it.
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
    /// The principals and their token hashes (`raftlock auth add`);
    /// reread on SIGHUP.
    #[arg(long, value_name = "PATH")]
    auth_file: Option<PathBuf>,
    /// Plain text and no authentication: anyone who can reach the ports
    /// controls the cluster. Not with the four flags above.
    #[arg(long)]
    insecure: bool,
}

/// What to do when neither the credentials nor --insecure are given.
const HOW_TO: &str = "\
a server needs --tls-cert, --tls-key, --tls-ca and --auth-file, or --insecure.
Make credentials with:
  raftlock certs init
  raftlock certs node ID --host HOSTNAME
  raftlock auth add admin --role admin
or pass --insecure for plain text without authentication (never on a network others reach).";

impl SecurityArgs {
    /// The node's security, `None` for `--insecure`; `Err` is a usage
    /// error's message.
    pub fn security(&self) -> Result<Option<Security>, String> {
        let given = [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--tls-ca", &self.tls_ca),
            ("--auth-file", &self.auth_file),
        ];
        let present: Vec<&str> = given
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(flag, _)| *flag)
            .collect();
        if self.insecure {
            if !present.is_empty() {
                return Err(format!(
                    "--insecure cannot go with {}: it serves plain text without authentication",
                    present.join(", ")
                ));
            }
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca), Some(auth_file)) =
            (&self.tls_cert, &self.tls_key, &self.tls_ca, &self.auth_file)
        else {
            if present.is_empty() {
                return Err(HOW_TO.to_string());
            }
            let missing: Vec<&str> = given
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(flag, _)| *flag)
                .collect();
            return Err(format!("missing {}; {HOW_TO}", missing.join(", ")));
        };
        let auth = AuthStore::load(auth_file).map_err(|e| format!("--auth-file: {e}"))?;
        Ok(Some(Security {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            auth,
        }))
    }

    /// The node's security, with the auth file reloaded on SIGHUP, or
    /// `None` (and a warning) for `--insecure`. `Err` is the exit status,
    /// the reason already said. Call it inside the runtime.
    pub fn start(&self) -> Result<Option<Security>, i32> {
        let security = self.security().map_err(|message| {
            eprintln!("raftlock server: {message}");
            // An auth file that cannot be read is not a usage error.
            match message.starts_with("--auth-file") {
                true => exit::FAILURE,
                false => exit::USAGE,
            }
        })?;
        let Some(security) = security else {
            tracing::warn!(
                "--insecure: plain text and no authentication; anyone who can reach \
                 this node's ports controls the cluster"
            );
            return Ok(None);
        };
        // Tokens rotate by editing the file and sending SIGHUP.
        if let Err(e) = raftlock_node::auth::spawn_reload_on_sighup(security.auth.clone()) {
            eprintln!("raftlock server: cannot handle SIGHUP: {e}");
            return Err(exit::FAILURE);
        }
        Ok(Some(security))
    }
}
