//! Connections to the cluster and the retry loop that follows the leader.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::*;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Status;

use crate::bearer::{Bearer, Conn};
use crate::credentials::Transport;
use crate::endpoint::parse_endpoint;
use crate::retry::{Attempt, Next, Retry, RetryPolicy};
use crate::silence::{self, Silence};
use crate::Error;

/// The largest reply taken: a listing of many locks with long names,
/// labels and queues is a legitimate reply well past tonic's 4 MiB default.
const MAX_REPLY_BYTES: usize = 64 << 20;

/// What `list_locks` with limit 0 returns at most (the servers' default
/// before replies came in pages).
const DEFAULT_LIST_LIMIT: u32 = 10_000;

/// How long a call keeps retrying by default: long enough to ride out an
/// election and a node's restart, short enough that a script stops.
const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);
/// One RPC's default deadline: a healthy node answers in milliseconds,
/// and a node that takes seconds is better skipped.
const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting takes a round trip; a second means the node is not there.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A frozen or cut-off node keeps its TCP connections open: ping so a call
/// waiting on it fails within about two seconds and the caller moves on to
/// the new leader. Not tighter: a busy but healthy server must not have its
/// connections cut.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the connection counts as dead.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How long each endpoint gets to say its node id when a redirect names a
/// leader by an address we cannot use: this holds up the redirect, and a
/// node answers Status from memory.
const ID_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The lock service on a channel. Requests stay small; replies may not
/// (see [`MAX_REPLY_BYTES`]).
pub(crate) fn lock_service(channel: Conn) -> LockClient<Conn> {
    LockClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES)
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one call keeps retrying an unavailable cluster.
    pub retry_for: Duration,
    /// Deadline for one RPC (long-polls add their wait on top).
    pub rpc_timeout: Duration,
    pub connect_timeout: Duration,
    /// Plain text or TLS, and the token or certificate presented.
    /// [`Transport::Discover`] is resolved when the client is made, and
    /// [`Client::options`] shows what it resolved to.
    pub transport: Transport,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry_for: DEFAULT_RETRY_FOR,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            transport: Transport::default(),
        }
    }
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    options: ClientOptions,
    /// TLS for every connection (`https://`), or plain text when `None`.
    tls: Option<ClientTlsConfig>,
    /// The `authorization` header every call carries, if there is a token.
    bearer: Bearer,
    channels: Mutex<HashMap<String, Channel>>,
    /// Where the last successful call went: the leader, most likely.
    leader: Mutex<Option<String>>,
    /// Node id -> the endpoint we were given for it, learned from Status.
    /// A redirect names the leader's address as the cluster knows it,
    /// which a client outside (a container's published port, a NAT) may
    /// not reach; its id leads to an endpoint that works.
    endpoint_of: Mutex<HashMap<u64, String>>,
    /// Endpoints that just failed, and until when to try others first: a
    /// frozen node accepts TCP connections but never answers, and every
    /// call that tries it first would lose a whole RPC timeout.
    failed_until: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Said that no endpoint answers, and nothing has answered since: the
    /// warning comes once per outage, not once per call.
    warned_silent: AtomicBool,
}

/// Added when no node answered a plain-text client.
const PLAIN_TEXT_HINT: &str = "; connecting in plain text: if the nodes use TLS, \
     give --ca and --auth-token-file (RAFTLOCK_CA, RAFTLOCK_AUTH_TOKEN_FILE, or a profile directory)";

/// How long a failed endpoint is tried only after the others. Short: a
/// healthy leader whose one call timed out must not be avoided for long.
const FAILED_COOLDOWN: Duration = Duration::from_secs(1);

/// Where a call goes next, and what it learned on the way.
struct Route {
    endpoint: String,
    /// Where `endpoint` is in the rotation through all of them.
    rotation: usize,
    /// A leader we could not reach: followers that still name it are
    /// asked to hold the call until the election names another.
    unreachable_leader: Option<u64>,
    /// Redirects followed in a row.
    redirects: u32,
}

impl Client {
    /// A client for the cluster at `endpoints` (`host:port`). Connects lazily.
    pub fn new<I, S>(endpoints: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::with_options(endpoints, ClientOptions::default())
    }

