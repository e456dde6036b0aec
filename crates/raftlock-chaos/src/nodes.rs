//! The cluster under test, as something a nemesis can hurt: a trait with
//! two backends, local processes ([`LocalCluster`]) and docker-compose
//! containers ([`crate::docker::DockerCluster`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use raftlock_client::{Credentials, Token, Transport};

mod credentials;
pub use credentials::ClusterCredentials;

pub trait Nodes: Send {
    fn ids(&self) -> Vec<u64>;
    /// Where a client reaches node `id`.
    fn endpoint(&self, id: u64) -> String;
    /// Crash: SIGKILL or `docker kill`.
    fn kill(&mut self, id: u64) -> anyhow::Result<()>;
    fn start(&mut self, id: u64) -> anyhow::Result<()>;
    /// SIGTERM and wait for a clean exit.
    fn stop(&mut self, id: u64) -> anyhow::Result<()>;
    /// Freeze every thread of the node (SIGSTOP or `docker pause`).
    fn pause(&mut self, id: u64) -> anyhow::Result<()>;
    fn resume(&mut self, id: u64) -> anyhow::Result<()>;
    fn can_partition(&self) -> bool {
        false
    }
    /// Cut the node off from every other node and from clients.
    fn partition(&mut self, id: u64) -> anyhow::Result<()> {
        bail!("node {id}: this backend cannot partition")
    }
    fn heal_partition(&mut self, id: u64) -> anyhow::Result<()> {
        bail!("node {id}: this backend cannot partition")
    }
    fn can_cut_power(&self) -> bool {
        false
    }
    /// Power cut: the node dies and keeps only what it fsynced (see
    /// raftlock-powerloss). It stays down until [`Nodes::start`].
    fn cut_power(&mut self, id: u64) -> anyhow::Result<()> {
        bail!("node {id}: this backend cannot cut power")
    }

    fn endpoints(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.endpoint(id)).collect()
    }

    /// How many lines of all node logs contain `needle`, if this backend
    /// keeps the logs.
    fn count_in_logs(&self, _needle: &str) -> Option<usize> {
        None
    }
}

/// `raftlock server` processes on loopback ports, each with a data
/// directory under one temporary directory, with the production default
/// timings unless `extra_args` say otherwise, over TLS with an auth file
/// (only [`LocalCluster::start_with_log_filter`] starts them plain text).
/// Each node serves clients on one port and the other nodes on another
/// (unless started with [`LocalCluster::start_single_port`]).
///
/// Nodes log with [`TEST_LOG_FILTER`] unless started with
/// [`LocalCluster::start_with_log_filter`].
pub struct LocalCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    /// Node id -> where clients reach it.
    addrs: BTreeMap<u64, String>,
    /// Node id -> where the other nodes reach it; empty for single-port
    /// nodes.
    peer_addrs: BTreeMap<u64, String>,
    procs: BTreeMap<u64, Child>,
    extra_args: Vec<String>,
    /// Nodes that start with `--join` (added later) instead of `--peers`.
    joiners: BTreeMap<u64, Vec<String>>,
    /// The founding members, given to every bootstrapping node as `--peers`.
    founders: Vec<u64>,
    /// `RUST_LOG` for the nodes; `None`: the server's own default.
    log_filter: Option<String>,
    /// The power-loss shim every node runs under, if power cuts are wanted.
    shim: Option<PathBuf>,
    /// TLS and authentication ([`LocalCluster::start_secure`]); `None`:
    /// the nodes run `--insecure`.
    credentials: Option<ClusterCredentials>,
    /// Node id -> its `--metrics-listen` address, for the nodes that serve
    /// metrics ([`LocalCluster::start_secure_with_metrics`]).
    metrics_addrs: BTreeMap<u64, String>,
}

/// openraft's warnings help when a test fails; its per-call replication
/// errors (dozens a second while a node is down) only bury them.
pub const TEST_LOG_FILTER: &str = "info,openraft=warn,openraft::replication=off";

