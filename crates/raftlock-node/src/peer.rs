//! One gRPC channel per peer for the Raft transport, kept usable when the
//! peer restarts, and a log of peers going down and coming back.
//!
//! A peer's name is resolved here, not inside the channel: a name lookup
//! that hangs (a container's resolver waiting seconds for an upstream DNS
//! server while the peer's name is gone) used to stall the channel, so a
//! restarted peer heard nothing from the leader for about 5 s. Here a slow
//! lookup falls back to the last address that worked, and a channel whose
//! calls keep failing is rebuilt, looking the name up again.
//!
//! openraft logs every failed replication call (about 40 a second per dead
//! peer); the node's default log filter turns that off, so this module logs
//! instead: once when a peer stops answering, a reminder every
//! [`REMIND_EVERY`] while it stays down, once when it is back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftlock_proto::raft::raft_client::RaftClient;
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::config::NodeTls;
use crate::fail_stop;
use crate::member_addr::MemberAddr;
use crate::network::MAX_RAFT_MESSAGE;
use crate::node_tls;
use crate::types::NodeId;

/// A TCP connect that takes longer than this fails, so a connect started
/// while the peer was down does not delay the one that will succeed.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Rebuild a channel whose calls have all failed for this long (at most
/// this often): a fresh lookup and a fresh connection.
const REBUILD_AFTER: Duration = Duration::from_millis(250);
/// With an address that worked before, wait this long for a new lookup.
const LOOKUP_WAIT_KNOWN: Duration = Duration::from_millis(10);
/// With no address yet, wait this long (the caller's deadline may be shorter).
const LOOKUP_WAIT_FIRST: Duration = Duration::from_secs(2);
/// A peer whose calls have failed for this long is reported down.
pub const DOWN_AFTER: Duration = Duration::from_secs(1);
/// While a peer stays down, a reminder this often.
pub const REMIND_EVERY: Duration = Duration::from_secs(30);

/// Every peer this node talks to, shared by replication, votes and
/// pre-votes so they use one channel and one health record per peer.
#[derive(Clone, Default)]
pub struct Peers {
    peers: Arc<Mutex<HashMap<NodeId, Arc<Peer>>>>,
    /// TLS with this node's certificate, or `None` for plain text.
    tls: Option<Arc<NodeTls>>,
}

impl Peers {
    /// Peers reached over TLS with `tls`, or in plain text.
    pub fn new(tls: Option<NodeTls>) -> Peers {
        Peers {
            peers: Arc::default(),
            tls: tls.map(Arc::new),
        }
    }

    /// The peer `id` whose membership entry is `member_addr`, reached at
    /// its peer address (a new record if that changed).
    pub fn get(&self, id: NodeId, member_addr: &str) -> Arc<Peer> {
        let addr = MemberAddr::peer_of(member_addr);
        let addr = addr.as_str();
        let mut peers = fail_stop::lock(&self.peers);
        match peers.get(&id) {
            Some(peer) if peer.addr == addr => peer.clone(),
            _ => {
                let peer = Arc::new(Peer::new(id, addr.to_string(), self.tls.clone()));
                peers.insert(id, peer.clone());
                peer
            }
        }
    }
}

pub struct Peer {
    id: NodeId,
    addr: String,
    tls: Option<Arc<NodeTls>>,
    link: Mutex<Link>,
    looked_up: Notify,
}

#[derive(Default)]
struct Link {
    client: Option<RaftClient<Channel>>,
    built_at: Option<Instant>,
    /// The address the last successful lookup gave.
    last_good: Option<SocketAddr>,
    lookup_running: bool,
    /// The latest lookup's outcome, until a caller takes it.
    looked_up: Option<Result<SocketAddr, String>>,
    last_lookup_failed: Option<(Instant, String)>,
    health: Health,
}

/// Calls since the last success, for the down/up log lines.
#[derive(Default)]
struct Health {
    failing_since: Option<Instant>,
    failed_calls: u64,
    down: bool,
    reminded_at: Option<Instant>,
}

impl Peer {
    fn new(id: NodeId, addr: String, tls: Option<Arc<NodeTls>>) -> Peer {
        Peer {
            id,
            addr,
            tls,
            link: Mutex::new(Link::default()),
            looked_up: Notify::new(),
        }
    }

    /// A client for this peer, building the channel (and resolving the
    /// name) if there is none; the error says why there is none.
    pub async fn client(self: &Arc<Self>) -> Result<RaftClient<Channel>, String> {
        if let Some(client) = &fail_stop::lock(&self.link).client {
            return Ok(client.clone());
        }
        let target = self.resolve().await?;
        // The certificate is checked against the name in the member
        // address, not the address it resolved to.
        let host = node_tls::host_of(&self.addr);
        let endpoint = node_tls::endpoint(
            &target.to_string(),
            &host,
            self.tls.as_deref(),
            CONNECT_TIMEOUT,
        )?;
        let client = RaftClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        let mut link = fail_stop::lock(&self.link);
        let client = link.client.get_or_insert(client).clone();
        link.built_at.get_or_insert_with(Instant::now);
        Ok(client)
    }