    /// A client with `options`; its transport is resolved here, once: a
    /// credentials file that cannot be used fails now, with
    /// [`Error::Credentials`].
    pub fn with_options<I, S>(endpoints: I, mut options: ClientOptions) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints = endpoints
            .into_iter()
            .map(|e| parse_endpoint(&e.into()))
            .collect::<Result<Vec<String>, String>>()
            .map_err(Error::InvalidArgument)?;
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        options.transport = options.transport.resolved()?;
        let (tls, bearer) = match &options.transport {
            Transport::Tls(credentials) => (
                Some(crate::bearer::tls_config(credentials)?),
                Bearer::new(credentials.token.as_ref())?,
            ),
            _ => (None, Bearer::default()),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                options,
                tls,
                bearer,
                channels: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                endpoint_of: Mutex::new(HashMap::new()),
                failed_until: Mutex::new(HashMap::new()),
                warned_silent: AtomicBool::new(false),
            }),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// A client with this one's options (transport included) for other
    /// endpoints: the members' peer or client addresses.
    pub fn sibling<I, S>(&self, endpoints: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::with_options(endpoints, self.inner.options.clone())
    }

    /// The connection to `addr`, carrying this client's token on every call.
    pub(crate) fn connection(&self, addr: &str) -> Result<Conn, Error> {
        let channel = self.channel(addr)?;
        Ok(self.inner.bearer.on(channel))
    }

    fn channel(&self, addr: &str) -> Result<Channel, Error> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad endpoint {addr:?}: {e}")))?;
        if let Some(tls) = &self.inner.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::Credentials(format!("TLS for {addr}: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(self.inner.options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// The usual retry deadline for a call starting now.
    pub(crate) fn retry_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.inner.options.retry_for
    }

    /// Runs `call` against the leader, following redirects and retrying on
    /// unreachable nodes with backoff, as `policy` says.
    pub(crate) async fn call<T, F, Fut>(&self, policy: RetryPolicy, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Conn, Attempt) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut route = self.route();
        let mut backoff = policy.first_backoff;
        let mut silence = Silence::default();
        loop {
            let endpoint = route.endpoint.clone();
            let attempt = Attempt {
                timeout: policy.attempt_timeout_now(),
                unreachable_leader: route.unreachable_leader,
            };
            let (why, how) = match self.attempt(&endpoint, attempt, &mut call).await {
                Next::Done(answer) => return Ok(answer),
                Next::Fail(error) => return Err(error),
                Next::Retry { why, how } => (why, how),
            };
            let at_once = match how {
                Retry::Redirect(id, addr) => self.follow(&mut route, id, addr, &policy).await,
                Retry::Elsewhere => {
                    self.no_answer(&mut silence, &endpoint, &why, policy.deadline);
                    self.mark_failed(&endpoint);
                    self.move_on(&mut route);
                    false
                }
                Retry::NoLeaderYet => {
                    self.move_on(&mut route);
                    false
                }
                // Same node, after the pause: it is busy, not failed.
                Retry::Overloaded => false,
            };
            if at_once && !policy.expired() {
                continue;
            }
            if tokio::time::Instant::now() + backoff > policy.deadline {
                return Err(self.unavailable(&silence, format!("{endpoint}: {why}")));
            }
            tokio::time::sleep(backoff).await;
            backoff = policy.next_backoff(backoff);
        }
    }

    /// One try of `call` at `endpoint`, and what to do next.
    async fn attempt<T, F, Fut>(&self, endpoint: &str, attempt: Attempt, call: &mut F) -> Next<T>
    where
        F: FnMut(Conn, Attempt) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let channel = match self.connection(endpoint) {
            Ok(channel) => channel,
            Err(e) => return Next::Fail(e),
        };
        match tokio::time::timeout(attempt.timeout, call(channel, attempt)).await {
            Ok(Ok(response)) => {
                self.inner.warned_silent.store(false, Ordering::Relaxed);
                *self.inner.leader.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(endpoint.to_string());
                Next::Done(response.into_inner())
            }
            Ok(Err(status)) => Next::after(&status),
            Err(_) => Next::timed_out(attempt.timeout),
        }
    }

    /// Where a call starts: the last known leader, else the next endpoint.
    fn route(&self) -> Route {
        let endpoint = self.first_choice();
        Route {
            rotation: self.position(&endpoint),
            endpoint,
            unreachable_leader: None,
            redirects: 0,
        }
    }

    /// On to the next endpoint in rotation.
    fn move_on(&self, route: &mut Route) {
        route.redirects = 0;
        route.endpoint = self.next_endpoint(&mut route.rotation);
    }

    /// Follows a redirect to the leader named by `id` and `addr`: true to
    /// go there at once. Not when the redirects in a row ran out (the node
    /// that sent it counts as failed), nor when that leader just failed
    /// (a follower that has not noticed yet): then on to the next node,
    /// asking it to wait for the election.
    async fn follow(
        &self,
        route: &mut Route,
        id: Option<u64>,
        addr: String,
        policy: &RetryPolicy,
    ) -> bool {
        if route.redirects >= policy.max_redirects {
            self.mark_failed(&route.endpoint);
            self.move_on(route);
            return false;
        }
        let leader = self.reachable_endpoint(id, addr).await;
        if self.recently_failed(&leader) {
            route.unreachable_leader = id.or(route.unreachable_leader);
            self.move_on(route);
            return false;
        }
        tracing::debug!(from = %route.endpoint, to = %leader, "following the leader");
        route.redirects += 1;
        route.endpoint = leader;
        true
    }

    /// The error of a call that ran out of time, `last_error` its last try's.
    fn unavailable(&self, silence: &Silence, last_error: String) -> Error {
        if silence.is_total(&self.inner.endpoints) {
            // A TLS node drops a plain-text connection with no more than
            // a broken pipe: say what the silence may mean.
            let hint = match self.inner.options.transport {
                Transport::Plain => PLAIN_TEXT_HINT,
                _ => "",
            };
            return Error::Unavailable(format!(
                "no raftlock node answered (last: {last_error}){hint}"
            ));
        }
        Error::Unavailable(last_error)
    }

    /// Notes that `endpoint` did not answer; after a full round in which
    /// none did, says so (once until something answers again).
    fn no_answer(
        &self,
        silence: &mut Silence,
        endpoint: &str,
        reason: &str,
        give_up: tokio::time::Instant,
    ) {
        if silence.note(endpoint, &self.inner.endpoints)
            && !self.inner.warned_silent.swap(true, Ordering::Relaxed)
        {
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            tracing::warn!(
                "{}",
                silence::nobody_answers(&self.inner.endpoints, reason, left)
            );
        }
    }

    /// A plain request/response call with the default timeout and retries.
    pub(crate) async fn unary<Req, T, F, Fut>(&self, req: Req, method: F) -> Result<T, Error>
    where
        Req: Clone,
        F: Fn(Conn, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let policy = RetryPolicy::new(self.retry_deadline(), self.inner.options.rpc_timeout);
        self.call(policy, |client, attempt| {
            method(client, attempt.request(req.clone()))
        })
        .await
    }

    /// Where to reach node `id`, advertised at `addr`: `addr` itself if it
    /// is one of our endpoints, else the endpoint that reported that id.
    async fn reachable_endpoint(&self, id: Option<u64>, addr: String) -> String {
        let Some(id) = id else { return addr };
        if self.inner.endpoints.contains(&addr) {
            return addr;
        }
        let known = |this: &Self| {
            this.inner
                .endpoint_of
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
        };
        if let Some(endpoint) = known(self) {
            return endpoint;
        }
        for endpoint in self.inner.endpoints.clone() {
            if let Ok(status) = self.node_status(&endpoint, ID_PROBE_TIMEOUT).await {
                self.inner
                    .endpoint_of
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(status.id, endpoint);
            }
        }
        known(self).unwrap_or(addr)
    }

    /// Stops preferring `addr` for a while once it failed, and stops
    /// calling it the leader.
    fn mark_failed(&self, addr: &str) {
        let mut leader = self.inner.leader.lock().unwrap_or_else(|e| e.into_inner());
        if leader.as_deref() == Some(addr) {
            *leader = None;
        }
        self.inner
            .failed_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                addr.to_string(),
                tokio::time::Instant::now() + FAILED_COOLDOWN,
            );
    }

    fn recently_failed(&self, addr: &str) -> bool {
        self.inner
            .failed_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .is_some_and(|until| *until > tokio::time::Instant::now())
    }

    /// The last known leader, else the first endpoint that has not just failed.
    fn first_choice(&self) -> String {
        let leader = self
            .inner
            .leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(leader) = leader.filter(|l| !self.recently_failed(l)) {
            return leader;
        }
        let mut rotation = self.inner.endpoints.len() - 1;
        self.next_endpoint(&mut rotation)
    }

    /// The next endpoint in rotation, skipping those that just failed
    /// unless all of them did.
    fn next_endpoint(&self, rotation: &mut usize) -> String {
        let n = self.inner.endpoints.len();
        for _ in 0..n {
            *rotation += 1;
            let candidate = &self.inner.endpoints[*rotation % n];
            if !self.recently_failed(candidate) {
                return candidate.clone();
            }
        }
        *rotation += 1;
        self.inner.endpoints[*rotation % n].clone()
    }

    fn position(&self, addr: &str) -> usize {
        self.inner
            .endpoints
            .iter()
            .position(|e| e == addr)
            .unwrap_or(0)
    }

    /// One lock's holder and waiters (linearizable); `None` if nobody holds or waits.
    pub async fn get_lock(&self, name: &str) -> Result<Option<LockInfo>, Error> {
        let req = GetLockRequest { name: name.into() };
        let reply = self
            .unary(req, |c, r| async move { lock_service(c).get_lock(r).await })
            .await?;
        Ok(reply.lock)
    }

    /// Locks whose names start with `prefix`, in name order: at most
    /// `limit` (0: 10 000), and whether more were left out.
    /// Read page by page (see [`Client::list_locks_page`]): each page is
    /// linearizable, the whole is not one snapshot.
    pub async fn list_locks(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<(Vec<LockInfo>, bool), Error> {
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n,
        };
        let mut locks = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let wanted = limit - locks.len() as u32;
            let reply = self.list_page(prefix, wanted, token.as_deref()).await?;
            let got_some = !reply.locks.is_empty();
            locks.extend(reply.locks);
            let next = Some(reply.next_page_token).filter(|t| !t.is_empty());
            match next {
                // A server without pages says only whether it cut the list.
                None => return Ok((locks, reply.truncated)),
                Some(_) if locks.len() as u32 >= limit => return Ok((locks, true)),
                // A page that brings nothing, or points back where it
                // started, would loop forever: stop with what we have.
                Some(ref next) if !got_some || token.as_ref() == Some(next) => {
                    return Ok((locks, true))
                }
                next => token = next,
            }
        }
    }

    /// One page of the locks under `prefix` (linearizable): at most
    /// `page_size` (0, or more than the server's largest page: the
    /// server's largest page, 1000 by default), after the page that
    /// returned `page_token` (`None`: the first page). Returns the locks
    /// and the token of the next page (`None` after the last).
    pub async fn list_locks_page(
        &self,
        prefix: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<(Vec<LockInfo>, Option<String>), Error> {
        let reply = self.list_page(prefix, page_size, page_token).await?;
        let next = Some(reply.next_page_token).filter(|t| !t.is_empty());
        Ok((reply.locks, next))
    }

    async fn list_page(
        &self,
        prefix: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<ListLocksResponse, Error> {
        let req = ListLocksRequest {
            prefix: prefix.into(),
            limit,
            page_token: page_token.unwrap_or_default().into(),
        };
        self.unary(
            req,
            |c, r| async move { lock_service(c).list_locks(r).await },
        )
        .await
    }

    /// One node's own status, asked of that node directly (no redirects).
    pub async fn node_status(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<StatusResponse, Error> {
        let mut client = lock_service(self.connection(addr)?);
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.status(req)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(match Next::<()>::after(&status) {
                // Refused as this caller: every node will say the same.
                Next::Fail(
                    e @ (Error::Tls(_) | Error::Unauthenticated(_) | Error::PermissionDenied(_)),
                ) => e,
                _ => Error::Unavailable(format!("{addr}: {}", silence::reason(&status))),
            }),
            Err(_) => Err(Error::Unavailable(format!(
                "{addr}: no answer in {timeout:?}"
            ))),
        }
    }
}
