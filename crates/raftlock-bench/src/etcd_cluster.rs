//! A 3-member etcd cluster on loopback: `etcd` processes with their own
//! data directories and distinct client and peer ports, etcd's default
//! settings otherwise (fsync on, 100 ms heartbeat, 1 s election timeout);
//! kill, restart, health, leader and term through the maintenance API.
//! Secured, the members speak TLS to clients and to each other and demand
//! a certificate from the CA of both, and clients log in (see `etcd_auth`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::credentials::{BenchCredentials, ETCD_ROOT, LOCK_USER};
use crate::etcd_api::{etcdserverpb::StatusResponse, EtcdClient};
use crate::procs::{free_port, NodeProcess};

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<NodeProcess>,
}

pub struct EtcdCluster {
    binary: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
    extra_args: Vec<String>,
    /// TLS and authentication, or plain text and none.
    security: Option<Arc<BenchCredentials>>,
    /// For status calls only; workloads make their own clients. Secured,
    /// it presents root's certificate and no token, so etcd takes it for
    /// root.
    admin: EtcdClient,
}

impl EtcdCluster {
    /// Starts `n` members under `dir` (no waiting; see [`Self::wait_healthy`]),
    /// secured with `security` if given (then call [`Self::enable_auth`]
    /// once it is healthy).
    pub fn start(
        binary: &Path,
        dir: &Path,
        n: usize,
        extra_args: &[String],
        security: Option<Arc<BenchCredentials>>,
    ) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir)?;
        let mut members = Vec::new();
        for i in 1..=n {
            members.push(Member {
                name: format!("etcd{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                process: None,
            });
        }
        let endpoints: Vec<String> = members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        let mut cluster = EtcdCluster {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            members,
            extra_args: extra_args.to_vec(),
            admin: EtcdClient::new(
                &endpoints,
                security.as_ref().map(|s| s.etcd_tls(ETCD_ROOT)).as_ref(),
                None,
            )?,
            security,
        };
        for i in 0..n {
            cluster.start_member(i)?;
        }
        Ok(cluster)
    }

    /// Client endpoints, `host:port`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// A client for a workload, pointed at the leader if there is one;
    /// secured, it presents the `lock` user's certificate and logs in as
    /// `lock`.
    pub async fn connect(&self) -> anyhow::Result<EtcdClient> {
        let client = match &self.security {
            None => EtcdClient::new(&self.endpoints(), None, None)?,
            Some(creds) => {
                let tls = creds.etcd_tls(LOCK_USER);
                EtcdClient::new(&self.endpoints(), Some(&tls), Some(creds.etcd_lock_login()))?
            }
        };
        if let Some(leader) = self.leader().await {
            client.prefer(leader);
        }
        client.log_in().await?;
        Ok(client)
    }

    /// Secured: creates the users and turns authentication on. Once, on
    /// a healthy new cluster.
    pub async fn enable_auth(&self) -> anyhow::Result<()> {
        match &self.security {
            None => Ok(()),
            Some(creds) => {
                self.admin
                    .enable_auth(&creds.etcd_root_password, &creds.etcd_lock_login())
                    .await
            }
        }
    }

    /// (Re)starts member `index` (0-based). A restart reuses its data dir,
    /// where etcd ignores the initial-cluster flags.
    pub fn start_member(&mut self, index: usize) -> anyhow::Result<()> {
        if self.members[index].process.is_some() {
            return Ok(());
        }
        let scheme = if self.security.is_some() {
            "https"
        } else {
            "http"
        };
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={scheme}://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[index];
        let client_url = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer_url = format!("{scheme}://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new(&self.binary);
        command
            .arg(format!("--name={}", m.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.join(format!("{}.etcd", m.name)).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg("--initial-cluster-token=raftlock-bench")
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(
                self.security
                    .as_ref()
                    .map(|creds| security_flags(creds, index as u64 + 1))
                    .unwrap_or_default(),
            )
            .args(&self.extra_args);
        // No ETCD_* settings from our environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD") {
                command.env_remove(key);
            }
        }
        let log = self.dir.join(format!("{}.log", m.name));
        let process = NodeProcess::spawn(command, &log)?;
        self.members[index].process = Some(process);
        Ok(())
    }

    /// SIGKILL, like `kill -9`, and reap.
    pub fn kill_member(&mut self, index: usize) {
        self.members[index].process = None;
    }

    /// (member index + 1, pid, RSS bytes) of every running member.
    pub fn rss(&self) -> anyhow::Result<Vec<(u64, u32, u64)>> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.process.as_ref().map(|p| (i, p)))
            .map(|(i, p)| Ok((i as u64 + 1, p.pid(), p.rss_bytes()?)))
            .collect()
    }

    async fn statuses(&self) -> Vec<(usize, anyhow::Result<StatusResponse>)> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.process.is_some() {
                let status = self
                    .admin
                    .member_status(i, Duration::from_millis(500))
                    .await;
                out.push((i, status));
            }
        }
        out
    }

    /// The leader's index, if every running member answers and agrees.
    pub async fn leader(&self) -> Option<usize> {
        let statuses = self.statuses().await;
        let mut leader_id = None;
        for (_, status) in &statuses {
            let status = status.as_ref().ok()?;
            if status.leader == 0 || leader_id.is_some_and(|l| l != status.leader) {
                return None;
            }
            leader_id = Some(status.leader);
        }
        let leader_id = leader_id?;
        statuses.iter().find_map(|(i, s)| {
            let header = s.as_ref().ok()?.header.as_ref()?;
            (header.member_id == leader_id).then_some(*i)
        })
    }

    /// Highest Raft term any running member reports.
    pub async fn term(&self) -> anyhow::Result<u64> {
        let mut term = 0;
        for (i, status) in self.statuses().await {
            let status = status.with_context(|| format!("status of etcd member {}", i + 1))?;
            term = term.max(status.raft_term);
        }
        Ok(term)
    }

    pub async fn version(&self) -> String {
        for (_, status) in self.statuses().await {
            if let Ok(status) = status {
                return status.version;
            }
        }
        "unknown".into()
    }

    /// Keys under `prefix` (for checking the memory step).
    pub async fn count_prefix(&self, prefix: &str) -> anyhow::Result<i64> {
        self.admin.count_prefix(prefix).await
    }

    /// Waits until every running member answers, they agree on a leader,
    /// and each has applied within 100 entries of the leader.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for m in self.members.iter_mut() {
                if let Some(p) = m.process.as_mut() {
                    if p.exited() {
                        bail!("{} exited; its log ends:\n{}", m.name, p.log_tail(30));
                    }
                }
            }
            if self.caught_up().await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .filter_map(|m| {
                        let p = m.process.as_ref()?;
                        Some(format!("--- {} ---\n{}", m.name, p.log_tail(15)))
                    })
                    .collect();
                bail!(
                    "etcd cluster not healthy after {timeout:?}:\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn caught_up(&self) -> bool {
        let Some(leader) = self.leader().await else {
            return false;
        };
        let statuses = self.statuses().await;
        let Some(target) = statuses
            .iter()
            .find(|(i, _)| *i == leader)
            .and_then(|(_, s)| s.as_ref().ok())
            .map(|s| s.raft_applied_index)
        else {
            return false;
        };
        statuses.iter().all(|(_, s)| {
            s.as_ref()
                .is_ok_and(|s| s.raft_applied_index + 100 >= target)
        })
    }
}

/// Member `id`'s TLS flags (its node certificate, both ways, and the CA
/// every client and peer certificate must come from) and the auth tokens.
fn security_flags(creds: &BenchCredentials, id: u64) -> Vec<String> {
    let (cert, key) = creds.node(id);
    let (cert, key, ca) = (cert.display(), key.display(), creds.ca());
    let ca = ca.display();
    vec![
        format!("--cert-file={cert}"),
        format!("--key-file={key}"),
        format!("--trusted-ca-file={ca}"),
        "--client-cert-auth".into(),
        format!("--peer-cert-file={cert}"),
        format!("--peer-key-file={key}"),
        format!("--peer-trusted-ca-file={ca}"),
        "--peer-client-cert-auth".into(),
        format!("--auth-token={}", creds.etcd_auth_token_flag()),
    ]
}
