//! `raftlock server` (one node) and `raftlock dev` (a local cluster).

mod datadir;
mod dev;
mod dev_credentials;
mod fd_limit;
mod limits;
mod security;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use raftlock_client::parse_endpoint;
use raftlock_core::Limits;
use raftlock_node::config::{parse_peers, MAX_LIMIT};
use raftlock_node::{MemberAddr, Node, NodeConfig, RaftTimings};

use crate::exit;

pub use dev::{dev, DevArgs};

#[derive(Args)]
pub struct ServerArgs {
    /// This node's id (a positive number, unique in the cluster).
    #[arg(long)]
    id: u64,
    /// Address to serve clients on (the lock API, status, watch).
    #[arg(long, default_value = "127.0.0.1:7899")]
    listen: SocketAddr,
    /// Address to serve the other nodes on: Raft and membership changes.
    /// Keep it on a network clients cannot reach. Without it, those are
    /// served on --listen too, open to every client (a warning says so).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Initial members as ID=PEER_ADDR/CLIENT_ADDR,... (this node
    /// included); ID=HOST:PORT for a node without --peer-listen. On a first
    /// start the lowest id bootstraps the cluster; later starts resume.
    #[arg(long, default_value = "", conflicts_with = "join")]
    peers: String,
    /// Instead of --peers: join an existing cluster through any of these
    /// members' peer addresses (HOST:PORT,...). The node asks to be added
    /// and waits.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// The address other nodes reach this node at, if not --peer-listen
    /// (e.g. when listening on 0.0.0.0). Used with --join.
    #[arg(long)]
    advertise_peer: Option<String>,
    /// The address clients reach this node at, if not --listen. Used with
    /// --join.
    #[arg(long)]
    advertise_client: Option<String>,
    /// Both --advertise-peer and --advertise-client, for a node without
    /// --peer-listen (one address for both).
    #[arg(long, conflicts_with_all = ["peer_listen", "advertise_peer", "advertise_client"])]
    advertise: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Where this node keeps its Raft log and snapshots.
    #[arg(long)]
    data_dir: PathBuf,
    /// Threads for the node's async work (gRPC, Raft, applying). With one,
    /// the many hand-offs a write makes between tasks stay on one thread
    /// instead of waking others (see docs/operations.md); give a node on a
    /// dedicated many-core machine with thousands of clients more.
    #[arg(long, env = "RAFTLOCK_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: u16,
    /// Sync the leader's own entries before acknowledging them, as every
    /// follower does (for A/B runs and for checking an openraft upgrade;
    /// docs/safety.md, section 1, explains the early acknowledgement).
    #[arg(long, hide = true)]
    no_early_ack: bool,
    #[command(flatten)]
    timings: TimingArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    server_limits: limits::ServerLimitArgs,
    // Boxed: the paths would make `server` the one large command.
    #[command(flatten)]
    security: Box<security::SecurityArgs>,
}

impl ServerArgs {
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.into()
    }
}

#[derive(Args)]
struct TimingArgs {
    /// Snapshot the lock table every this many log entries (then purge the log behind it).
    #[arg(long, default_value_t = raftlock_node::config::DEFAULT_SNAPSHOT_EVERY, value_parser = clap::value_parser!(u64).range(10..))]
    snapshot_every: u64,
    /// Refuse snapshots from a leader larger than this many bytes (up to 4 GiB, the most a node decodes).
    #[arg(long, default_value_t = raftlock_node::codec::DEFAULT_MAX_SNAPSHOT_BYTES,
          value_parser = clap::value_parser!(u64).range(1 << 20..=raftlock_node::codec::MAX_DECODE_BYTES))]
    max_snapshot_bytes: u64,
    /// Leader heartbeat interval, ms.
    #[arg(long, default_value_t = RaftTimings::default().heartbeat_ms)]
    heartbeat_ms: u64,
    /// Shortest election timeout, ms.
    #[arg(long, default_value_t = RaftTimings::default().election_min_ms)]
    election_min_ms: u64,
    /// Longest election timeout, ms.
    #[arg(long, default_value_t = RaftTimings::default().election_max_ms)]
    election_max_ms: u64,
}

impl TimingArgs {
    fn timings(&self) -> RaftTimings {
        RaftTimings {
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_min_ms,
            election_max_ms: self.election_max_ms,
        }
    }
}

/// The quotas (docs/operations.md, "Limits"). The leader's flags win:
/// give every node the same values.
#[derive(Args)]
struct LimitArgs {
    /// Open sessions in the cluster.
    #[arg(long, default_value_t = Limits::default().sessions, value_parser = limit())]
    max_sessions: u64,
    /// Open sessions one principal may have.
    #[arg(long, default_value_t = Limits::default().sessions_per_principal, value_parser = limit())]
    max_sessions_per_principal: u64,
    /// Names one session may hold at once.
    #[arg(long, default_value_t = Limits::default().holds_per_session, value_parser = limit())]
    max_holds_per_session: u64,
    /// Names one session may wait for at once.
    #[arg(long, default_value_t = Limits::default().waits_per_session, value_parser = limit())]
    max_waits_per_session: u64,
    /// Waiters queued on one name.
    #[arg(long, default_value_t = Limits::default().waiters_per_lock, value_parser = limit())]
    max_waiters_per_lock: u64,
    /// Names in the table (held, waited for, or in lock-delay).
    #[arg(long, default_value_t = Limits::default().locks, value_parser = limit())]
    max_locks: u64,
    /// Retry answers remembered over all sessions.
    #[arg(long, default_value_t = Limits::default().retained_answers, value_parser = limit())]
    max_retained_answers: u64,
    /// Holds and waits over all sessions and names (bounds the table's
    /// size, and its snapshot's).
    #[arg(long, default_value_t = Limits::default().claims, value_parser = limit())]
    max_claims: u64,
}

