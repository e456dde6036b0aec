//! `raftlock server` (one node) and `raftlock dev` (a local cluster).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use raftlock_node::config::parse_peers;
use raftlock_node::{Node, NodeConfig, RaftTimings};

#[derive(Args)]
pub struct ServerArgs {
    /// This node's id (a positive number, unique in the cluster).
    #[arg(long)]
    id: u64,
    /// Address to listen on, for clients and other nodes alike.
    #[arg(long, default_value = "127.0.0.1:7899")]
    listen: SocketAddr,
    /// Initial members as ID=HOST:PORT,... (this node included). On a first
    /// start the lowest id bootstraps the cluster; later starts resume.
    #[arg(long, default_value = "", conflicts_with = "join")]
    peers: String,
    /// Instead of --peers: join an existing cluster through any of these
    /// members (HOST:PORT,...). The node asks to be added and waits.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// The address other nodes and clients reach this node at, if not
    /// --listen (e.g. when listening on 0.0.0.0). Used with --join.
    #[arg(long)]
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
    #[command(flatten)]
    timings: TimingArgs,
}

impl ServerArgs {
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.into()
    }
}

#[derive(Args)]
pub struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Data directory; each node uses a subdirectory. Reused on restart.
    #[arg(long, default_value = "data/dev")]
    data_dir: PathBuf,
    /// First port; node N listens on port + N - 1.
    #[arg(long, default_value_t = 7899)]
    port: u16,
    #[command(flatten)]
    timings: TimingArgs,
}

#[derive(Args)]
struct TimingArgs {
    /// Snapshot the lock table every this many log entries (then purge the log behind it).
    #[arg(long, default_value_t = raftlock_node::config::DEFAULT_SNAPSHOT_EVERY, value_parser = clap::value_parser!(u64).range(10..))]
    snapshot_every: u64,
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

pub async fn server(args: ServerArgs) -> i32 {
    let peers = match parse_peers(&args.peers) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("raftlock server: --peers: {e}");
            return 2;
        }
    };
    let config = NodeConfig {
        id: args.id,
        listen: args.listen,
        peers,
        data_dir: args.data_dir,
        timings: args.timings.timings(),
        snapshot_every: args.timings.snapshot_every,
        metrics_listen: args.metrics_listen,
    };
    let advertise = args.advertise.unwrap_or_else(|| args.listen.to_string());
    if !args.join.is_empty()
        && args.listen.ip().is_unspecified()
        && advertise == args.listen.to_string()
    {
        eprintln!(
            "raftlock server: --join with --listen {} needs --advertise HOST:PORT",
            args.listen
        );
        return 2;
    }
    let node = match Node::start(config.clone()).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("raftlock server: {e:#}");
            return 1;
        }
    };
    if !args.join.is_empty() {
        match node.raft().is_initialized().await {
            Ok(true) => tracing::info!("already a member: resuming, not joining"),
            _ => {
                tokio::spawn(crate::cluster::join(
                    args.join.clone(),
                    config.id,
                    advertise,
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

/// Runs each node as its own `raftlock server` child process, so you can
/// `kill -9` one and watch the others carry on. Their logs are prefixed
/// with the node id. Ctrl-C stops them all.
pub async fn dev(args: DevArgs) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("raftlock dev: cannot find my own binary: {e}");
            return 1;
        }
    };
    let addrs: BTreeMap<u64, String> = (1..=args.nodes as u64)
        .map(|id| (id, format!("127.0.0.1:{}", args.port as u64 + id - 1)))
        .collect();
    let peers: Vec<String> = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect();
    let mut children = BTreeMap::new();
    println!(
        "raftlock dev cluster: {} nodes, data in {}",
        args.nodes,
        args.data_dir.display()
    );
    for (id, addr) in &addrs {
        let data_dir = args.data_dir.join(format!("node{id}"));
        let command_line = [
            "server".to_string(),
            format!("--id={id}"),
            format!("--listen={addr}"),
            format!("--peers={}", peers.join(",")),
            format!("--data-dir={}", data_dir.display()),
            format!("--heartbeat-ms={}", args.timings.heartbeat_ms),
            format!("--election-min-ms={}", args.timings.election_min_ms),
            format!("--election-max-ms={}", args.timings.election_max_ms),
            format!("--snapshot-every={}", args.timings.snapshot_every),
        ];
        let child = tokio::process::Command::new(&exe)
            .args(&command_line)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("raftlock dev: starting node {id}: {e}");
                return 1;
            }
        };
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(prefix_lines(*id, stderr));
        }
        println!(
            "  node {id}  {addr}  pid {}   (restart it with: raftlock {})",
            child.id().unwrap_or(0),
            command_line.join(" ")
        );
        children.insert(*id, child);
    }
    let endpoints: Vec<&str> = addrs.values().map(String::as_str).collect();
    println!();
    println!("Try it from another shell:");
    println!("  export RAFTLOCK_ENDPOINTS={}", endpoints.join(","));
    println!("  raftlock status");
    println!("  raftlock lock results.h5 -- sh -c 'echo \"token $RAFTLOCK_TOKEN\"; sleep 5'");
    println!("  raftlock locks");
    println!("  kill -9 <a node's pid>    # the others elect a leader and carry on");
    println!("(raftlock is target/release/raftlock; `cargo run --release -- status` works too.)");
    println!("Ctrl-C stops the cluster; the next `raftlock dev` resumes from the same data.");

    let mut exits = tokio::task::JoinSet::new();
    let mut pids = Vec::new();
    for (id, mut child) in children {
        pids.extend(child.id());
        exits.spawn(async move { (id, child.wait().await) });
    }
    let mut running = pids.len();
    loop {
        tokio::select! {
            _ = wait_for_stop_signal() => break,
            Some(Ok((id, status))) = exits.join_next() => {
                running -= 1;
                println!("node {id} exited ({}); {running} still running", describe(status));
                if running == 0 {
                    return 1;
                }
            }
        }
    }
    println!("stopping the dev cluster");
    for pid in pids {
        // SAFETY: kill(2) on our own children; no memory is touched.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    let all_stopped = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while exits.join_next().await.is_some() {}
    });
    if all_stopped.await.is_err() {
        eprintln!("raftlock dev: some nodes did not stop in 10 s; killing them");
        return 1;
    }
    0
}

async fn prefix_lines(id: u64, stderr: tokio::process::ChildStderr) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("node{id}| {line}");
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown".into(),
        },
        Err(e) => e.to_string(),
    }
}

fn finish(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("raftlock: unclean shutdown: {e:#}");
            1
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
