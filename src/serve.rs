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
    #[arg(long, default_value = "")]
    peers: String,
    /// Where this node keeps its Raft log and snapshots.
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    timings: TimingArgs,
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
    };
    let started = match Node::start(config.clone()).await {
        Ok(node) => node.bootstrap(&config).await.map(|()| node),
        Err(e) => Err(e),
    };
    let node = match started {
        Ok(node) => node,
        Err(e) => {
            eprintln!("raftlock server: {e:#}");
            return 1;
        }
    };
    wait_for_stop_signal().await;
    tracing::info!("stopping");
    finish(node.shutdown().await)
}

pub async fn dev(args: DevArgs) -> i32 {
    let addrs: BTreeMap<u64, String> = (1..=args.nodes as u64)
        .map(|id| (id, format!("127.0.0.1:{}", args.port as u64 + id - 1)))
        .collect();
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for (id, addr) in &addrs {
        let config = NodeConfig {
            id: *id,
            listen: addr.parse().expect("a loopback address"),
            peers: addrs.clone(),
            data_dir: args.data_dir.join(format!("node{id}")),
            timings: args.timings.timings(),
        };
        match Node::start(config.clone()).await {
            Ok(node) => {
                nodes.push(node);
                configs.push(config);
            }
            Err(e) => {
                eprintln!("raftlock dev: node {id}: {e:#}");
                for node in nodes {
                    let _ = node.shutdown().await;
                }
                return 1;
            }
        }
    }
    // Everyone listens now, so the first election needs no retries.
    for (node, config) in nodes.iter().zip(&configs) {
        if let Err(e) = node.bootstrap(config).await {
            eprintln!("raftlock dev: node {}: {e:#}", config.id);
        }
    }
    let endpoints: Vec<&str> = addrs.values().map(String::as_str).collect();
    println!("raftlock dev cluster: {} nodes, data in {}", args.nodes, args.data_dir.display());
    for (id, addr) in &addrs {
        println!("  node {id}  {addr}");
    }
    println!();
    println!("Try it from another shell:");
    println!("  export RAFTLOCK_ENDPOINTS={}", endpoints.join(","));
    println!("  raftlock status");
    println!("  raftlock lock results.h5 -- sh -c 'echo \"token $RAFTLOCK_TOKEN\"; sleep 5'");
    println!("  raftlock locks");
    println!("(raftlock is target/release/raftlock; `cargo run --release -- status` works too.)");
    println!("Ctrl-C stops the cluster; the next `raftlock dev` resumes from the same data.");
    wait_for_stop_signal().await;
    println!("stopping the dev cluster");
    let mut code = 0;
    for node in nodes {
        code = code.max(finish(node.shutdown().await));
    }
    code
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
