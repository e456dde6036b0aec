//! Node configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use raftlock_core::{Limits, Quota, DEDUP_WINDOW};

use crate::auth::AuthStore;
use crate::member_addr::MemberAddr;
use crate::types::NodeId;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where this node serves clients (the `raftlock.v1.Lock` service).
    pub listen: SocketAddr,
    /// Where this node serves the other nodes: the Raft RPCs and the
    /// `raftlock.v1.Cluster` (membership) service. `None`: those are
    /// served on `listen` too, reachable by anyone who can reach a client
    /// port.
    pub peer_listen: Option<SocketAddr>,
    /// Every initial member's id and addresses (this node included), as
    /// `PEER_ADDR/CLIENT_ADDR` or a single `HOST:PORT` (see
    /// [`crate::member_addr`]). Used to bootstrap a new cluster.
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    pub timings: RaftTimings,
    /// Snapshot the lock table every this many log entries, then purge
    /// the log behind it.
    pub snapshot_every: u64,
    /// Refuse snapshot chunks from a leader past this many bytes (`--max-snapshot-bytes`).
    pub max_snapshot_bytes: u64,
    /// Serve Prometheus metrics over HTTP here.
    pub metrics_listen: Option<SocketAddr>,
    /// Acknowledge the leader's own log entries to Raft before their fsync
    /// and sync them alongside the followers' (docs/safety.md, section 1).
    /// Normally on; off, a write waits for the leader's fsync and then the
    /// followers', one after the other: only for comparing the two.
    pub early_ack: bool,
    /// TLS on both listeners and to the other nodes, and authentication of
    /// every request. `None`: plain text, no authentication (`--insecure`).
    pub security: Option<Security>,
    /// This node joins an existing cluster (`--join`): until it has a
    /// membership, any node certificate may send it Raft RPCs (the leader
    /// that adds it is not known in advance), as to a node with no
    /// `peers` at all.
    pub joins: bool,
    /// The quotas this node proposes while it leads (its `--max-*` flags):
    /// the leader's win, so nodes should be configured alike.
    pub limits: Limits,
    /// Bounds on connections, streams, queues, watchers and reply sizes
    /// (see [`crate::server_limits`]); each is a `raftlock server` flag.
    pub server_limits: crate::server_limits::ServerLimits,
}

/// A secure node's credentials (see docs/security.md).
#[derive(Clone, Debug)]
pub struct Security {
    /// This node's certificate (`raftlock certs node ID`), presented to
    /// clients and, as a client certificate, to the other nodes.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The cluster CA: the other nodes' and clients' certificates must
    /// come from it.
    pub ca: PathBuf,
    /// The principals and their tokens (`--auth-file`).
    pub auth: AuthStore,
}

impl Security {
    /// What this node presents and trusts when it calls another node.
    pub fn node_tls(&self) -> NodeTls {
        NodeTls {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
    }
}

/// The files a node calls other nodes with: its own certificate as the
/// client certificate, and the CA their certificates must come from.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
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

/// The largest value a quota flag takes. Past it a quota bounds nothing a
/// node could hold in memory (a billion sessions or names is hundreds of
/// gigabytes), so such a value is a typo, not a setting.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// Why `limits` cannot be used, if they cannot: every quota must be at
/// least 1 (0 would refuse everything) and at most [`MAX_LIMIT`], and the
/// retry answers must cover one session's window (each open session
/// reserves [`DEDUP_WINDOW`] of them, so less would refuse every session).
pub fn check_limits(limits: &Limits) -> Result<(), String> {
    for quota in Quota::ALL {
        let value = limits.get(quota);
        if !(1..=MAX_LIMIT).contains(&value) {
            return Err(format!(
                "{} {value} is out of range (1 ..= {MAX_LIMIT})",
                quota.flag()
            ));
        }
    }
    let window = DEDUP_WINDOW as u64;
    if limits.retained_answers < window {
        return Err(format!(
            "{} {} is below one session's {window} remembered answers",
            Quota::RetainedAnswers.flag(),
            limits.retained_answers
        ));
    }
    Ok(())
}

/// Parses `1=PEER_ADDR/CLIENT_ADDR,2=...`; a plain `ID=HOST:PORT` is a
/// single-port member. The addresses are kept as given.
pub fn parse_peers(spec: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not ID=PEER_ADDR/CLIENT_ADDR"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        let addr = MemberAddr::parse(addr.trim())?;
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("peer id {id} appears twice"));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_with_one_or_two_addresses() {
        let peers = parse_peers("1=a:7999/a:7899, 2=b:7899").unwrap();
        assert_eq!(peers[&1], "a:7999/a:7899");
        assert_eq!(peers[&2], "b:7899");
    }

    #[test]
    fn limits_out_of_range_are_refused_naming_the_flag() {
        assert_eq!(check_limits(&Limits::default()), Ok(()));
        let zero = Limits {
            waiters_per_lock: 0,
            ..Limits::default()
        };
        let e = check_limits(&zero).unwrap_err();
        assert!(
            e.starts_with("--max-waiters-per-lock 0 is out of range"),
            "{e}"
        );
        let huge = Limits {
            locks: MAX_LIMIT + 1,
            ..Limits::default()
        };
        assert!(check_limits(&huge).unwrap_err().starts_with("--max-locks "));
        let no_window = Limits {
            retained_answers: DEDUP_WINDOW as u64 - 1,
            ..Limits::default()
        };
        let e = check_limits(&no_window).unwrap_err();
        assert!(e.starts_with("--max-retained-answers 63 is below"), "{e}");
    }

    #[test]
    fn bad_peers_are_refused() {
        for bad in ["1", "x=a:1", "1=a", "1=a:1/b", "1=a:1,1=b:1"] {
            assert!(parse_peers(bad).is_err(), "{bad:?} parsed");
        }
    }
}
