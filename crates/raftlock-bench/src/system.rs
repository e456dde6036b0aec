//! The two systems under test behind one interface: which node leads,
//! crash and restart a node, wait for health, the Raft term, per-node RSS,
//! and a connection for a workload. Nodes are numbered from 1 for both.

use std::time::Duration;

use crate::etcd_cluster::EtcdCluster;
use crate::raftlock_cluster::RaftlockCluster;
use crate::sessions::Target;

pub enum System {
    Raftlock(RaftlockCluster),
    Etcd(EtcdCluster),
}

/// One node's resident memory at one moment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeRss {
    pub node: u64,
    pub pid: u32,
    pub rss_bytes: u64,
}

impl System {
    pub fn name(&self) -> &'static str {
        match self {
            System::Raftlock(_) => "raftlock",
            System::Etcd(_) => "etcd",
        }
    }

    /// A fresh client for a workload (etcd's pointed at the current
    /// leader; raftlock's finds it), secured if the cluster is.
    pub async fn connect(&self) -> anyhow::Result<Target> {
        match self {
            System::Raftlock(cluster) => Ok(Target::Raftlock(cluster.connect()?)),
            System::Etcd(cluster) => Ok(Target::Etcd(cluster.connect().await?)),
        }
    }

    /// The node every running node agrees leads, if they all answer.
    pub async fn leader(&self) -> Option<u64> {
        match self {
            System::Raftlock(cluster) => cluster.leader().await,
            System::Etcd(cluster) => cluster.leader().await.map(|i| i as u64 + 1),
        }
    }

    /// SIGKILL node `node` (1-based).
    pub fn kill(&mut self, node: u64) {
        match self {
            System::Raftlock(cluster) => cluster.kill_node(node),
            System::Etcd(cluster) => cluster.kill_member(node as usize - 1),
        }
    }

    pub fn restart(&mut self, node: u64) -> anyhow::Result<()> {
        match self {
            System::Raftlock(cluster) => cluster.start_node(node),
            System::Etcd(cluster) => cluster.start_member(node as usize - 1),
        }
    }

    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        match self {
            System::Raftlock(cluster) => cluster.wait_healthy(timeout).await,
            System::Etcd(cluster) => cluster.wait_healthy(timeout).await,
        }
    }

    /// Highest Raft term among the nodes: it goes up by at least one per election.
    pub async fn term(&self) -> anyhow::Result<u64> {
        match self {
            System::Raftlock(cluster) => cluster.term().await,
            System::Etcd(cluster) => cluster.term().await,
        }
    }

    pub fn rss(&self) -> anyhow::Result<Vec<NodeRss>> {
        let raw = match self {
            System::Raftlock(cluster) => cluster.rss()?,
            System::Etcd(cluster) => cluster.rss()?,
        };
        Ok(raw
            .into_iter()
            .map(|(node, pid, rss_bytes)| NodeRss {
                node,
                pid,
                rss_bytes,
            })
            .collect())
    }

    pub async fn version(&self) -> String {
        match self {
            System::Raftlock(cluster) => cluster.version().await,
            System::Etcd(cluster) => cluster.version().await,
        }
    }

    /// How many locks the cluster holds now. raftlock counts its whole
    /// table; etcd counts the lock keys under `prefix`.
    pub async fn locks_held(&self, prefix: &str) -> anyhow::Result<u64> {
        match self {
            System::Raftlock(cluster) => cluster.lock_count().await,
            System::Etcd(cluster) => Ok(cluster.count_prefix(prefix).await?.max(0) as u64),
        }
    }
}
