//! Test harness: a cluster of real `raftlock server` processes on
//! loopback ports, each with its own data directory, that tests can kill,
//! pause and restart.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raftlock_client::{Client, ClientOptions, StatusResponse};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_raftlock");

/// Cluster tests start several processes each; run them one at a time so
/// a 2-core machine does not starve their heartbeats.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub struct Cluster {
    dir: TempDir,
    addrs: BTreeMap<u64, String>,
    procs: BTreeMap<u64, Child>,
    extra_args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Starts `n` nodes and waits until they have a leader.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], passing `extra_args` to every `raftlock server`.
    pub async fn start_with(n: u64, extra_args: &[&str]) -> Cluster {
        let addrs = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut cluster = Cluster {
            dir: TempDir::new().expect("temp dir"),
            addrs,
            procs: BTreeMap::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        for id in 1..=n {
            cluster.spawn(id);
        }
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    pub fn spawn(&mut self, id: u64) {
        let peers: Vec<String> = self.addrs.iter().map(|(i, a)| format!("{i}={a}")).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let child = Command::new(BIN)
            .args(["server", "--id", &id.to_string()])
            .args(["--listen", &self.addrs[&id]])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .args([
                "--heartbeat-ms",
                "50",
                "--election-min-ms",
                "300",
                "--election-max-ms",
                "600",
            ])
            .args(&self.extra_args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .expect("start raftlock server");
        self.procs.insert(id, child);
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, id: u64, sig: i32) {
        let pid = self.procs[&id].id() as i32;
        // SAFETY: kill(2) on our own child process.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    pub fn endpoint(&self, id: u64) -> String {
        self.addrs[&id].clone()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.addrs.values().cloned().collect()
    }

    /// Endpoints starting at node `first`, so each caller enters elsewhere.
    pub fn endpoints_from(&self, first: u64) -> Vec<String> {
        let ids: Vec<u64> = self.addrs.keys().copied().collect();
        let at = ids.iter().position(|i| *i == first).unwrap_or(0);
        ids[at..]
            .iter()
            .chain(&ids[..at])
            .map(|i| self.addrs[i].clone())
            .collect()
    }

    pub fn client(&self) -> Client {
        Client::new(self.endpoints()).unwrap()
    }

    pub fn client_with(&self, endpoints: Vec<String>, retry_for: Duration) -> Client {
        Client::with_options(
            endpoints,
            ClientOptions {
                retry_for,
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        self.client()
            .node_status(&self.addrs[&id], Duration::from_millis(500))
            .await
            .ok()
    }

    /// Waits until a running node is leader and the others agree.
    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let until = tokio::time::Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            let mut followers_agree = true;
            for id in self.procs.keys() {
                match self.status(*id).await {
                    Some(s) if s.role == "leader" => leaders.push((s.id, s.term)),
                    Some(s) if s.has_leader && self.procs.contains_key(&s.leader_id) => {}
                    _ => followers_agree = false,
                }
            }
            if leaders.len() == 1 && followers_agree {
                return leaders[0].0;
            }
            if tokio::time::Instant::now() > until {
                panic!(
                    "no leader within {within:?} (leaders seen: {leaders:?})\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(s) = self.status(id).await {
                if s.last_applied >= index {
                    return;
                }
            }
            if tokio::time::Instant::now() > until {
                panic!(
                    "node {id} did not apply index {index} within {within:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.addrs.keys() {
            let text = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {id} log (last 15 lines) ---\n"));
            for line in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.signal(id, libc::SIGCONT);
            self.kill(id);
        }
    }
}
