//! `raftlock auth add|rotate|remove|list`: edits the auth file that nodes
//! check clients against (`--auth-file`). A new token is printed once, on
//! stdout and nothing else there, so `raftlock auth add ci > ci.token`
//! captures exactly it; the file keeps only its SHA-256.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use raftlock_node::auth::{token, AuthFile, AuthFileError, PrincipalEntry};

use crate::exit;

#[derive(Args)]
pub struct AuthArgs {
    /// The auth file (created mode 0600 by `add` if missing).
    #[arg(
        long,
        global = true,
        value_name = "F",
        default_value = "./raftlock-auth.toml"
    )]
    file: PathBuf,

    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Add a principal and print its new token (shown only this once).
    Add {
        /// Letters, digits, '.', '_', '-' or '@'.
        name: String,
        /// read: status, locks, watch; lock: also sessions and locks;
        /// admin: also membership changes.
        #[arg(long, value_parser = ["read", "lock", "admin"])]
        role: String,
        /// Only lock names starting with this (repeatable; default: any name).
        #[arg(long = "prefix", value_name = "P")]
        prefixes: Vec<String>,
        /// Also accept a client certificate for raftlock://client/NAME.
        #[arg(long)]
        client_cert: bool,
    },
    /// Give a principal a new token (printed once); the old one stops
    /// working when the nodes reread the file (SIGHUP).
    Rotate { name: String },
    /// Remove a principal.
    Remove { name: String },
    /// List the principals: names, roles, prefixes (never token hashes).
    List,
}

/// Why a command did nothing, and the status to exit with.
struct Refused {
    message: String,
    code: i32,
}

impl Refused {
    fn usage(message: String) -> Refused {
        Refused {
            message,
            code: exit::USAGE,
        }
    }
}

/// The file could not be read or written, or is invalid as it stands.
impl From<AuthFileError> for Refused {
    fn from(error: AuthFileError) -> Refused {
        Refused {
            message: error.to_string(),
            code: exit::FAILURE,
        }
    }
}

pub fn run(args: AuthArgs) -> i32 {
    let path = args.file.as_path();
    let result = match args.command {
        AuthCommand::Add {
            name,
            role,
            prefixes,
            client_cert,
        } => add(path, name, role, prefixes, client_cert),
        AuthCommand::Rotate { name } => rotate(path, &name),
        AuthCommand::Remove { name } => remove(path, &name),
        AuthCommand::List => list(path),
    };
    match result {
        Ok(()) => exit::OK,
        Err(refused) => {
            eprintln!("raftlock auth: {}", refused.message);
            refused.code
        }
    }
}

fn add(
    path: &Path,
    name: String,
    role: String,
    prefixes: Vec<String>,
    client_cert: bool,
) -> Result<(), Refused> {
    let mut file = AuthFile::load_if_exists(path)?.unwrap_or_default();
    if file.principal(&name).is_some() {
        return Err(Refused::usage(format!(
            "principal {name:?} already exists in {} (`raftlock auth rotate {name}` gives it a new token)",
            path.display()
        )));
    }
    let new_token = token::generate();
    file.principals.push(PrincipalEntry {
        name: name.clone(),
        role: role.clone(),
        token_sha256: token::hash_hex(&new_token),
        prefixes: (!prefixes.is_empty()).then_some(prefixes),
        client_cert,
    });
    // A bad name or prefix from the command line: said before anything
    // is written.
    file.check().map_err(|e| Refused::usage(e.to_string()))?;
    file.save(path)?;
    eprintln!(
        "added principal {name:?} (role {role}) to {}; its token, shown only this once:",
        path.display()
    );
    println!("{new_token}");
    Ok(())
}

fn rotate(path: &Path, name: &str) -> Result<(), Refused> {
    let mut file = AuthFile::load(path)?;
    let Some(entry) = file.principal_mut(name) else {
        return Err(unknown(path, name));
    };
    let new_token = token::generate();
    entry.token_sha256 = token::hash_hex(&new_token);
    file.save(path)?;
    eprintln!(
        "new token for principal {name:?} in {} (send the nodes SIGHUP to use it), shown only this once:",
        path.display()
    );
    println!("{new_token}");
    Ok(())
}

fn remove(path: &Path, name: &str) -> Result<(), Refused> {
    let mut file = AuthFile::load(path)?;
    let before = file.principals.len();
    file.principals.retain(|p| p.name != name);
    if file.principals.len() == before {
        return Err(unknown(path, name));
    }
    file.save(path)?;
    eprintln!(
        "removed principal {name:?} from {} (send the nodes SIGHUP)",
        path.display()
    );
    Ok(())
}

fn list(path: &Path) -> Result<(), Refused> {
    let file = AuthFile::load(path)?;
    let rows: Vec<[String; 4]> = file
        .principals
        .iter()
        .map(|p| {
            let prefixes = p.prefixes.as_ref().map_or("(any)".into(), |p| p.join(","));
            let cert = if p.client_cert { "yes" } else { "no" };
            [p.name.clone(), p.role.clone(), prefixes, cert.into()]
        })
        .collect();
    let header = ["NAME", "ROLE", "PREFIXES", "CLIENT CERT"].map(String::from);
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|row| row[column].len())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    for row in std::iter::once(&header).chain(&rows) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

fn unknown(path: &Path, name: &str) -> Refused {
    Refused::usage(format!("no principal {name:?} in {}", path.display()))
}
