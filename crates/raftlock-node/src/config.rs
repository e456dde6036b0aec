//! Node configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::types::NodeId;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where this node listens for both client and Raft RPCs.
    pub listen: SocketAddr,
    /// Every initial member's id and the address others reach it at
    /// (this node included). Used to bootstrap a new cluster.
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    pub timings: RaftTimings,
    /// Snapshot the lock table every this many log entries, then purge
    /// the log behind it.
    pub snapshot_every: u64,
    /// Serve Prometheus metrics over HTTP here.
    pub metrics_listen: Option<SocketAddr>,
    /// Acknowledge the leader's own log entries to Raft before their fsync
    /// and sync them alongside the followers' (docs/safety.md, section 1).
    /// Normally on; off, a write waits for the leader's fsync and then the
    /// followers', one after the other: only for comparing the two.
    pub early_ack: bool,
}

pub const DEFAULT_SNAPSHOT_EVERY: u64 = 20_000;

/// Raft timing, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct RaftTimings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTimings {
    /// Heartbeats every 25 ms; a follower campaigns after
    /// `election_max_ms` (openraft 0.9's leader lease, during which it also
    /// refuses votes) plus its own 60-100 ms of silence: a dead leader is
    /// replaced after roughly 160-200 ms. Measured with scripts/bench on a
    /// busy 2-core machine: failover median 200 ms, max 211 ms (etcd ~1.8 s),
    /// and no spurious election during the throughput runs. 50 / 150-300
    /// gave a 576 ms median.
    fn default() -> Self {
        RaftTimings {
            heartbeat_ms: 25,
            election_min_ms: 60,
            election_max_ms: 100,
        }
    }
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_peers(spec: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        let addr = addr.trim();
        if addr.rsplit_once(':').is_none() {
            return Err(format!("peer address {addr:?} has no port"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("peer id {id} appears twice"));
        }
    }
    Ok(peers)
}
