//! A 3-node raftlock cluster on loopback: `raftlock server` processes with
//! production settings (default timings, sled with fdatasync), each with its
//! own data directory, serving clients and the other nodes on separate
//! ports; kill, restart, health, leader and term. Plain (`--insecure`), or
//! secured: TLS on both ports with the node certificates and the auth
//! file from `credentials`, clients sending the `lock` principal's token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use raftlock_client::{Client, ClientOptions, StatusResponse, Transport};

use crate::credentials::BenchCredentials;
use crate::procs::{free_port, NodeProcess};

pub struct RaftlockCluster {
    binary: PathBuf,
    dir: PathBuf,
    /// Node id -> where clients reach it.
    addrs: BTreeMap<u64, String>,
    /// Node id -> where the other nodes reach it.
    peer_addrs: BTreeMap<u64, String>,
    procs: BTreeMap<u64, NodeProcess>,
    extra_args: Vec<String>,
    /// TLS and authentication, or plain text and none.
    security: Option<Arc<BenchCredentials>>,
    /// For status calls only; workloads make their own clients.
    admin: Client,
}

impl RaftlockCluster {
    /// Starts `n` nodes under `dir` (no waiting; see [`Self::wait_healthy`]),
    /// secured with `security` if given.
    pub fn start(
        binary: &Path,
        dir: &Path,
        n: u64,
        extra_args: &[String],
        security: Option<Arc<BenchCredentials>>,
    ) -> anyhow::Result<RaftlockCluster> {
        std::fs::create_dir_all(dir)?;
        let mut ports = Vec::new();
        while ports.len() < 2 * n as usize {
            let port = free_port()?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let addr = |port: &u16| format!("127.0.0.1:{port}");
        let addrs: BTreeMap<u64, String> =
            (1..=n).zip(ports[..n as usize].iter().map(addr)).collect();
        let peer_addrs = (1..=n).zip(ports[n as usize..].iter().map(addr)).collect();
        let admin = Client::with_options(
            addrs.values().cloned(),
            ClientOptions {
                retry_for: Duration::from_secs(2),
                rpc_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_millis(500),
                transport: transport(security.as_deref()),
            },
        )?;
        let mut cluster = RaftlockCluster {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            addrs,
            peer_addrs,
            procs: BTreeMap::new(),
            extra_args: extra_args.to_vec(),
            security,
            admin,
        };
        for id in 1..=n {
            cluster.start_node(id)?;
        }
        Ok(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.addrs.values().cloned().collect()
    }

    /// A client for a workload, with the cluster's transport.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let options = ClientOptions {
            transport: transport(self.security.as_deref()),
            ..ClientOptions::default()
        };
        Ok(Client::with_options(self.endpoints(), options)?)
    }

    pub fn start_node(&mut self, id: u64) -> anyhow::Result<()> {
        if self.procs.contains_key(&id) {
            return Ok(());
        }
        let peers: Vec<String> = self
            .addrs
            .iter()
            .map(|(i, a)| format!("{i}={}/{a}", self.peer_addrs[i]))
            .collect();
        let mut command = Command::new(&self.binary);
        command
            .args(["server", "--id", &id.to_string()])
            .args(["--listen", &self.addrs[&id]])
            .args(["--peer-listen", &self.peer_addrs[&id]])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node{id}")))
            .args(self.security_flags(id))
            .args(&self.extra_args)
            // The server's own default log level, whatever ours is.
            .env_remove("RUST_LOG");
        let log = self.dir.join(format!("node{id}.log"));
        self.procs.insert(id, NodeProcess::spawn(command, &log)?);
        Ok(())
    }

    /// Node `id`'s certificate, the CA and the auth file; or `--insecure`.
    fn security_flags(&self, id: u64) -> Vec<String> {
        let Some(creds) = &self.security else {
            return vec!["--insecure".into()];
        };
        let (cert, key) = creds.node(id);
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert".into(),
            path(&cert),
            "--tls-key".into(),
            path(&key),
            "--tls-ca".into(),
            path(&creds.ca()),
            "--auth-file".into(),
            path(&creds.auth_file),
        ]
    }

    /// SIGKILL, like `kill -9`, and reap.
    pub fn kill_node(&mut self, id: u64) {
        self.procs.remove(&id);
    }

    /// (node id, pid, RSS bytes) of every running node.
    pub fn rss(&self) -> anyhow::Result<Vec<(u64, u32, u64)>> {
        self.procs
            .iter()
            .map(|(id, p)| Ok((*id, p.pid(), p.rss_bytes()?)))
            .collect()
    }

    async fn statuses(&self) -> Vec<(u64, anyhow::Result<StatusResponse>)> {
        let mut out = Vec::new();
        for id in self.procs.keys() {
            let status = self
                .admin
                .node_status(&self.addrs[id], Duration::from_millis(500))
                .await
                .map_err(anyhow::Error::from);
            out.push((*id, status));
        }
        out
    }

    /// The leader, if every running node answers and agrees on one.
    pub async fn leader(&self) -> Option<u64> {
        let mut leader = None;
        for (_, status) in self.statuses().await {
            let status = status.ok()?;
            if !status.has_leader || leader.is_some_and(|l| l != status.leader_id) {
                return None;
            }
            leader = Some(status.leader_id);
        }
        leader
    }

    /// Highest Raft term any running node reports.
    pub async fn term(&self) -> anyhow::Result<u64> {
        let mut term = 0;
        for (id, status) in self.statuses().await {
            term = term.max(status.with_context(|| format!("status of node {id}"))?.term);
        }
        Ok(term)
    }

    /// The version the nodes report.
    pub async fn version(&self) -> String {
        for (_, status) in self.statuses().await {
            if let Ok(status) = status {
                return status.version;
            }
        }
        "unknown".into()
    }

    /// Locks in the leader's table (for checking the memory step).
    pub async fn lock_count(&self) -> anyhow::Result<u64> {
        let leader = self.leader().await.context("no leader")?;
        let status = self
            .admin
            .node_status(&self.addrs[&leader], Duration::from_secs(2))
            .await?;
        Ok(status.locks)
    }

    /// Waits until every running node is up and agrees on a leader whose
    /// applied index they have all reached (so a restarted node caught up).
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for (id, process) in self.procs.iter_mut() {
                if process.exited() {
                    bail!(
                        "raftlock node {id} exited; its log ends:\n{}",
                        process.log_tail(30)
                    );
                }
            }
            if self.caught_up().await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> = self
                    .procs
                    .iter()
                    .map(|(id, p)| format!("--- node {id} ---\n{}", p.log_tail(15)))
                    .collect();
                bail!(
                    "raftlock cluster not healthy after {timeout:?}:\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn caught_up(&self) -> bool {
        let statuses = self.statuses().await;
        let Some(leader) = self.leader().await else {
            return false;
        };
        let Some(Ok(leader_status)) = statuses
            .iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, s)| s.as_ref())
        else {
            return false;
        };
        let target = leader_status.last_applied;
        statuses
            .iter()
            .all(|(_, s)| s.as_ref().is_ok_and(|s| s.last_applied + 100 >= target))
    }
}

/// Explicitly plain when not secured, so that a CA or token in the
/// environment or the profile directory cannot turn TLS on.
fn transport(security: Option<&BenchCredentials>) -> Transport {
    security.map_or(Transport::Plain, BenchCredentials::raftlock_transport)
}
