//! `raftlock`: run a node or a local dev cluster, run a command under a
//! lock, and look at the cluster and its locks.

mod args;
mod auth_cmd;
mod certs;
mod cluster;
mod exit;
mod guarded;
mod lock;
mod serve;
mod show;
mod watch;

use std::future::Future;
use std::time::Duration;

use clap::{parser::ValueSource, ArgMatches, Args, CommandFactory, FromArgMatches, Subcommand};
use raftlock_client::{Client, ClientOptions, TransportArgs};

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7899,127.0.0.1:7900,127.0.0.1:7901";

#[derive(clap::Parser)]
#[command(
    name = "raftlock",
    version,
    about = "A replicated lock service with fencing tokens"
)]
struct Cli {
    /// Also accepted before a client command (`raftlock --endpoints A lock ...`).
    #[arg(long, hide = true, value_delimiter = ',', value_parser = raftlock_client::parse_endpoint)]
    endpoints: Option<Vec<String>>,

    #[command(subcommand)]
    command: Command,
}

/// Where client commands find the cluster; `server` and `dev` have their
/// own addresses and do not take it.
#[derive(Args)]
struct Endpoints {
    /// Cluster nodes to talk to (any of them will do; the leader is found).
    #[arg(long, global = true, env = "RAFTLOCK_ENDPOINTS", default_value = DEFAULT_ENDPOINTS, value_delimiter = ',', value_parser = raftlock_client::parse_endpoint)]
    endpoints: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one cluster node.
    Server(serve::ServerArgs),
    /// Run a local cluster in the foreground (client ports 7899, 7900, ...;
    /// peer ports 7999, 8000, ...).
    Dev(serve::DevArgs),
    /// Run a command while holding a lock.
    Lock {
        #[command(flatten)]
        at: Endpoints,
        #[command(flatten)]
        transport: TransportArgs,
        #[command(flatten)]
        args: lock::LockArgs,
    },
    /// Show each member's role, term and progress, and the leader.
    Status {
        #[command(flatten)]
        at: Endpoints,
        #[command(flatten)]
        transport: TransportArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change the cluster's membership.
    Cluster {
        #[command(flatten)]
        at: Endpoints,
        #[command(flatten)]
        transport: TransportArgs,
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Show the lock table: mode, holders, sessions, fencing tokens, waiters.
    Locks {
        #[command(flatten)]
        at: Endpoints,
        #[command(flatten)]
        transport: TransportArgs,
        /// Only locks whose name starts with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many locks (0: all of them, page by page).
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
    },
    /// Manage the auth file of principals, roles and token hashes
    /// (default ./raftlock-auth.toml): add, rotate, remove, list.
    Auth(auth_cmd::AuthArgs),
    /// Serve the ZeroMQ LockerServer / pypet lock protocol on top of the cluster.
    Gateway(raftlock_gateway::GatewayArgs),
    /// Print the locks under a prefix, then every change to them (granted,
    /// released, expired, queued, left the queue) with its log index, as it
    /// happens, until interrupted. Survives leader changes without missing
    /// or repeating a change.
    Watch {
        #[command(flatten)]
        at: Endpoints,
        #[command(flatten)]
        transport: TransportArgs,
        /// Only locks whose names start with this (default: all).
        #[arg(default_value = "")]
        prefix: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Make the CA and the node and client certificates for TLS.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr (`| head`, a killed `dev`) must not take a node
        // down: tracing would report the failed write with eprintln!,
        // which panics when stderr is gone.
        .log_internal_errors(false)
        .init();
}

/// A duration in seconds, up to a year (for `cluster`'s flags).
fn parse_duration_secs(text: &str) -> Result<Duration, String> {
    args::wait(text)
}

/// The client command's endpoints: its own `--endpoints`, else one given
/// before the command, else `RAFTLOCK_ENDPOINTS`, else the default.
fn endpoints(matches: &ArgMatches, before: &Option<Vec<String>>, at: Endpoints) -> Vec<String> {
    let given_to_command = matches
        .subcommand()
        .and_then(|(_, sub)| sub.value_source("endpoints"))
        == Some(ValueSource::CommandLine);
    match before {
        Some(before) if !given_to_command => before.clone(),
        _ => at.endpoints,
    }
}

/// Runs a client command with a client for `endpoints`, connecting as
/// `transport` says, or says why there is none: a malformed endpoint or
/// credentials that cannot be used (a missing CA, a token file others can
/// read), usage errors both.
async fn with_client<F, Fut>(endpoints: Vec<String>, transport: TransportArgs, command: F) -> i32
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = i32>,
{
    let client = transport.transport().and_then(|transport| {
        let options = ClientOptions {
            transport,
            ..ClientOptions::default()
        };
        Client::with_options(endpoints, options)
    });
    match client {
        Ok(client) => command(client).await,
        Err(e) => {
            eprintln!("raftlock: {e}");
            exit::USAGE
        }
    }
}

/// A client command's run: its logging, its client, then `command`.
async fn client_command<F, Fut>(
    matches: &ArgMatches,
    before: &Option<Vec<String>>,
    at: Endpoints,
    transport: TransportArgs,
    command: F,
) -> i32
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = i32>,
{
    init_logging("warn");
    with_client(endpoints(matches, before, at), transport, command).await
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if cli.endpoints.is_some() && matches!(cli.command, Command::Server(_) | Command::Dev(_)) {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--endpoints is for client commands; `server` and `dev` take --listen and --peers",
            )
            .exit();
    }
    let before = cli.endpoints;
    let runtime = match &cli.command {
        Command::Server(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.worker_threads())
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    }
    .expect("start the tokio runtime");
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                init_logging(raftlock_node::DEFAULT_LOG_FILTER);
                serve::server(args).await
            }
            Command::Dev(args) => {
                init_logging(raftlock_node::DEFAULT_LOG_FILTER);
                serve::dev(args).await
            }
            Command::Lock {
                at,
                transport,
                args,
            } => {
                client_command(&matches, &before, at, transport, |client| {
                    lock::run(client, args)
                })
                .await
            }
            Command::Cluster {
                at,
                transport,
                command,
            } => {
                client_command(&matches, &before, at, transport, |client| {
                    cluster::run(client, command)
                })
                .await
            }
            Command::Status {
                at,
                transport,
                json,
            } => {
                client_command(&matches, &before, at, transport, |client| {
                    show::status(client, json)
                })
                .await
            }
            Command::Locks {
                at,
                transport,
                prefix,
                json,
                limit,
            } => {
                client_command(&matches, &before, at, transport, |client| {
                    show::locks(client, prefix, limit, json)
                })
                .await
            }
            Command::Watch {
                at,
                transport,
                prefix,
                json,
            } => {
                client_command(&matches, &before, at, transport, |client| {
                    watch::run(client, prefix, json)
                })
                .await
            }
            Command::Auth(args) => auth_cmd::run(args),
            Command::Gateway(mut args) => {
                init_logging("info");
                args.endpoints = endpoints(
                    &matches,
                    &before,
                    Endpoints {
                        endpoints: args.endpoints,
                    },
                );
                raftlock_gateway::run(args).await
            }
            Command::Certs { command } => certs::run(command),
        }
    });
    // Do not wait for blocking tasks (e.g. a stdin reader) on the way out.
    runtime.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoints `status` would use for these arguments.
    fn resolved(args: &[&str]) -> Vec<String> {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        match cli.command {
            Command::Status { at, .. } => endpoints(&matches, &cli.endpoints, at),
            _ => unreachable!(),
        }
    }

    #[test]
    fn endpoints_may_come_before_or_after_the_command_and_after_wins() {
        let before = ["raftlock", "--endpoints", "a:1,a:2", "status"];
        assert_eq!(resolved(&before), ["a:1", "a:2"]);
        let after = ["raftlock", "status", "--endpoints", "b:1"];
        assert_eq!(resolved(&after), ["b:1"]);
        let both = [
            "raftlock",
            "--endpoints",
            "a:1",
            "status",
            "--endpoints",
            "b:1",
        ];
        assert_eq!(resolved(&both), ["b:1"]);
    }
}
