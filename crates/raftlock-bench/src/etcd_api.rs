//! A small etcd v3 client for the benchmark: leases, `Lock`/`Unlock` from
//! etcd's lock service (what `etcdctl lock` calls), member status and a
//! key count, over gRPC stubs generated from etcd's own protos; in plain
//! text, or over TLS with a client certificate and, when given a login, an
//! auth token (see `etcd_auth`).
//!
//! Retries mirror raftlock's client so neither system is favoured: a call
//! goes to the preferred member (the leader, set by the workload), and on
//! an unavailable member or a transport error it moves to the next one
//! after a pause that starts at 20 ms and doubles up to 500 ms, for up to
//! 30 s; each attempt gets 500 ms (see [`RPC_TIMEOUT`]). `Lock` with the
//! same lease and name is idempotent in etcd (the lease's key is reused)
//! and `Unlock` is a delete, so retrying is safe.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

#[allow(clippy::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
#[allow(clippy::all)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

use etcdserverpb::kv_client::KvClient;
use etcdserverpb::lease_client::LeaseClient;
use etcdserverpb::maintenance_client::MaintenanceClient;
use etcdserverpb::*;
use v3lockpb::lock_client::LockClient;
use v3lockpb::{LockRequest, UnlockRequest};

/// Per attempt. A request that reaches a follower while there is no
/// leader is neither refused nor redirected by etcd: it hangs (past the
/// new leader's election). A short attempt timeout moves it to another
/// member sooner; it only shortens etcd's failover gaps, and the lock
/// waits in these workloads stay far below it. (A timed-out `Lock` gives
/// up its queue place; the retry queues again.)
const RPC_TIMEOUT: Duration = Duration::from_millis(500);
const RETRY_FOR: Duration = Duration::from_secs(30);

/// A member connection: the channel, with the auth token (if any) put
/// on every request.
pub type Conn = InterceptedService<Channel, TokenInterceptor>;

/// TLS towards etcd: its CA, and the client certificate every client must
/// present under `--client-cert-auth`.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An etcd user and password, exchanged for an auth token.
#[derive(Clone)]
pub struct EtcdLogin {
    pub user: String,
    pub password: String,
}

/// The current auth token, shared by a client's connections.
pub type SharedToken = Arc<RwLock<Option<AsciiMetadataValue>>>;

/// Adds the `token` header etcd reads its auth token from.
#[derive(Clone)]
pub struct TokenInterceptor {
    token: SharedToken,
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let token = self.token.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(token) = token {
            request.metadata_mut().insert("token", token);
        }
        Ok(request)
    }
}

#[derive(Clone)]
pub struct EtcdClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) endpoints: Vec<String>,
    pub(crate) channels: Vec<Conn>,
    current: AtomicUsize,
    pub(crate) login: Option<EtcdLogin>,
    pub(crate) token: SharedToken,
    /// One login at a time: the calls that find the token stale wait for
    /// the one that replaces it.
    pub(crate) login_lock: tokio::sync::Mutex<()>,
}

/// Worth another try on another member: the member is gone or between
/// leaders, or the call timed out. Not an authorization error, which
/// etcd's lock service passes on with code Unknown.
fn retryable(status: &Status) -> bool {
    !status.message().contains("permission denied")
        && matches!(
            status.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Internal
        )
}