/// A quota flag's parser: 1 ..= [`MAX_LIMIT`], so a 0 (which would refuse
/// everything) or a typo'd huge value stops the node at startup.
fn limit() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=MAX_LIMIT)
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            sessions: self.max_sessions,
            sessions_per_principal: self.max_sessions_per_principal,
            holds_per_session: self.max_holds_per_session,
            waits_per_session: self.max_waits_per_session,
            waiters_per_lock: self.max_waiters_per_lock,
            locks: self.max_locks,
            retained_answers: self.max_retained_answers,
            claims: self.max_claims,
        }
    }
}

pub async fn server(args: ServerArgs) -> i32 {
    let peers = match parse_peers(&args.peers) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("raftlock server: --peers: {e}");
            return exit::USAGE;
        }
    };
    if let Err(message) = check_own_entry(&args, &peers) {
        eprintln!("raftlock server: --peers: {message}");
        return exit::USAGE;
    }
    let advertised = match advertised(&args) {
        Ok(advertised) => advertised,
        Err(message) => {
            eprintln!("raftlock server: {message}");
            return exit::USAGE;
        }
    };
    let security = match args.security.start() {
        Ok(security) => security,
        Err(code) => return code,
    };
    let mut config = NodeConfig {
        id: args.id,
        listen: args.listen,
        peer_listen: args.peer_listen,
        peers,
        data_dir: args.data_dir,
        timings: args.timings.timings(),
        snapshot_every: args.timings.snapshot_every,
        max_snapshot_bytes: args.timings.max_snapshot_bytes,
        metrics_listen: args.metrics_listen,
        early_ack: !args.no_early_ack,
        security,
        joins: !args.join.is_empty(),
        limits: args.limits.limits(),
        server_limits: args.server_limits.limits(),
    };
    if let Err(message) = raftlock_node::config::check_limits(&config.limits) {
        eprintln!("raftlock server: {message}");
        return exit::USAGE;
    }
    if let Err(message) = datadir::check_free(&config.data_dir) {
        eprintln!("raftlock server: {message}");
        return exit::FAILURE;
    }
    if let Some(warning) = fd_limit::fit(&mut config.server_limits) {
        tracing::warn!("{warning}");
    }
    if args.peer_listen.is_none() {
        tracing::warn!(
            listen = %args.listen,
            "no --peer-listen: Raft and membership changes are served on --listen, \
             reachable by every client that can reach this node"
        );
    }
    let node = match Node::start(config.clone()).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("raftlock server: {e:#}");
            return exit::FAILURE;
        }
    };
    if !args.join.is_empty() {
        match node.raft().is_initialized().await {
            Ok(true) => tracing::info!("already a member: resuming, not joining"),
            _ => {
                tokio::spawn(crate::cluster::join(
                    args.join.clone(),
                    config.id,
                    advertised,
                    config
                        .security
                        .as_ref()
                        .map(raftlock_node::Security::node_tls),
                ));
            }
        }
    }
    tokio::select! {
        bootstrapped = node.bootstrap(&config) => {
            if let Err(e) = bootstrapped {
                tracing::error!("bootstrap failed: {e:#}");
            }
            wait_for_stop_signal().await;
        }
        _ = wait_for_stop_signal() => {}
    }
    tracing::info!("stopping");
    finish(node.shutdown().await)
}

/// With two listeners, this node's own `--peers` entry must name two
/// addresses, and one without: the other nodes would otherwise send Raft
/// to a port that does not serve it.
fn check_own_entry(args: &ServerArgs, peers: &BTreeMap<u64, String>) -> Result<(), String> {
    let Some(own) = peers.get(&args.id) else {
        return Ok(()); // Node::start says so
    };
    let single = MemberAddr::parse(own)?.is_single();
    match (single, args.peer_listen.is_some()) {
        (true, true) => Err(format!(
            "node {} is {own}, one address, but has --peer-listen: \
             give ID=PEER_ADDR/CLIENT_ADDR",
            args.id
        )),
        (false, false) => Err(format!(
            "node {} is {own}, two addresses, but has no --peer-listen",
            args.id
        )),
        _ => Ok(()),
    }
}

/// The addresses a joining node asks to be added with: the --advertise
/// flags, else its listen addresses. A bad one would otherwise only show
/// in the log of a node that never joins.
fn advertised(args: &ServerArgs) -> Result<MemberAddr, String> {
    let client = (args.advertise_client.clone())
        .or_else(|| args.advertise.clone())
        .unwrap_or_else(|| args.listen.to_string());
    let peer_listen = args.peer_listen.unwrap_or(args.listen);
    let peer = (args.advertise_peer.clone())
        .or_else(|| args.advertise.clone())
        .unwrap_or_else(|| peer_listen.to_string());
    let given = [
        &args.advertise,
        &args.advertise_peer,
        &args.advertise_client,
    ];
    for addr in args.join.iter().chain(given.into_iter().flatten()) {
        parse_endpoint(addr)?;
    }
    if !args.join.is_empty() {
        let unspecified = [
            (args.listen, &client, "--advertise-client"),
            (peer_listen, &peer, "--advertise-peer"),
        ];
        for (listen, advertised, flag) in unspecified {
            if listen.ip().is_unspecified() && *advertised == listen.to_string() {
                return Err(format!(
                    "--join listening on {listen} needs {flag} HOST:PORT"
                ));
            }
        }
    }
    Ok(MemberAddr { peer, client })
}

fn finish(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("raftlock: unclean shutdown: {e:#}");
            exit::FAILURE
        }
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
