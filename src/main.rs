//! `raftlock`: run a node or a local dev cluster, run a command under a
//! lock, and look at the cluster and its locks.

mod cluster;
mod lock;
mod serve;
mod show;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// Exit codes of `raftlock lock` besides the command's own (see README).
pub mod exit {
    /// The lock could not be had in time (or at once, with --no-wait).
    pub const NOT_ACQUIRED: i32 = 75;
    /// The lock was lost while the command ran; the command was terminated.
    pub const LOCK_LOST: i32 = 76;
    /// The cluster could not be reached, or another error.
    pub const UNAVAILABLE: i32 = 69;
}

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7899,127.0.0.1:7900,127.0.0.1:7901";

#[derive(Parser)]
#[command(
    name = "raftlock",
    version,
    about = "A replicated lock service with fencing tokens"
)]
struct Cli {
    /// Cluster nodes to talk to (any of them will do; the leader is found).
    #[arg(long, global = true, env = "RAFTLOCK_ENDPOINTS", default_value = DEFAULT_ENDPOINTS, value_delimiter = ',')]
    endpoints: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one cluster node.
    Server(serve::ServerArgs),
    /// Run a local cluster in the foreground (ports 7899, 7900, ...).
    Dev(serve::DevArgs),
    /// Run a command while holding a lock.
    Lock(lock::LockArgs),
    /// Show each member's role, term and progress, and the leader.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change the cluster's membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Show the lock table: holder, session, fencing token, waiters.
    Locks {
        /// Only locks whose name starts with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many locks.
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn parse_duration_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{text:?} seconds is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    let cli = Cli::parse();
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
            Command::Lock(args) => {
                init_logging("warn");
                lock::run(&cli.endpoints, args).await
            }
            Command::Cluster(command) => {
                init_logging("warn");
                cluster::run(&cli.endpoints, command).await
            }
            Command::Status { json } => {
                init_logging("warn");
                show::status(&cli.endpoints, json).await
            }
            Command::Locks {
                prefix,
                json,
                limit,
            } => {
                init_logging("warn");
                show::locks(&cli.endpoints, &prefix, limit, json).await
            }
        }
    });
    // Do not wait for blocking tasks (e.g. a stdin reader) on the way out.
    runtime.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}