impl EtcdClient {
    /// One lazily connected HTTP/2 channel per member, as raftlock's
    /// client makes them but without its 500 ms HTTP/2 pings: etcd's gRPC
    /// server allows a ping only every 5 s (`--grpc-keepalive-min-time`)
    /// and closes connections that ping more often, and etcd's own Go
    /// client sends none by default.
    ///
    /// With `tls`, `https://` and the client certificate; with `login`, an
    /// auth token too, fetched by [`EtcdClient::log_in`] (call it before
    /// the first request) and again whenever etcd calls it invalid.
    pub fn new(
        endpoints: &[String],
        tls: Option<&EtcdTls>,
        login: Option<EtcdLogin>,
    ) -> anyhow::Result<EtcdClient> {
        let token = SharedToken::default();
        // Read and checked once, not once per member.
        let tls_config = tls
            .map(|tls| raftlock_tls::client_tls(&tls.ca, Some((&tls.cert, &tls.key)), None))
            .transpose()
            .context("etcd client TLS")?;
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        let mut channels = Vec::new();
        for addr in endpoints {
            let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true);
            if let Some(config) = &tls_config {
                endpoint = endpoint.tls_config(config.clone())?;
            }
            let interceptor = TokenInterceptor {
                token: token.clone(),
            };
            channels.push(InterceptedService::new(
                endpoint.connect_lazy(),
                interceptor,
            ));
        }
        if channels.is_empty() {
            bail!("no etcd endpoints");
        }
        Ok(EtcdClient {
            inner: Arc::new(Inner {
                endpoints: endpoints.to_vec(),
                channels,
                current: AtomicUsize::new(0),
                login,
                token,
                login_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Send calls to member `index` first (e.g. the leader).
    pub fn prefer(&self, index: usize) {
        self.inner
            .current
            .store(index % self.inner.channels.len(), Ordering::Relaxed);
    }

    pub(crate) async fn call<T, F, Fut>(&self, timeout: Duration, mut call: F) -> anyhow::Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let give_up = tokio::time::Instant::now() + RETRY_FOR;
        let mut backoff = Duration::from_millis(20);
        // A token refused twice after fresh logins will not do a third time.
        let mut logins_left = 2;
        loop {
            let index = self.inner.current.load(Ordering::Relaxed);
            let channel = self.inner.channels[index].clone();
            let sent_token = self.current_token();
            let error = match tokio::time::timeout(timeout, call(channel)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if logins_left > 0 && self.token_refused(&status) => {
                    logins_left -= 1;
                    self.refresh_token(sent_token).await?;
                    continue;
                }
                Ok(Err(status)) if retryable(&status) => status.to_string(),
                Ok(Err(status)) => bail!("{}: {status}", self.inner.endpoints[index]),
                Err(_) => format!("no answer within {timeout:?}"),
            };
            // Move on from this member, unless another call already did.
            let next = (index + 1) % self.inner.channels.len();
            let _ = self.inner.current.compare_exchange(
                index,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if tokio::time::Instant::now() + backoff > give_up {
                bail!("etcd unavailable: {}: {error}", self.inner.endpoints[index]);
            }
            tokio::time::sleep(backoff).await;
            // The same schedule as raftlock's client.
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// A new lease of `ttl`; returns its id.
    pub async fn lease_grant(&self, ttl: Duration) -> anyhow::Result<i64> {
        let req = LeaseGrantRequest {
            ttl: ttl.as_secs() as i64,
            id: 0,
        };
        let reply = self
            .call(RPC_TIMEOUT, |c| async move {
                LeaseClient::new(c).lease_grant(req).await
            })
            .await?;
        if !reply.error.is_empty() {
            bail!("lease grant: {}", reply.error);
        }
        Ok(reply.id)
    }

    /// One keepalive for `lease` on a short-lived stream; returns the TTL
    /// left (0 or less means the lease is gone).
    pub async fn lease_keep_alive(&self, lease: i64) -> anyhow::Result<i64> {
        let reply = self
            .call(RPC_TIMEOUT, |c| async move {
                let requests = tokio_stream::iter([LeaseKeepAliveRequest { id: lease }]);
                let mut replies = LeaseClient::new(c)
                    .lease_keep_alive(requests)
                    .await?
                    .into_inner();
                match replies.message().await? {
                    Some(reply) => Ok(tonic::Response::new(reply)),
                    None => Err(Status::unavailable("keepalive stream ended")),
                }
            })
            .await?;
        Ok(reply.ttl)
    }

    pub async fn lease_revoke(&self, lease: i64) -> anyhow::Result<()> {
        let result = self
            .call(RPC_TIMEOUT, |c| async move {
                LeaseClient::new(c)
                    .lease_revoke(LeaseRevokeRequest { id: lease })
                    .await
            })
            .await;
        match result {
            // A retried revoke whose first attempt applied: same end.
            Err(e) if e.to_string().contains("requested lease not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Takes lock `name` for `lease`, waiting while others hold it; returns
    /// the ownership key to unlock with.
    pub async fn lock(&self, name: &str, lease: i64) -> anyhow::Result<Vec<u8>> {
        let req = LockRequest {
            name: name.as_bytes().to_vec(),
            lease,
        };
        let reply = self
            .call(RPC_TIMEOUT, |c| {
                let req = req.clone();
                async move { LockClient::new(c).lock(req).await }
            })
            .await?;
        Ok(reply.key)
    }

    pub async fn unlock(&self, key: &[u8]) -> anyhow::Result<()> {
        let req = UnlockRequest { key: key.to_vec() };
        self.call(RPC_TIMEOUT, |c| {
            let req = req.clone();
            async move { LockClient::new(c).unlock(req).await }
        })
        .await?;
        Ok(())
    }

    /// How many keys start with `prefix` (a linearizable count).
    pub async fn count_prefix(&self, prefix: &str) -> anyhow::Result<i64> {
        let req = RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            count_only: true,
            ..Default::default()
        };
        let reply = self
            .call(RPC_TIMEOUT, |c| {
                let req = req.clone();
                async move { KvClient::new(c).range(req).await }
            })
            .await?;
        Ok(reply.count)
    }

    /// Member `index`'s own status, asked of it directly (no retries).
    pub async fn member_status(
        &self,
        index: usize,
        timeout: Duration,
    ) -> anyhow::Result<StatusResponse> {
        let channel = self.inner.channels[index].clone();
        let mut client = MaintenanceClient::new(channel);
        match tokio::time::timeout(timeout, client.status(StatusRequest {})).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(anyhow!("{}: {status}", self.inner.endpoints[index])),
            Err(_) => Err(anyhow!(
                "{}: no answer within {timeout:?}",
                self.inner.endpoints[index]
            )),
        }
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(super::prefix_end(b"mem/"), b"mem0".to_vec());
        assert_eq!(super::prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(super::prefix_end(&[0xff]), vec![0]);
    }
}
