//! At most N Lock-service calls in progress on a node at once, across all
//! connections: the bound on the product of connections and streams per
//! connection, which alone would allow millions. A call past it is
//! answered at once with RESOURCE_EXHAUSTED, kind `overloaded`, before its
//! request is even read. Raft and Cluster calls (other nodes, operators)
//! are never counted, so a crowd of clients cannot starve replication.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use raftlock_proto::ErrorKind;
use tokio::sync::Semaphore;
use tonic::Code;

/// Calls under this path are counted.
const LOCK_SERVICE: &str = "/raftlock.v1.Lock/";
const KEEP_ALIVE: &str = "/raftlock.v1.Lock/KeepAlive";

/// Adds [`CallLimit`] to a service; its clones share one count.
#[derive(Clone, Debug)]
pub struct CallLimitLayer {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl CallLimitLayer {
    pub fn new(limit: usize) -> Self {
        CallLimitLayer {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

impl<S> tower::Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> CallLimit<S> {
        CallLimit {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CallLimit<S> {
    inner: S,
    layer: CallLimitLayer,
}

type Reply = http::Response<tonic::body::Body>;

/// The answer to a call past the limit.
fn overloaded(limit: usize) -> Reply {
    metrics::counter!("raftlock_overloaded_total", "queue" => "calls").increment(1);
    ErrorKind::Overloaded
        .status(
            Code::ResourceExhausted,
            format!(
                "node overloaded: {limit} calls already in progress (the limit, \
                 --max-calls-in-flight); retry after a backoff"
            ),
        )
        .into_http()
}

impl<S, B> tower::Service<http::Request<B>> for CallLimit<S>
where
    S: tower::Service<http::Request<B>, Response = Reply>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Reply;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Keepalives are not counted: refusing them for a busy node would
        // let one client's flood of other calls expire everyone's sessions.
        let path = request.uri().path();
        if !path.starts_with(LOCK_SERVICE) || path == KEEP_ALIVE {
            return Box::pin(self.inner.call(request));
        }
        let Ok(slot) = self.layer.slots.clone().try_acquire_owned() else {
            let limit = self.layer.limit;
            return Box::pin(async move { Ok(overloaded(limit)) });
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let answer = call.await;
            // Held until the handler has answered (for Watch: until the
            // stream is set up; watchers have their own bound).
            drop(slot);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Layer, Service, ServiceExt};

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn lock_calls_past_the_limit_are_refused_until_one_ends() {
        let (release, released) = tokio::sync::watch::channel(false);
        let inner = tower::service_fn(move |_: http::Request<()>| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, Infallible>(Reply::new(tonic::body::Body::default()))
            }
        });
        let mut service = CallLimitLayer::new(2).layer(inner);
        let mut pending = Vec::new();
        for _ in 0..2 {
            let call = service
                .ready()
                .await
                .unwrap()
                .call(request("/raftlock.v1.Lock/Acquire"));
            pending.push(tokio::spawn(call));
        }
        let refused = service
            .ready()
            .await
            .unwrap()
            .call(request("/raftlock.v1.Lock/GetLock"))
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(refused.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("--max-calls-in-flight"));
        // Other services are not counted.
        let raft = service
            .ready()
            .await
            .unwrap()
            .call(request("/raftlock.raft.v1.Raft/Vote"));
        let raft = tokio::spawn(raft);
        // Nor are keepalives: a busy node must not expire sessions.
        let keep_alive = service
            .ready()
            .await
            .unwrap()
            .call(request("/raftlock.v1.Lock/KeepAlive"));
        let keep_alive = tokio::spawn(keep_alive);
        release.send(true).unwrap();
        let kept = keep_alive.await.unwrap().unwrap();
        assert!(tonic::Status::from_header_map(kept.headers()).is_none());
        for call in pending {
            call.await.unwrap().unwrap();
        }
        raft.await.unwrap().unwrap();
        let served = service
            .ready()
            .await
            .unwrap()
            .call(request("/raftlock.v1.Lock/GetLock"))
            .await
            .unwrap();
        assert!(tonic::Status::from_header_map(served.headers()).is_none());
    }
}
