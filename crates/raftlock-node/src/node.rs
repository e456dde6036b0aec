//! A running node: storage, Raft, the gRPC servers and the leader duties,
//! started and stopped together.
//!
//! Two listeners: clients (the Lock service) on one, the other nodes (Raft
//! RPCs and the Cluster service) on the other, so the peer port can be
//! kept off the client network. Without a peer listener everything is
//! served on the client one. Each listener has its own server builder, the
//! place for its own transport settings.
//!
//! A secure node (`config.security`) serves both over TLS, asking for a
//! client certificate but not requiring one (an operator's token is
//! enough), and authenticates every request: `AuthLayer::for_clients` on
//! the client port, `for_peers` where Raft is served. Node certificates
//! count as principal `node-<id>`; Raft RPCs are checked apart, in
//! `raft_admission`.
//!
//! Both listeners are bounded (see [`crate::server_limits`]): connections
//! per listener, HTTP/2 streams per connection, keepalives, reset floods,
//! header size, the TLS handshake, and the deadline of unary Lock calls.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::{BasicNode, Config, SnapshotPolicy};
use raftlock_proto::raft::raft_server::RaftServer;
use raftlock_proto::v1::cluster_server::ClusterServer;
use raftlock_proto::v1::lock_server::LockServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;

use crate::admin::ClusterService;
use crate::api::{LockService, MAX_CLIENT_MESSAGE};
use crate::applied_table::AppliedTable;
use crate::auth::AuthLayer;
use crate::batcher::Batcher;
use crate::config::{NodeConfig, Security};
use crate::election::{self, LeaderContact};
use crate::leader_duties::{self, SessionClock};
use crate::member_addr::MemberAddr;
use crate::metrics;
use crate::network::{Network, RaftService, MAX_RAFT_MESSAGE};
use crate::node_tls;
use crate::peer::Peers;
use crate::raft_admission::{BeforeMembership, RaftAdmission};
use crate::server_limits::call_limit::CallLimitLayer;
use crate::server_limits::connection_limit::LimitedIncoming;
use crate::server_limits::request_timeout::RequestTimeoutLayer;
use crate::server_limits::{ServerLimits, TLS_HANDSHAKE_TIMEOUT};
use crate::store;
use crate::types::{NodeId, Raft};

/// The log kept behind a snapshot is `snapshot_every` divided by this: a
/// briefly lagging follower then catches up from the log rather than being
/// sent the whole snapshot.
const KEPT_LOG_DIVISOR: u64 = 10;
/// Bootstrapping waits this long for each peer's TCP connect: a peer still
/// starting refuses at once, so a longer wait only helps a slow network.
const BOOTSTRAP_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// And probes again this often until a majority answers.
const BOOTSTRAP_PROBE_EVERY: Duration = Duration::from_millis(100);
/// Say that bootstrapping is still waiting every this many probe rounds
/// (a few seconds), not on every round.
const BOOTSTRAP_LOG_EVERY: u32 = 20;

type Server = JoinHandle<Result<(), tonic::transport::Error>>;

pub struct Node {
    raft: Raft,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<Server>,
    leader_duties: JoinHandle<()>,
}

/// What the services and the background tasks share.
struct Parts {
    id: NodeId,
    raft: Raft,
    table: AppliedTable,
    batcher: Batcher,
    clock: Arc<SessionClock>,
    contact: LeaderContact,
    peers: Peers,
    stop: watch::Receiver<bool>,
}

