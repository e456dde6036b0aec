//! At most N connections per listener: the listener's accepted streams,
//! each holding a semaphore permit until the connection is dropped.
//!
//! A connection past the limit is closed at once, not left waiting. A
//! waiting connection would sit in the kernel's accept backlog, its TLS
//! handshake hanging until the client's own connect timeout with nothing
//! said; closed at once, the client sees UNAVAILABLE right away (every gRPC
//! client retries that with backoff, on this node or another), and the
//! backlog stays free for connections that fit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// Warn about refused connections at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A listener's connections, at most `limit` at once.
pub struct LimitedIncoming {
    inner: TcpIncoming,
    permits: Arc<Semaphore>,
    limit: usize,
    /// `client` or `peer`: for logs and metrics.
    listener: &'static str,
    flag: &'static str,
    refused_since_warning: u64,
    last_warning: Option<Instant>,
}

impl LimitedIncoming {
    pub fn new(
        inner: TcpIncoming,
        limit: usize,
        listener: &'static str,
        flag: &'static str,
    ) -> Self {
        LimitedIncoming {
            inner,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            listener,
            flag,
            refused_since_warning: 0,
            last_warning: None,
        }
    }

    fn refuse(&mut self, stream: TcpStream) {
        metrics::counter!("raftlock_connections_refused_total", "listener" => self.listener)
            .increment(1);
        self.refused_since_warning += 1;
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY)
        {
            tracing::warn!(
                listener = self.listener,
                limit = self.limit,
                refused = self.refused_since_warning,
                peer = ?stream.peer_addr().ok(),
                "connection limit reached: closing new connections (raise {})",
                self.flag
            );
            self.refused_since_warning = 0;
            self.last_warning = Some(Instant::now());
        }
        drop(stream);
    }
}

impl Stream for LimitedIncoming {
    type Item = io::Result<LimitedConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let stream = match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return Poll::Ready(Some(Ok(LimitedConnection::new(
                        stream,
                        permit,
                        self.listener,
                    ))))
                }
                Err(_) => self.refuse(stream),
            }
        }
    }
}

/// One accepted connection; its slot frees when it is dropped, which is
/// when the server is done with the connection.
pub struct LimitedConnection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    listener: &'static str,
}

impl LimitedConnection {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, listener: &'static str) -> Self {
        metrics::gauge!("raftlock_connections", "listener" => listener).increment(1.0);
        LimitedConnection {
            stream,
            _permit: permit,
            listener,
        }
    }
}

impl Drop for LimitedConnection {
    fn drop(&mut self) {
        metrics::gauge!("raftlock_connections", "listener" => self.listener).decrement(1.0);
    }
}

impl Connected for LimitedConnection {
    // The same as a bare TcpStream's, so whatever reads the connection's
    // addresses (and, under TLS, its certificates) sees no difference.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tonic::codegen::tokio_stream::StreamExt;

    #[tokio::test]
    async fn past_the_limit_new_connections_are_closed_until_one_ends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = LimitedIncoming::new(TcpIncoming::from(listener), 2, "test", "--x");
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        // The third is accepted by the kernel, then closed by us: reading
        // it ends at once.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(next.is_err(), "no connection admitted past the limit");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
        // One ends: the next connection is admitted.
        drop(first);
        let _fourth = TcpStream::connect(addr).await.unwrap();
        let admitted = tokio::time::timeout(Duration::from_secs(2), incoming.next()).await;
        assert!(matches!(admitted, Ok(Some(Ok(_)))));
    }
}
