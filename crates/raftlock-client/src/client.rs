//! Connections to the cluster and the retry loop that follows the leader.

use std::collections::HashMap;
use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::*;
use raftlock_proto::{ErrorKind, LEADER_ADDR_HEADER, LEADER_ID_HEADER, UNREACHABLE_LEADER_HEADER};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::endpoint::parse_endpoint;
use crate::session::{Session, SessionOptions};
use crate::silence::{self, Silence};
use crate::Error;

/// The lock service on a channel. Large lock listings are legitimate
/// replies, so the reply size limit is raised; requests stay small.
pub(crate) fn lock_service(channel: Channel) -> LockClient<Channel> {
    LockClient::new(channel).max_decoding_message_size(64 << 20)
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one call keeps retrying an unavailable cluster.
    pub retry_for: Duration,
    /// Deadline for one RPC (long-polls add their wait on top).
    pub rpc_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry_for: Duration::from_secs(30),
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
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

/// How long a failed endpoint is tried only after the others. Short: a
/// healthy leader whose one call timed out must not be avoided for long.
const FAILED_COOLDOWN: Duration = Duration::from_secs(1);

/// What a failed attempt tells the retry loop.
enum Retry {
    /// Go to the leader a follower named: its id, if given, and address.
    Redirect(Option<u64>, String),
    /// Try another node after a pause.
    Elsewhere,
    /// The node answered but knows no leader yet (it already waited a
    /// little for the election): try another, without holding it against
    /// this one.
    NoLeaderYet,
    /// Not worth retrying: hand this to the caller.
    Fail(Error),
}

/// One try of a call: its timeout, and what the request should tell the
/// node it goes to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub timeout: Duration,
    unreachable_leader: Option<u64>,
}

impl Attempt {
    /// `message` as a request carrying this attempt's timeout and hints.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(id) = self.unreachable_leader {
            request
                .metadata_mut()
                .insert(UNREACHABLE_LEADER_HEADER, id.into());
        }
        request
    }
}