impl Node {
    /// Opens (or creates) the node's data and starts serving. Call
    /// [`Node::bootstrap`] next (once every peer is listening, if you can).
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        if !config.peers.is_empty() && !config.peers.contains_key(&config.id) {
            anyhow::bail!("--peers does not list this node's id {}", config.id);
        }
        // Before any socket: bad credentials stop the node at once.
        let tls = server_tls(config.security.as_ref())?;
        let table = AppliedTable::new();
        let peers = Peers::new(config.security.as_ref().map(Security::node_tls));
        let raft = open_raft(&config, table.clone(), peers.clone()).await?;
        let listener = bind(config.listen).await?;
        let peer_listener = match config.peer_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let local_addr = listener.local_addr()?;
        let peer_addr = match &peer_listener {
            Some(l) => l.local_addr()?,
            None => local_addr,
        };
        let (stop, stop_rx) = watch::channel(false);
        let parts = Parts {
            id: config.id,
            batcher: Batcher::start(raft.clone(), config.server_limits.max_queued_writes),
            raft: raft.clone(),
            table,
            clock: Arc::default(),
            contact: LeaderContact::default(),
            peers,
            stop: stop_rx,
        };
        let client_tls = tls.as_ref().map(|t| t.clients.clone());
        let mut servers = vec![serve_clients(listener, &config, &parts, client_tls)?];
        if let Some(peer_listener) = peer_listener {
            let peer_tls = tls.map(|t| t.peers);
            servers.push(serve_peers(peer_listener, &config, &parts, peer_tls)?);
        }
        let leader_duties = spawn_tasks(&config, parts)?;
        tracing::info!(id = config.id, addr = %local_addr, %peer_addr, "node started");
        Ok(Node {
            raft,
            local_addr,
            peer_addr,
            stop,
            servers,
            leader_duties,
        })
    }

    /// Exactly one node, the lowest id in `--peers`, initializes a new
    /// cluster, once a majority of the peers accept connections (so the
    /// first election does not fail on nodes still starting). The others
    /// wait to hear from it. A node with data resumes.
    pub async fn bootstrap(&self, config: &NodeConfig) -> anyhow::Result<()> {
        let Some(first) = config.peers.keys().next() else {
            return Ok(());
        };
        if *first != config.id || self.raft.is_initialized().await? {
            return Ok(());
        }
        let majority = config.peers.len() / 2 + 1;
        let mut rounds = 0u32;
        loop {
            let mut up = 0;
            for addr in config.peers.values() {
                let peer = MemberAddr::peer_of(addr);
                let probe = tokio::net::TcpStream::connect(peer.as_str());
                if let Ok(Ok(_)) = tokio::time::timeout(BOOTSTRAP_PROBE_TIMEOUT, probe).await {
                    up += 1;
                }
            }
            if up >= majority {
                break;
            }
            if rounds.is_multiple_of(BOOTSTRAP_LOG_EVERY) {
                tracing::info!(
                    up,
                    majority,
                    "waiting for a majority of peers before bootstrapping"
                );
            }
            rounds += 1;
            tokio::time::sleep(BOOTSTRAP_PROBE_EVERY).await;
        }
        let members: BTreeMap<u64, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        tracing::info!(?members, "bootstrapping a new cluster");
        if let Err(e) = self.raft.initialize(members).await {
            // Someone else's membership reached us first: nothing to do.
            tracing::warn!(%e, "cluster not initialized by this node");
        }
        Ok(())
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Where clients reach this node.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the other nodes reach this node: the peer listener, or the
    /// client one when there is no peer listener.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Stops serving, shuts Raft down and waits for the storage to close.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let raft_result = self.raft.shutdown().await;
        let _ = self.leader_duties.await;
        for server in self.servers {
            server.await??;
        }
        raft_result.map_err(|e| anyhow::anyhow!("raft shutdown: {e:?}"))?;
        Ok(())
    }
}

/// openraft's configuration for this node.
fn raft_config(config: &NodeConfig) -> anyhow::Result<Config> {
    let raft_config = Config {
        cluster_name: "raftlock".into(),
        heartbeat_interval: config.timings.heartbeat_ms,
        election_timeout_min: config.timings.election_min_ms,
        election_timeout_max: config.timings.election_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_every / KEPT_LOG_DIVISOR,
        // election::run campaigns instead, after a pre-vote.
        enable_elect: false,
        ..Default::default()
    };
    Ok(raft_config.validate()?)
}

/// Opens the node's storage and starts Raft on it.
async fn open_raft(config: &NodeConfig, table: AppliedTable, peers: Peers) -> anyhow::Result<Raft> {
    let sled_dir = config.data_dir.join("sled");
    let (log_store, state_machine, commit_gate) =
        store::open(&sled_dir, table, config.id, config.early_ack)
            .with_context(|| format!("opening the data directory {}", sled_dir.display()))?;
    let network = Network::new(
        Duration::from_millis(config.timings.heartbeat_ms),
        commit_gate,
        peers,
    );
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config(config)?),
        network,
        log_store,
        state_machine,
    )
    .await?;
    Ok(raft)
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// The TLS configurations of the client listener and of the peer
/// listener, if the node is secure. Only nodes and operators with an
/// admin's client certificate talk on the peer port, so its handshake
/// requires a certificate from the CA: a stranger without one does not
/// even reach the auth layer. The client listener (and a single port
/// serving both) only asks for one, since a token is enough for clients.
fn server_tls(security: Option<&Security>) -> anyhow::Result<Option<ListenerTls>> {
    let Some(security) = security else {
        return Ok(None);
    };
    let load = |client_certs| {
        raftlock_tls::server_tls(&security.cert, &security.key, &security.ca, client_certs)
            .context("loading the node's TLS credentials")
    };
    Ok(Some(ListenerTls {
        clients: load(raftlock_tls::ClientCerts::Optional)?,
        peers: load(raftlock_tls::ClientCerts::Required)?,
    }))
}

