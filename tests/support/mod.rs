//! Test harness: a cluster of real `raftlock server` processes on
//! loopback ports, each with its own data directory, that tests can kill,
//! pause and restart (the chaos suite's [`LocalCluster`]), and the waits
//! tests need around it.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use raftlock_chaos::{LocalCluster, Nodes};
use raftlock_client::{Client, ClientOptions, StatusResponse, Transport};

pub const BIN: &str = env!("CARGO_BIN_EXE_raftlock");

/// Cluster tests start several processes each; run them one at a time so
/// a 2-core machine does not starve their heartbeats.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A local cluster (see [`LocalCluster`]) plus the waits tests need.
pub struct Cluster {
    nodes: LocalCluster,
}

impl Cluster {
    /// Starts `n` nodes and waits until they have a leader.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], each node on one port for clients and
    /// peers alike, as nodes ran before they had a peer port.
    pub async fn start_single_port(n: u64) -> Cluster {
        let nodes =
            LocalCluster::start_single_port(Path::new(BIN), n, &[]).expect("start the cluster");
        let cluster = Cluster { nodes };
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// Like [`Cluster::start`], passing `extra_args` to every `raftlock server`.
    pub async fn start_with(n: u64, extra_args: &[&str]) -> Cluster {
        let nodes = LocalCluster::start(Path::new(BIN), n, extra_args).expect("start the cluster");
        let cluster = Cluster { nodes };
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    pub fn dir(&self) -> &Path {
        self.nodes.dir()
    }

    pub fn spawn(&mut self, id: u64) {
        self.nodes.start(id).expect("start a node");
    }

    /// A new node that does not bootstrap (see [`LocalCluster::add_node`]);
    /// returns its client address.
    pub fn add_node(&mut self, id: u64, join: bool) -> String {
        self.nodes.add_node(id, join).expect("a new node")
    }

    /// Forget node `id`'s data (a lost disk); it comes back with `--join`.
    pub fn wipe_and_rejoin(&mut self, id: u64) {
        self.nodes.wipe_and_rejoin(id).expect("wipe a node");
    }

    /// Graceful stop (SIGTERM, wait).
    pub fn stop(&mut self, id: u64) {
        self.nodes.stop(id).expect("stop a node");
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self, id: u64) {
        self.nodes.kill(id).expect("kill a node");
    }

    pub fn signal(&self, id: u64, sig: i32) {
        self.nodes.signal(id, sig).expect("signal a node");
    }

    pub fn endpoint(&self, id: u64) -> String {
        self.nodes.endpoint(id)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.endpoints()
    }

    /// Where the other nodes reach node `id` (its one address if single-port).
    pub fn peer_addr(&self, id: u64) -> String {
        self.nodes.peer_addr(id)
    }

    /// A client for membership changes, at the members' peer addresses.
    pub async fn admin(&self) -> Client {
        self.client()
            .membership_client(Duration::from_secs(1))
            .await
            .expect("a node names the members")
    }

    /// Endpoints starting at node `first`, so each caller enters elsewhere.
    pub fn endpoints_from(&self, first: u64) -> Vec<String> {
        let ids = self.nodes.ids();
        let at = ids.iter().position(|i| *i == first).unwrap_or(0);
        ids[at..]
            .iter()
            .chain(&ids[..at])
            .map(|i| self.nodes.endpoint(*i))
            .collect()
    }

    /// A plain-text client (the nodes run `--insecure`): whatever profile
    /// the machine's user has is not looked at.
    pub fn client(&self) -> Client {
        self.client_with(self.endpoints(), ClientOptions::default().retry_for)
    }

    pub fn client_with(&self, endpoints: Vec<String>, retry_for: Duration) -> Client {
        Client::with_options(
            endpoints,
            ClientOptions {
                retry_for,
                transport: Transport::Plain,
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        self.client()
            .node_status(&self.nodes.endpoint(id), Duration::from_millis(500))
            .await
            .ok()
    }

    /// Waits until a running node is leader and the others agree.
    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let until = tokio::time::Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            let mut followers_agree = true;
            for id in self.nodes.running() {
                match self.status(id).await {
                    Some(s) if s.role() == raftlock_client::Role::Leader => {
                        leaders.push((s.id, s.term))
                    }
                    Some(s) if s.has_leader && self.nodes.is_running(s.leader_id) => {}
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
        self.nodes.logs(15)
    }
}

/// A channel to a TLS node at `addr` (`HOST:PORT`) trusting `ca`,
/// presenting `identity` (a certificate and its key) if given.
pub async fn tls_channel(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Channel, String> {
    let tls = raftlock_tls::client_tls(ca, identity, None).map_err(|e| e.to_string())?;
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// `message` as a request bearing `token` (`authorization: Bearer`).
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("an ASCII token");
    request.metadata_mut().insert("authorization", value);
    request
}
