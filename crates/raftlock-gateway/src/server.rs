//! The ZeroMQ side: listens on TCP, speaks ZMTP with each peer, and hands
//! each request to the dispatcher, one at a time per connection (a REQ
//! socket has one request outstanding), many connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::dispatch::{After, Dispatcher};
use crate::protocol::MAX_REQUEST;
use crate::zmtp::Connection;

/// Open connections at most; more are closed at once. Clients of this
/// protocol keep one socket per process, and leak some.
const MAX_CONNECTIONS: usize = 4096;
/// A peer that has not finished the handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `tcp://HOST:PORT` (`*` for every interface), as ZeroMQ writes it, to a
/// host and port to bind.
pub fn parse_url(url: &str) -> Result<(String, u16), String> {
    let Some(rest) = url.strip_prefix("tcp://") else {
        return Err(format!(
            "{url:?}: only tcp:// addresses are supported, e.g. tcp://127.0.0.1:7777"
        ));
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!("{url:?} has no port, e.g. tcp://127.0.0.1:7777"));
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{url:?}: the port must be 1 to 65535")),
    };
    let host = match host {
        "*" => "0.0.0.0",
        h => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host; use * for every interface"));
    }
    Ok((host.to_string(), port))
}

/// Serves until `stop` turns true (a signal) or a client's DONE is obeyed.
/// Returns whether it was DONE.
pub async fn serve(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let (done_tx, mut done) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return false,
            _ = done.wait_for(|d| *d) => return true,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!(%e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; closing this one");
            continue;
        };
        let dispatcher = dispatcher.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, &dispatcher, &done_tx).await {
                tracing::debug!(%peer, %e, "connection ended");
            }
            drop(slot);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    dispatcher: &Dispatcher,
    done: &watch::Sender<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = stream.set_nodelay(true);
    let mut conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, Connection::handshake(stream))
        .await
        .map_err(|_| "handshake timed out")??;
    tracing::debug!(%peer, "connected");
    while let Some(message) = conn.read_message(MAX_REQUEST + 1).await? {
        let oversized = message.oversized;
        let (envelope, body) = message.split_envelope();
        let (reply, after) = match body.as_slice() {
            [request] if !oversized => dispatcher.answer(request).await,
            [start, ..] if oversized => (
                dispatcher.refuse(start, &format!("over the {MAX_REQUEST}-byte limit")),
                After::Continue,
            ),
            [start, ..] => (
                dispatcher.refuse(start, "a request is one frame"),
                After::Continue,
            ),
            [] => (
                dispatcher.refuse(b"", "the request is empty"),
                After::Continue,
            ),
        };
        let mut frames: Vec<&[u8]> = envelope.iter().map(Vec::as_slice).collect();
        frames.push(reply.as_bytes());
        conn.write_message(&frames).await?;
        if after == After::Stop {
            done.send_replace(true);
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("tcp://127.0.0.1:7777"),
            Ok(("127.0.0.1".into(), 7777))
        );
        assert_eq!(parse_url("tcp://*:7777"), Ok(("0.0.0.0".into(), 7777)));
        assert_eq!(parse_url("tcp://[::1]:7777"), Ok(("::1".into(), 7777)));
        assert_eq!(
            parse_url("tcp://example.org:1"),
            Ok(("example.org".into(), 1))
        );
        for bad in [
            "ipc:///tmp/x",
            "tcp://host",
            "tcp://:7777",
            "tcp://h:0",
            "tcp://h:99999",
            "h:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
