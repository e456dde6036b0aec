//! Test harness: a cluster of real `raftlock server` processes on
//! loopback ports, each with its own data directory, that tests can kill,
//! pause and restart (the chaos suite's [`LocalCluster`]), and the waits
//! tests need around it. Clusters run over TLS with authentication, as
//! nodes do in production; clients here speak as the `admin` principal.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use raftlock_chaos::nodes::ClusterCredentials;
use raftlock_chaos::{LocalCluster, Nodes};
use raftlock_client::{Client, ClientOptions, StatusResponse, Transport};
use tonic::service::interceptor::InterceptedService;

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
    /// Starts `n` secure nodes (TLS, tokens) and waits until they have a
    /// leader.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], each node on one port for clients and
    /// peers alike, as nodes ran before they had a peer port; secure too.
    pub async fn start_single_port(n: u64) -> Cluster {
        let nodes =
            LocalCluster::start_single_port(Path::new(BIN), n, &[]).expect("start the cluster");
        Cluster::ready(nodes).await
    }

    /// Like [`Cluster::start`], passing `extra_args` to every `raftlock server`.
    pub async fn start_with(n: u64, extra_args: &[&str]) -> Cluster {
        let nodes =
            LocalCluster::start_secure(Path::new(BIN), n, extra_args).expect("start the cluster");
        Cluster::ready(nodes).await
    }

    /// Like [`Cluster::start`], each node serving its metrics page on a
    /// port of its own ([`Cluster::metrics_addr`]).
    pub async fn start_with_metrics(n: u64, extra_args: &[&str]) -> Cluster {
        let nodes = LocalCluster::start_secure_with_metrics(Path::new(BIN), n, extra_args)
            .expect("start the cluster");
        Cluster::ready(nodes).await
    }

    /// Where node `id` serves metrics (see [`Cluster::start_with_metrics`]).
    pub fn metrics_addr(&self, id: u64) -> String {
        let addr = self.nodes.metrics_addr(id);
        addr.expect("a node started with a metrics port")
            .to_string()
    }

    /// Node ids, founders and added nodes alike.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.ids()
    }

    /// `nodes` with admin's token file written for the CLI, once they
    /// have a leader.
    async fn ready(nodes: LocalCluster) -> Cluster {
        let cluster = Cluster { nodes };
        if let Some(credentials) = cluster.credentials() {
            write_token_file(&token_file(credentials), &credentials.admin_token);
        }
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

    /// A client speaking as `admin` over TLS (plain text for an insecure
    /// cluster): whatever profile the machine's user has is not looked at.
    pub fn client(&self) -> Client {
        self.client_with(self.endpoints(), ClientOptions::default().retry_for)
    }

    pub fn client_with(&self, endpoints: Vec<String>, retry_for: Duration) -> Client {
        Client::with_options(
            endpoints,
            ClientOptions {
                retry_for,
                transport: self.transport(),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    /// How clients reach this cluster: TLS with `admin`'s token and client
    /// certificate (the peer ports need the certificate).
    pub fn transport(&self) -> Transport {
        self.nodes.admin_transport()
    }

    /// The CA, node certificates and auth file; `None` if insecure.
    pub fn credentials(&self) -> Option<&ClusterCredentials> {
        self.nodes.credentials()
    }

    /// The environment a `raftlock` CLI child needs to reach this cluster
    /// as `admin`: `RAFTLOCK_CA`, `RAFTLOCK_AUTH_TOKEN_FILE` (a 0600 file)
    /// and admin's client certificate in `RAFTLOCK_CERT`/`RAFTLOCK_KEY`, or
    /// `RAFTLOCK_INSECURE=1` for an insecure cluster.
    pub fn cli_env(&self) -> Vec<(&'static str, PathBuf)> {
        match self.credentials() {
            Some(credentials) => vec![
                ("RAFTLOCK_CA", credentials.ca()),
                ("RAFTLOCK_AUTH_TOKEN_FILE", token_file(credentials)),
                ("RAFTLOCK_CERT", credentials.admin_cert()),
                ("RAFTLOCK_KEY", credentials.admin_key()),
            ],
            None => vec![("RAFTLOCK_INSECURE", PathBuf::from("1"))],
        }
    }

    /// A raw channel to node `id`'s client port (Lock service) whose
    /// calls bear `admin`'s token (and present admin's certificate), for
    /// the generated stubs.
    pub async fn client_port(&self, id: u64) -> AuthedChannel {
        self.authed_channel(&self.endpoint(id)).await
    }

    /// Like [`Cluster::client_port`], to node `id`'s peer port (Cluster
    /// service), presenting admin's client certificate as well.
    pub async fn peer_port(&self, id: u64) -> AuthedChannel {
        self.authed_channel(&self.peer_addr(id)).await
    }

    async fn authed_channel(&self, addr: &str) -> AuthedChannel {
        let (channel, token) = match self.credentials() {
            Some(credentials) => {
                let (cert, key) = (credentials.admin_cert(), credentials.admin_key());
                let channel = tls_channel(addr, &credentials.ca(), Some((&cert, &key)))
                    .await
                    .unwrap_or_else(|e| panic!("a TLS channel to {addr}: {e}"));
                let bearer = format!("Bearer {}", credentials.admin_token);
                (channel, Some(bearer.parse().expect("an ASCII token")))
            }
            None => {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("a valid address")
                    .connect()
                    .await
                    .unwrap_or_else(|e| panic!("a channel to {addr}: {e}"));
                (channel, None)
            }
        };
        InterceptedService::new(channel, AdminToken(token))
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

/// A channel whose every call bears `admin`'s token (none if insecure).
pub type AuthedChannel = InterceptedService<tonic::transport::Channel, AdminToken>;

/// Puts `authorization: Bearer <admin's token>` on each call.
#[derive(Clone)]
pub struct AdminToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AdminToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(bearer) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

/// Where the CLI finds `admin`'s token.
fn token_file(credentials: &ClusterCredentials) -> PathBuf {
    credentials.dir.join("admin.token")
}

/// Writes `token` to `path` readable by its owner only, as the CLI demands.
fn write_token_file(path: &Path, token: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create the token file");
    file.write_all(token.as_bytes())
        .expect("write the token file");
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