fn classify(status: &Status) -> Retry {
    match status.code() {
        Code::Unavailable if ErrorKind::of(status) == Some(ErrorKind::NoLeader) => {
            Retry::NoLeaderYet
        }
        Code::Unavailable => match status
            .metadata()
            .get(LEADER_ADDR_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            Some(addr) => Retry::Redirect(
                status
                    .metadata()
                    .get(LEADER_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                addr.to_string(),
            ),
            None => Retry::Elsewhere,
        },
        // A node that died mid-call, or a call that took too long.
        Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted => {
            Retry::Elsewhere
        }
        Code::Internal if broke_off(status) => Retry::Elsewhere,
        _ => Retry::Fail(Error::from_status(status)),
    }
}

/// Whether the call's own HTTP/2 stream or connection failed (the node went
/// away mid-call), rather than the node answering with an internal error:
/// tonic keeps the `h2::Error` it made the status from in the source chain
/// (directly, or under the `hyper::Error` that wrapped it).
fn broke_off(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.is::<h2::Error>() {
            return true;
        }
        source = error.source();
    }
    false
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

    pub fn with_options<I, S>(endpoints: I, options: ClientOptions) -> Result<Client, Error>
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
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                options,
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

    pub(crate) fn connection(&self, addr: &str) -> Result<Channel, Error> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad endpoint {addr:?}: {e}")))?
            .connect_timeout(self.inner.options.connect_timeout)
            .tcp_nodelay(true)
            // A frozen or cut-off node keeps its TCP connections open: ping
            // so a call waiting on it fails within about two seconds and the
            // caller moves on to the new leader. Not tighter: a busy but
            // healthy server must not have its connections cut.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
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
    /// unreachable nodes with backoff, until `give_up`. Each attempt gets
    /// `timeout` (or less, near `give_up`).
    pub(crate) async fn call<T, F, Fut>(
        &self,
        give_up: tokio::time::Instant,
        timeout: Duration,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Channel, Attempt) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut next = self.first_choice();
        // A leader we could not reach: followers that still name it are
        // asked to hold the call until the election names another.
        let mut unreachable_leader = None;
        let mut rotation = self.position(&next);
        let mut backoff = Duration::from_millis(20);
        let mut redirects = 0;
        let mut last_error: String;
        let mut silence = Silence::default();
        loop {
            let client = self.connection(&next)?;
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            let attempt = Attempt {
                timeout: timeout.min(left).max(Duration::from_millis(1)),
                unreachable_leader,
            };
            match tokio::time::timeout(attempt.timeout, call(client, attempt)).await {
                Ok(Ok(response)) => {
                    self.inner.warned_silent.store(false, Ordering::Relaxed);
                    *self.inner.leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(next);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => {
                    let reason = silence::reason(&status);
                    last_error = format!("{next}: {reason}");
                    match classify(&status) {
                        Retry::Fail(e) => return Err(e),
                        // Follow at once, but not forever: two nodes with
                        // stale views could point at each other.
                        Retry::Redirect(id, addr) if redirects < 3 => {
                            let leader = self.reachable_endpoint(id, addr).await;
                            if self.recently_failed(&leader) {
                                // A follower that has not yet noticed the
                                // leader is gone: wait for the election.
                                unreachable_leader = id.or(unreachable_leader);
                                redirects = 0;
                                next = self.next_endpoint(&mut rotation);
                            } else {
                                tracing::debug!(from = %next, to = %leader, "following the leader");
                                redirects += 1;
                                next = leader;
                                if tokio::time::Instant::now() < give_up {
                                    continue;
                                }
                            }
                        }
                        Retry::NoLeaderYet => {
                            redirects = 0;
                            next = self.next_endpoint(&mut rotation);
                        }
                        Retry::Elsewhere => {
                            self.no_answer(&mut silence, &next, &reason, give_up);
                            self.mark_failed(&next);
                            redirects = 0;
                            next = self.next_endpoint(&mut rotation);
                        }
                        Retry::Redirect(..) => {
                            self.mark_failed(&next);
                            redirects = 0;
                            next = self.next_endpoint(&mut rotation);
                        }
                    }
                }
                Err(_) => {
                    let reason = format!("no answer within {:?}", attempt.timeout);
                    last_error = format!("{next}: {reason}");
                    self.no_answer(&mut silence, &next, &reason, give_up);
                    self.mark_failed(&next);
                    redirects = 0;
                    next = self.next_endpoint(&mut rotation);
                }
            }
            if tokio::time::Instant::now() + backoff > give_up {
                if silence.is_total(&self.inner.endpoints) {
                    last_error = format!("no raftlock node answered (last: {last_error})");
                }
                return Err(Error::Unavailable(last_error));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
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
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let timeout = self.inner.options.rpc_timeout;
        self.call(self.retry_deadline(), timeout, |client, attempt| {
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
        let probe = Duration::from_millis(300);
        for endpoint in self.inner.endpoints.clone() {
            if let Ok(status) = self.node_status(&endpoint, probe).await {
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

    /// Opens a session; see [`SessionOptions`] for TTL, lock-delay and label.
    pub async fn open_session(&self, options: SessionOptions) -> Result<Session, Error> {
        Session::open(self.clone(), options).await
    }

    /// One lock's holder and waiters (linearizable); `None` if nobody holds or waits.
    pub async fn get_lock(&self, name: &str) -> Result<Option<LockInfo>, Error> {
        let req = GetLockRequest { name: name.into() };
        let reply = self
            .unary(req, |c, r| async move { lock_service(c).get_lock(r).await })
            .await?;
        Ok(reply.lock)
    }

    /// Locks whose names start with `prefix` (linearizable), and whether the list was cut at `limit`.
    pub async fn list_locks(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<(Vec<LockInfo>, bool), Error> {
        let req = ListLocksRequest {
            prefix: prefix.into(),
            limit,
        };
        let reply = self
            .unary(
                req,
                |c, r| async move { lock_service(c).list_locks(r).await },
            )
            .await?;
        Ok((reply.locks, reply.truncated))
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
            Ok(Err(status)) => Err(Error::Unavailable(format!(
                "{addr}: {}",
                silence::reason(&status)
            ))),
            Err(_) => Err(Error::Unavailable(format!(
                "{addr}: no answer in {timeout:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_stream_is_retried_elsewhere_but_an_internal_error_answer_is_not() {
        // What tonic makes of a stream the server's HTTP/2 layer reset.
        let broken = Status::from_error(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
        assert_eq!(broken.code(), Code::Internal);
        assert!(matches!(classify(&broken), Retry::Elsewhere));
        // The same words as a node's answer are not a broken stream.
        let answered = Status::internal("h2 protocol error: stream error received");
        assert!(matches!(classify(&answered), Retry::Fail(_)));
    }
}