/// What [`server_tls`] returns: one configuration per listener.
#[derive(Clone)]
struct ListenerTls {
    clients: ServerTlsConfig,
    peers: ServerTlsConfig,
}

/// The authentication layer of a secure node's listener: tokens, client
/// certificates of principals that allow them, node certificates.
fn auth_layer(config: &NodeConfig, serves_raft: bool) -> Option<AuthLayer> {
    let security = config.security.as_ref()?;
    let layer = if serves_raft {
        AuthLayer::for_peers(security.auth.clone())
    } else {
        AuthLayer::for_clients(security.auth.clone())
    };
    Some(
        layer
            .with_client_certs(|extensions: &http::Extensions| {
                match node_tls::cert_identity(extensions)? {
                    identity @ raftlock_tls::Identity::Client(_) => Some(identity.uri()),
                    raftlock_tls::Identity::Node(_) => None,
                }
            })
            .with_node_certs(|extensions: &http::Extensions| {
                match node_tls::cert_identity(extensions)? {
                    raftlock_tls::Identity::Node(id) => Some(id),
                    raftlock_tls::Identity::Client(_) => None,
                }
            }),
    )
}

/// A server builder with `tls` (if any) and the HTTP/2 bounds.
fn builder(
    tls: Option<ServerTlsConfig>,
    limits: &ServerLimits,
) -> anyhow::Result<tonic::transport::Server> {
    let builder = limits.apply(tonic::transport::Server::builder());
    Ok(match tls {
        Some(tls) => builder
            .tls_config(tls.timeout(TLS_HANDSHAKE_TIMEOUT))
            .context("TLS configuration")?,
        None => builder,
    })
}

/// Serves clients on `listener` until `parts.stop` changes: the Lock
/// service, and the peer services too when there is no peer listener.
fn serve_clients(
    listener: tokio::net::TcpListener,
    config: &NodeConfig,
    parts: &Parts,
    tls: Option<ServerTlsConfig>,
) -> anyhow::Result<Server> {
    let api = LockService::new(
        parts.raft.clone(),
        parts.batcher.clone(),
        parts.table.clone(),
        parts.clock.clone(),
        parts.id,
        parts.stop.clone(),
        &config.server_limits,
    );
    let serves_raft = config.peer_listen.is_none();
    let layers = tower::ServiceBuilder::new()
        .layer(CallLimitLayer::new(
            config.server_limits.max_calls_in_flight,
        ))
        .layer(RequestTimeoutLayer::new(
            config.server_limits.request_timeout,
        ))
        .option_layer(auth_layer(config, serves_raft));
    let router = builder(tls, &config.server_limits)?
        .layer(layers)
        .add_service(LockServer::new(api).max_decoding_message_size(MAX_CLIENT_MESSAGE));
    let router = match serves_raft {
        false => router,
        true => router
            .add_service(cluster_server(config, parts))
            .add_service(raft_server(config, parts)),
    };
    let incoming = limited(
        listener,
        &config.server_limits,
        config.server_limits.max_client_connections,
        "client",
        "--max-client-connections",
    );
    Ok(spawn_server(router, incoming, parts.stop.clone()))
}

/// Serves the other nodes on `listener` until `parts.stop` changes: the
/// Raft RPCs and the Cluster service.
fn serve_peers(
    listener: tokio::net::TcpListener,
    config: &NodeConfig,
    parts: &Parts,
    tls: Option<ServerTlsConfig>,
) -> anyhow::Result<Server> {
    let auth = tower::ServiceBuilder::new().option_layer(auth_layer(config, true));
    let router = builder(tls, &config.server_limits)?
        .layer(auth)
        .add_service(cluster_server(config, parts))
        .add_service(raft_server(config, parts));
    let incoming = limited(
        listener,
        &config.server_limits,
        config.server_limits.max_peer_connections,
        "peer",
        "--max-peer-connections",
    );
    Ok(spawn_server(router, incoming, parts.stop.clone()))
}

