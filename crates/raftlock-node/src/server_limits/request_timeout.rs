//! The deadline of unary Lock calls, as a tower layer on the listener.
//!
//! tonic's own `Server::timeout` covers every call alike, which does not
//! fit: a queued Acquire long-polls for up to `MAX_POLL` by design, a Watch
//! handler only sets its stream up (the stream itself lasts as long as the
//! watcher wants), and Raft and Cluster calls from other nodes last as long
//! as a snapshot transfer or a learner's catch-up. So the deadline depends
//! on the method: the plain timeout for unary Lock calls, the timeout plus
//! the long-poll for Acquire, none for the rest. A call past its deadline
//! is dropped (its work with it) and answered DEADLINE_EXCEEDED. A write
//! cut off this way may still be committed: clients retry it with the same
//! sequence number, which the lock table deduplicates.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use raftlock_proto::MAX_POLL;

/// Lock-service calls start with this path.
const LOCK_SERVICE: &str = "/raftlock.v1.Lock/";

/// Adds [`RequestTimeout`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    unary: Duration,
}

impl RequestTimeoutLayer {
    pub fn new(unary: Duration) -> Self {
        RequestTimeoutLayer { unary }
    }
}

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            unary: self.unary,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    unary: Duration,
}

/// How long a call to `path` may take before it is answered DEADLINE_EXCEEDED.
pub fn deadline_of(path: &str, unary: Duration) -> Option<Duration> {
    let method = path.strip_prefix(LOCK_SERVICE)?;
    match method {
        "Watch" => None,
        "Acquire" => Some(unary + MAX_POLL),
        _ => Some(unary),
    }
}

type Reply = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for RequestTimeout<S>
where
    S: tower::Service<http::Request<B>, Response = Reply>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let deadline = deadline_of(request.uri().path(), self.unary);
        let call = self.inner.call(request);
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return call.await;
            };
            match tokio::time::timeout(deadline, call).await {
                Ok(answer) => answer,
                Err(_) => {
                    metrics::counter!("raftlock_request_timeouts_total").increment(1);
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the node did not answer within {} ms (--request-timeout-ms): \
                         it may be without a quorum; a write may still be applied, \
                         retry it with the same seq",
                        deadline.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_method() {
        let unary = Duration::from_secs(2);
        assert_eq!(
            deadline_of("/raftlock.v1.Lock/OpenSession", unary),
            Some(unary)
        );
        assert_eq!(
            deadline_of("/raftlock.v1.Lock/Acquire", unary),
            Some(unary + MAX_POLL)
        );
        assert_eq!(deadline_of("/raftlock.v1.Lock/Watch", unary), None);
        assert_eq!(
            deadline_of("/raftlock.raft.v1.Raft/InstallSnapshot", unary),
            None
        );
        assert_eq!(deadline_of("/raftlock.v1.Cluster/AddMember", unary), None);
    }
}
