//! `raftlock certs init|node|client`: make the cluster's private CA and the
//! node and client certificates it signs, in a credentials directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use raftlock_tls::{Ca, CredentialsDir, Error, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS};

use crate::exit;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create the CA (ca.pem, ca-key.pem) that signs every node and client
    /// certificate; every node and client is given ca.pem.
    Init {
        #[command(flatten)]
        out: Output,
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
    },
    /// Issue node ID's certificate (node-ID.pem, node-ID-key.pem), used by
    /// the node both to serve and to dial its peers. It names the URI
    /// raftlock://node/ID, localhost, 127.0.0.1 and each --host.
    Node {
        /// The node's id, as given to `raftlock server --id`.
        id: u64,
        /// A DNS name or IP address the node is reached at (repeat, or
        /// separate with commas).
        #[arg(long = "host", value_name = "HOST", value_delimiter = ',')]
        hosts: Vec<String>,
        #[command(flatten)]
        out: Output,
        /// How long the certificate is valid, in days (never past the CA's end).
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
    /// Issue client NAME's certificate (client-NAME.pem,
    /// client-NAME-key.pem), naming the URI raftlock://client/NAME.
    Client {
        /// Letters, digits, '.', '_' and '-' (at most 64).
        name: String,
        #[command(flatten)]
        out: Output,
        /// How long the certificate is valid, in days (never past the CA's end).
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
}

/// Where the files go, and whether existing ones may be replaced.
#[derive(Args)]
pub struct Output {
    /// The credentials directory, created if needed (default: ./raftlock-certs).
    #[arg(long, default_value = raftlock_tls::DEFAULT_DIR, hide_default_value = true)]
    dir: PathBuf,
    /// Replace existing files (without it, nothing that exists is replaced).
    #[arg(long)]
    force: bool,
}

impl Output {
    fn dir(&self) -> CredentialsDir {
        CredentialsDir::new(&self.dir).force(self.force)
    }
}

pub fn run(command: CertsCommand) -> i32 {
    let (result, key_note) = match command {
        CertsCommand::Init { out, days } => (
            Ca::create(&out.dir(), days).map(|ca| ca.files().clone()),
            "the CA's key: keep it off the nodes, it signs every certificate",
        ),
        CertsCommand::Node {
            id,
            hosts,
            out,
            days,
        } => (
            load_ca(&out).and_then(|ca| ca.issue_node(id, &hosts, days, &out.dir())),
            "private: for that node only",
        ),
        CertsCommand::Client { name, out, days } => (
            load_ca(&out).and_then(|ca| ca.issue_client(&name, days, &out.dir())),
            "private: for that client only",
        ),
    };
    match result {
        Ok(files) => {
            println!("wrote {}", files.cert.display());
            println!("wrote {} ({key_note})", files.key.display());
            let capped = if files.capped_by_ca {
                " (when the CA expires: no certificate outlives its CA)"
            } else {
                ""
            };
            println!("valid until {}{capped}", files.not_after.date());
            exit::OK
        }
        Err(Error::Invalid(message)) => {
            eprintln!("raftlock certs: {message}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("raftlock certs: {e}");
            exit::FAILURE
        }
    }
}

/// The CA in `--dir`; a missing one is most likely a missing `init`.
fn load_ca(out: &Output) -> Result<Ca, Error> {
    let dir = out.dir();
    Ca::load(&dir).map_err(|e| match e {
        Error::File { path, .. } if !path.exists() && path == dir.ca_cert() => Error::File {
            path,
            problem: "missing (run `raftlock certs init` first)".into(),
        },
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Certs {
        #[command(subcommand)]
        command: CertsCommand,
    }

    fn certs(dir: &std::path::Path, args: &[&str]) -> i32 {
        let mut argv = vec!["certs"];
        argv.extend(args);
        argv.extend(["--dir", dir.to_str().unwrap()]);
        run(Certs::try_parse_from(argv).unwrap().command)
    }

    #[test]
    fn init_then_node_and_client_with_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let creds = CredentialsDir::new(tmp.path());
        assert_eq!(
            certs(tmp.path(), &["node", "1"]),
            exit::FAILURE,
            "no CA yet"
        );
        assert_eq!(certs(tmp.path(), &["init"]), exit::OK);
        assert_eq!(certs(tmp.path(), &["init"]), exit::FAILURE, "exists");
        let ca = std::fs::read(creds.ca_cert()).unwrap();
        assert_eq!(certs(tmp.path(), &["init", "--force"]), exit::OK);
        assert_ne!(std::fs::read(creds.ca_cert()).unwrap(), ca);
        let node = ["node", "2", "--host", "a.example,10.1.2.3", "--days", "9"];
        assert_eq!(certs(tmp.path(), &node), exit::OK);
        assert!(creds.node_cert(2).exists() && creds.node_key(2).exists());
        assert_eq!(certs(tmp.path(), &["client", "ops"]), exit::OK);
        assert!(creds.client_cert("ops").exists());
        assert_eq!(certs(tmp.path(), &["client", "a/b"]), exit::USAGE);
        assert_eq!(certs(tmp.path(), &["node", "0"]), exit::USAGE);
        assert_eq!(
            certs(tmp.path(), &["node", "3", "--days", "0"]),
            exit::USAGE
        );
    }
}