fn cluster_server(config: &NodeConfig, parts: &Parts) -> ClusterServer<ClusterService> {
    let tls = config.security.as_ref().map(Security::node_tls);
    ClusterServer::new(ClusterService::new(parts.raft.clone(), parts.id, tls))
        .max_decoding_message_size(MAX_CLIENT_MESSAGE)
}

fn raft_server(config: &NodeConfig, parts: &Parts) -> RaftServer<RaftService> {
    let admission = config.security.as_ref().map(|_| {
        // Joining, or waiting for `raftlock cluster add` (no --peers):
        // the leader that will add this node is not known in advance.
        let before = if config.joins || config.peers.is_empty() {
            BeforeMembership::AnyNode
        } else {
            BeforeMembership::Listed(config.peers.keys().copied().collect())
        };
        RaftAdmission::new(parts.raft.clone(), before)
    });
    let raft_rpc = RaftService::new(
        parts.raft.clone(),
        parts.contact.clone(),
        Duration::from_millis(config.timings.election_max_ms),
        admission,
    )
    .with_max_snapshot_bytes(config.max_snapshot_bytes);
    RaftServer::new(raft_rpc)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE)
}

/// `listener`'s connections, at most `max` at once, with TCP options set.
fn limited(
    listener: tokio::net::TcpListener,
    limits: &ServerLimits,
    max: usize,
    name: &'static str,
    flag: &'static str,
) -> LimitedIncoming {
    // The builder's tcp_nodelay and tcp_keepalive only cover listeners
    // tonic binds itself. Without nodelay, Nagle holds a reply's trailers
    // until the client's delayed ACK: +40 ms on a share of calls.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.tcp_keepalive));
    LimitedIncoming::new(incoming, max, name, flag)
}

fn spawn_server<L>(
    router: tonic::transport::server::Router<L>,
    incoming: LimitedIncoming,
    mut stop: watch::Receiver<bool>,
) -> Server
where
    L: tower::Layer<tonic::service::Routes> + Clone + Send + 'static,
    L::Service: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.changed().await;
    }))
}

/// Starts the background tasks: metrics, the leader-change log, elections
/// and the leader duties (whose handle it returns, for shutdown).
fn spawn_tasks(config: &NodeConfig, parts: Parts) -> anyhow::Result<JoinHandle<()>> {
    if let Some(addr) = config.metrics_listen {
        metrics::install(addr).with_context(|| format!("serving metrics on {addr}"))?;
        tokio::spawn(metrics::sample(
            parts.raft.clone(),
            parts.table.clone(),
            parts.stop.clone(),
        ));
    }
    tokio::spawn(log_leader_changes(parts.raft.clone(), parts.stop.clone()));
    tokio::spawn(election::run(
        parts.raft.clone(),
        parts.id,
        parts.contact,
        parts.peers,
        config.timings,
        parts.stop.clone(),
    ));
    Ok(tokio::spawn(leader_duties::run(
        parts.raft,
        parts.batcher,
        parts.table,
        parts.clock,
        parts.id,
        Some(config.limits),
        parts.stop,
    )))
}

/// One log line per leader change, with the term and the reason we know.
async fn log_leader_changes(raft: Raft, mut stop: watch::Receiver<bool>) {
    // Not raft.metrics(): that one changes several times per write, and
    // waking this task for each showed up as context switches under load.
    let mut metrics = raft.server_metrics();
    let mut last: Option<(Option<u64>, u64)> = None;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.vote.leader_id().term)
        };
        if last.is_some_and(|(l, _)| l != leader) || last.is_none() && leader.is_some() {
            let reason = match (last.and_then(|(l, _)| l), leader) {
                (Some(_), Some(_)) => "a new term elected another leader",
                (Some(_), None) => "lost contact with the leader (election under way)",
                (None, Some(_)) => "election finished",
                (None, None) => "no leader",
            };
            tracing::info!(?leader, term, reason, "leader changed");
        }
        last = Some((leader, term));
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}