/// `count` loopback ports free right now, all different: the listeners
/// are held until every port is chosen (the kernel may hand out a port
/// again once its listener is gone, and two nodes on one port make one of
/// them talk Raft to itself).
fn free_ports(count: usize, taken: &[String]) -> anyhow::Result<Vec<u16>> {
    let mut listeners = Vec::new();
    while listeners.len() < count {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if !taken.iter().any(|a| a.ends_with(&format!(":{port}"))) {
            listeners.push(listener);
        }
    }
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl LocalCluster {
    /// Starts `n` nodes of `binary` over TLS with authentication (no
    /// waiting for a leader): credentials are made first in
    /// `<dir>/credentials` ([`LocalCluster::credentials`]).
    pub fn start_secure(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
    ) -> anyhow::Result<LocalCluster> {
        Self::prepare(binary, n, extra_args, Some(TEST_LOG_FILTER), None)?
            .with_credentials(n)?
            .start_all(n)
    }

    /// Like [`LocalCluster::start_secure`], each node also serving its
    /// metrics page on a loopback port of its own
    /// ([`LocalCluster::metrics_addr`]).
    pub fn start_secure_with_metrics(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
    ) -> anyhow::Result<LocalCluster> {
        let mut cluster = Self::prepare(binary, n, extra_args, Some(TEST_LOG_FILTER), None)?;
        let taken: Vec<String> = cluster
            .addrs
            .values()
            .chain(cluster.peer_addrs.values())
            .cloned()
            .collect();
        let ports = free_ports(n as usize, &taken)?;
        let addrs = ports.iter().map(|port| format!("127.0.0.1:{port}"));
        cluster.metrics_addrs = (1..=n).zip(addrs).collect();
        cluster.with_credentials(n)?.start_all(n)
    }

    /// Where node `id` serves its metrics page, if it does.
    pub fn metrics_addr(&self, id: u64) -> Option<&str> {
        self.metrics_addrs.get(&id).map(String::as_str)
    }

    /// Nodes that run `--insecure`: plain text, no authentication. Only for
    /// the wire fuzzer, whose bytes must reach the HTTP/2 and protobuf
    /// parsers without a TLS handshake in front of them.
    pub fn start_insecure(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
    ) -> anyhow::Result<LocalCluster> {
        Self::prepare(binary, n, extra_args, Some(TEST_LOG_FILTER), None)?.start_all(n)
    }

    /// Like [`LocalCluster::start_secure`], each node on one port for
    /// clients and peers alike (no `--peer-listen`), as nodes ran before
    /// the split.
    pub fn start_single_port(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
    ) -> anyhow::Result<LocalCluster> {
        let mut cluster = Self::prepare(binary, n, extra_args, Some(TEST_LOG_FILTER), None)?;
        cluster.peer_addrs.clear();
        cluster.with_credentials(n)?.start_all(n)
    }

    /// Like [`LocalCluster::start_secure`], the nodes logging with
    /// `RUST_LOG` set to `log_filter`, or with the server's default filter
    /// if `None`.
    pub fn start_secure_with_log_filter(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
        log_filter: Option<&str>,
    ) -> anyhow::Result<LocalCluster> {
        Self::prepare(binary, n, extra_args, log_filter, None)?
            .with_credentials(n)?
            .start_all(n)
    }

    /// Like [`LocalCluster::start_secure`], every node under the
    /// power-loss shim at `shim` (the shared object), so
    /// [`Nodes::cut_power`] works.
    pub fn start_under_power_loss(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
        shim: &Path,
    ) -> anyhow::Result<LocalCluster> {
        Self::prepare(binary, n, extra_args, Some(TEST_LOG_FILTER), Some(shim))?
            .with_credentials(n)?
            .start_all(n)
    }

    /// A secure cluster's credentials; `None` for an `--insecure` one.
    pub fn credentials(&self) -> Option<&ClusterCredentials> {
        self.credentials.as_ref()
    }

    /// How a client reaches this cluster as `admin`: TLS with admin's token
    /// and client certificate, or plain text for an `--insecure` cluster.
    pub fn admin_transport(&self) -> Transport {
        match &self.credentials {
            Some(credentials) => Transport::Tls(Credentials {
                ca: credentials.ca(),
                token: Some(Token::new(credentials.admin_token.clone())),
                identity: Some((credentials.admin_cert(), credentials.admin_key())),
            }),
            None => Transport::Plain,
        }
    }

    /// This (not yet started) cluster with credentials for nodes `1..=n`,
    /// made in `<dir>/credentials`.
    fn with_credentials(mut self, n: u64) -> anyhow::Result<LocalCluster> {
        let dir = self.dir().join("credentials");
        self.credentials = Some(ClusterCredentials::create(&self.binary, dir, n)?);
        Ok(self)
    }

    /// The cluster, its ports chosen, nothing started.
    fn prepare(
        binary: &Path,
        n: u64,
        extra_args: &[&str],
        log_filter: Option<&str>,
        shim: Option<&Path>,
    ) -> anyhow::Result<LocalCluster> {
        let ports = free_ports(2 * n as usize, &[])?;
        let addr = |port: &u16| format!("127.0.0.1:{port}");
        let (client_ports, peer_ports) = ports.split_at(n as usize);
        Ok(LocalCluster {
            binary: binary.to_path_buf(),
            dir: tempfile::TempDir::new()?,
            addrs: (1..=n).zip(client_ports.iter().map(addr)).collect(),
            peer_addrs: (1..=n).zip(peer_ports.iter().map(addr)).collect(),
            procs: BTreeMap::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            joiners: BTreeMap::new(),
            founders: (1..=n).collect(),
            log_filter: log_filter.map(str::to_string),
            shim: shim.map(Path::to_path_buf),
            credentials: None,
            metrics_addrs: BTreeMap::new(),
        })
    }

    fn start_all(mut self, n: u64) -> anyhow::Result<LocalCluster> {
        for id in 1..=n {
            self.start(id)?;
        }
        Ok(self)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new node `id` on fresh ports that does not bootstrap: with
    /// `join` it starts with `--join` through the current members' peer
    /// addresses, else with no membership at all, waiting for `raftlock
    /// cluster add`. Not started yet. Returns its client address
    /// ([`LocalCluster::peer_addr`] has the other).
    pub fn add_node(&mut self, id: u64, join: bool) -> anyhow::Result<String> {
        let seeds: Vec<String> = if join {
            self.ids().iter().map(|i| self.peer_addr(*i)).collect()
        } else {
            Vec::new()
        };
        let taken: Vec<String> = self
            .addrs
            .values()
            .chain(self.peer_addrs.values())
            .cloned()
            .collect();
        let ports = free_ports(2, &taken)?;
        let addr = format!("127.0.0.1:{}", ports[0]);
        self.addrs.insert(id, addr.clone());
        if !self.peer_addrs.is_empty() {
            self.peer_addrs
                .insert(id, format!("127.0.0.1:{}", ports[1]));
        }
        self.joiners.insert(id, seeds);
        Ok(addr)
    }

    /// Where the other nodes reach node `id`: its peer port, or its one
    /// port in a single-port cluster.
    pub fn peer_addr(&self, id: u64) -> String {
        self.peer_addrs.get(&id).unwrap_or(&self.addrs[&id]).clone()
    }

    /// Node `id` as `--peers` names it: `PEER/CLIENT`, or its one address.
    fn member_addr(&self, id: u64) -> String {
        match self.peer_addrs.get(&id) {
            Some(peer) => format!("{peer}/{}", self.addrs[&id]),
            None => self.addrs[&id].clone(),
        }
    }

    /// Makes node `id` (stopped) come back as a new, empty node that joins.
    pub fn wipe_and_rejoin(&mut self, id: u64) -> anyhow::Result<()> {
        anyhow::ensure!(!self.procs.contains_key(&id), "stop node {id} first");
        let data = self.data_dir(id);
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        let seeds = self
            .ids()
            .into_iter()
            .filter(|other| *other != id)
            .map(|other| self.peer_addr(other))
            .collect();
        self.joiners.insert(id, seeds);
        Ok(())
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Where the power-loss shim keeps node `id`'s durable image.
    fn image_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.image"))
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.procs.contains_key(&id)
    }

    pub fn running(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    pub fn signal(&self, id: u64, sig: i32) -> anyhow::Result<()> {
        let child = self
            .procs
            .get(&id)
            .with_context(|| format!("node {id} is not running"))?;
        // SAFETY: kill(2) on our own child process touches no memory.
        if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
            bail!(
                "signal {sig} to node {id}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The last `lines` lines of every node's log, for failure reports.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for id in self.addrs.keys() {
            let text = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            // A panic's backtrace fills any tail: name the panic itself first.
            for (at, line) in all.iter().enumerate() {
                if line.contains("panicked at") {
                    let message = all.get(at + 1).unwrap_or(&"");
                    out.push_str(&format!("--- node {id} {line}\n    {message}\n"));
                }
            }
            out.push_str(&format!("--- node {id} log (last {lines} lines) ---\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Nodes for LocalCluster {
    fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    fn endpoint(&self, id: u64) -> String {
        self.addrs[&id].clone()
    }

    fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.procs.remove(&id) {
            // A stopped process must be woken to die promptly.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn start(&mut self, id: u64) -> anyhow::Result<()> {
        if self.procs.contains_key(&id) {
            return Ok(());
        }
        let membership: Vec<String> = match self.joiners.get(&id) {
            Some(seeds) if seeds.is_empty() => Vec::new(),
            Some(seeds) => vec!["--join".into(), seeds.join(",")],
            None => {
                let peers: Vec<String> = self
                    .founders
                    .iter()
                    .map(|i| format!("{i}={}", self.member_addr(*i)))
                    .collect();
                vec!["--peers".into(), peers.join(",")]
            }
        };
        let security = match &self.credentials {
            Some(credentials) => {
                credentials.issue_node(&self.binary, id)?;
                credentials.server_args(id)
            }
            None => vec!["--insecure".to_string()],
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let mut command = Command::new(&self.binary);
        match &self.log_filter {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        if let Some(shim) = &self.shim {
            // The shim models the data dir, so it must exist first.
            std::fs::create_dir_all(self.data_dir(id))?;
            command
                .env("LD_PRELOAD", shim)
                .env(raftlock_powerloss::ROOT_ENV, self.data_dir(id))
                .env(raftlock_powerloss::IMAGE_ENV, self.image_dir(id));
        }
        let child = command
            .args(["server", "--id", &id.to_string()])
            .args(["--listen", &self.addrs[&id]])
            .args(
                self.peer_addrs
                    .get(&id)
                    .map(|a| ["--peer-listen", a])
                    .into_iter()
                    .flatten(),
            )
            .args(&membership)
            .args(&security)
            .args(
                self.metrics_addrs
                    .get(&id)
                    .map(|a| ["--metrics-listen", a])
                    .into_iter()
                    .flatten(),
            )
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.procs.insert(id, child);
        Ok(())
    }

    fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGTERM)?;
        let mut child = self.procs.remove(&id).expect("signalled, so running");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("node {id} ignored SIGTERM for 10 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGSTOP)
    }

    fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGCONT)
    }

    fn can_cut_power(&self) -> bool {
        self.shim.is_some()
    }

    fn count_in_logs(&self, needle: &str) -> Option<usize> {
        let count = self.addrs.keys().map(|id| {
            let text = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            text.lines().filter(|line| line.contains(needle)).count()
        });
        Some(count.sum())
    }

    fn cut_power(&mut self, id: u64) -> anyhow::Result<()> {
        anyhow::ensure!(self.shim.is_some(), "node {id} does not run under the shim");
        self.kill(id)?;
        let image = self.image_dir(id);
        raftlock_powerloss::Image::new(&image)
            .restore(&self.data_dir(id))
            .with_context(|| format!("restoring node {id}'s durable image"))?;
        // The next start takes what is there now as durable.
        std::fs::remove_dir_all(&image)?;
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for id in self.running() {
            let _ = self.kill(id);
        }
    }
}