    /// The peer's socket address: the literal one, or a fresh lookup of its
    /// name, or (when the lookup is slow) the last address that worked.
    async fn resolve(self: &Arc<Self>) -> Result<SocketAddr, String> {
        if let Ok(addr) = self.addr.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let notified = self.looked_up.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let wait = {
            let mut link = fail_stop::lock(&self.link);
            if let Some(result) = link.looked_up.take() {
                return result;
            }
            if let Some((at, why)) = &link.last_lookup_failed {
                // A peer whose name is gone (a stopped container) is
                // looked up again at most every REBUILD_AFTER.
                if at.elapsed() < REBUILD_AFTER {
                    return Err(why.clone());
                }
            }
            if !link.lookup_running {
                link.lookup_running = true;
                tokio::spawn(self.clone().look_up());
            }
            if link.last_good.is_some() {
                LOOKUP_WAIT_KNOWN
            } else {
                LOOKUP_WAIT_FIRST
            }
        };
        let _ = tokio::time::timeout(wait, notified).await;
        let mut link = fail_stop::lock(&self.link);
        match link.looked_up.take() {
            Some(result) => result,
            None => link
                .last_good
                .ok_or_else(|| format!("looking up {} takes longer than {wait:?}", self.addr)),
        }
    }

    /// One name lookup on a blocking thread; at most one runs per peer.
    async fn look_up(self: Arc<Self>) {
        let result = match tokio::net::lookup_host(self.addr.as_str()).await {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| format!("{} resolves to no address", self.addr)),
            Err(e) => Err(format!("looking up {}: {e}", self.addr)),
        };
        {
            let mut link = fail_stop::lock(&self.link);
            link.lookup_running = false;
            match &result {
                Ok(addr) => {
                    link.last_good = Some(*addr);
                    link.last_lookup_failed = None;
                }
                Err(why) => link.last_lookup_failed = Some((Instant::now(), why.clone())),
            }
            link.looked_up = Some(result);
        }
        self.looked_up.notify_waiters();
    }

    /// Starts watching one call: dropped without [`CallGuard::succeeded`]
    /// or [`CallGuard::failed`] (openraft's own deadline cancelled it), it
    /// counts as a call that got no answer.
    pub fn call(self: &Arc<Self>) -> CallGuard {
        CallGuard {
            peer: Some(self.clone()),
        }
    }

    fn succeeded(&self) {
        let mut link = fail_stop::lock(&self.link);
        let health = &mut link.health;
        if health.down {
            let down_for = health
                .failing_since
                .map(|t| t.elapsed())
                .unwrap_or_default();
            tracing::info!(
                peer = self.id,
                addr = %self.addr,
                down_for = ?round_ms(down_for),
                failed_calls = health.failed_calls,
                "peer reachable again"
            );
        }
        *health = Health::default();
    }

    fn failed(&self, why: &str) {
        let mut link = fail_stop::lock(&self.link);
        let now = Instant::now();
        let since = *link.health.failing_since.get_or_insert(now);
        link.health.failed_calls += 1;
        // Rebuild a channel that has not carried a successful call for a
        // while: its connection may be a dead one the kernel has not given
        // up on yet, or to an address the name no longer has.
        if now - since >= REBUILD_AFTER
            && stale_for(link.built_at, now, REBUILD_AFTER)
            && link.client.is_some()
        {
            link.client = None;
            link.built_at = None;
        }
        let health = &mut link.health;
        if !health.down && now - since >= DOWN_AFTER {
            health.down = true;
            health.reminded_at = Some(now);
            tracing::warn!(
                peer = self.id,
                addr = %self.addr,
                reason = why,
                "peer unreachable; replication to it is retried until it answers"
            );
        } else if health.down && stale_for(health.reminded_at, now, REMIND_EVERY) {
            health.reminded_at = Some(now);
            tracing::warn!(
                peer = self.id,
                addr = %self.addr,
                down_for = ?round_ms(now - since),
                failed_calls = health.failed_calls,
                reason = why,
                "peer still unreachable"
            );
        }
    }
}

fn stale_for(at: Option<Instant>, now: Instant, period: Duration) -> bool {
    at.is_none_or(|t| now - t >= period)
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Records how one call to a peer ended (see [`Peer::call`]).
pub struct CallGuard {
    peer: Option<Arc<Peer>>,
}

impl CallGuard {
    /// The peer answered (with a result or an error of its own).
    pub fn succeeded(mut self) {
        if let Some(peer) = self.peer.take() {
            peer.succeeded();
        }
    }

    /// The call failed in transport: `why` goes into the log.
    pub fn failed(mut self, why: &str) {
        if let Some(peer) = self.peer.take() {
            peer.failed(why);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.failed("no answer within the call's deadline");
        }
    }
}
