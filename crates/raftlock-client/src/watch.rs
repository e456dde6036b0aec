//! [`Client::watch`]: the locks under a prefix and every change to them, as
//! a stream that survives disconnects and leader changes.
//!
//! Every node applies the same log and so sees the same changes at the same
//! indexes. After a broken stream the watch reconnects (to any node) asking
//! for the changes after the last index it delivered, so nothing is missed
//! or repeated. When the node no longer has that history, it sends the
//! present state instead, delivered as a [`WatchEvent::Reset`] with
//! `resync` set.

use std::pin::Pin;
use std::task::{Context, Poll};

use raftlock_proto::v1::{LockChange, WatchKind, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::Stream;
use tonic::Status;

use crate::client::lock_service;
use crate::retry::{Next, RetryPolicy};
use crate::{Client, Error};

/// Events buffered ahead of a slow consumer; the server holds the rest
/// (and resyncs a watcher that falls too far behind).
const BUFFER: usize = 256;

/// One thing a watch tells. A watch starts with a `Reset`, the `State`
/// of the matching locks, then `Synced`; then one `Change` per change, in
/// log order. Another `Reset` (`resync: true`) means the watch could not
/// resume where it was: forget what you built and start again from the
/// state that follows.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    Reset {
        index: u64,
        resync: bool,
    },
    /// A holder (GRANTED) or waiter (QUEUED) as of the reset's index.
    State {
        index: u64,
        change: LockChange,
    },
    /// The state is complete, as of `index`.
    Synced {
        index: u64,
    },
    /// A change made by the log entry at `index`.
    Change {
        index: u64,
        change: LockChange,
    },
}

impl WatchEvent {
    pub fn index(&self) -> u64 {
        match self {
            WatchEvent::Reset { index, .. }
            | WatchEvent::State { index, .. }
            | WatchEvent::Synced { index }
            | WatchEvent::Change { index, .. } => *index,
        }
    }
}

/// A running watch: a [`Stream`] of events (or call [`Watch::next`]).
/// Ends only with an error it cannot retry (no node answered for the
/// client's `retry_for`, a refused request); dropping it stops it.
pub struct Watch {
    events: mpsc::Receiver<Result<WatchEvent, Error>>,
}

impl Watch {
    pub async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        self.events.recv().await
    }

    /// Like [`Watch::next`], for a caller outside async code.
    pub fn blocking_next(&mut self) -> Option<Result<WatchEvent, Error>> {
        self.events.blocking_recv()
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Client {
    /// Watches the locks whose names start with `prefix` ("" for all).
    /// Must be called inside a tokio runtime: the watch runs in a task.
    pub fn watch(&self, prefix: &str) -> Watch {
        let (out, events) = mpsc::channel(BUFFER);
        let watcher = Watcher {
            client: self.clone(),
            prefix: prefix.to_string(),
            out,
            position: Position::default(),
        };
        tokio::spawn(watcher.run());
        Watch { events }
    }
}

/// How far a watch got, and so where it resumes.
#[derive(Default)]
struct Position {
    /// The last index delivered in full: a synced state or a change.
    seen: Option<u64>,
    /// Part of a state was delivered, not its end: resuming must start
    /// from a new state.
    in_state: bool,
    /// Anything was delivered, so a new state is a resync.
    delivered: bool,
}

impl Position {
    fn resume_after(&self) -> u64 {
        match self.seen {
            Some(seen) if !self.in_state => seen,
            _ => 0,
        }
    }

    /// The events one message delivers; moves the position past them.
    fn take(&mut self, message: WatchResponse) -> Vec<WatchEvent> {
        let index = message.index;
        let events = match message.kind() {
            WatchKind::Reset => {
                self.in_state = true;
                vec![WatchEvent::Reset {
                    index,
                    resync: message.resync || self.delivered,
                }]
            }
            WatchKind::State if self.in_state => message
                .changes
                .into_iter()
                .map(|change| WatchEvent::State { index, change })
                .collect(),
            WatchKind::Synced if self.in_state => {
                self.in_state = false;
                self.seen = Some(index);
                vec![WatchEvent::Synced { index }]
            }
            // Changes at or before what was delivered would be repeats.
            WatchKind::Changes if !self.in_state && self.seen.is_some_and(|s| index > s) => {
                self.seen = Some(index);
                message
                    .changes
                    .into_iter()
                    .map(|change| WatchEvent::Change { index, change })
                    .collect()
            }
            // Out of place (a server this client does not understand):
            // dropped rather than delivered wrong.
            _ => Vec::new(),
        };
        self.delivered |= !events.is_empty();
        events
    }
}

struct Watcher {
    client: Client,
    prefix: String,
    out: mpsc::Sender<Result<WatchEvent, Error>>,
    position: Position,
}

impl Watcher {
    async fn run(mut self) {
        loop {
            let stream = match self.connect().await {
                Ok(stream) => stream,
                Err(error) => {
                    let _ = self.out.send(Err(error)).await;
                    return;
                }
            };
            match self.follow(stream).await {
                Ok(()) => continue,
                Err(Stop::Gone) => return,
                Err(Stop::Failed(error)) => {
                    let _ = self.out.send(Err(error)).await;
                    return;
                }
            }
        }
    }

    async fn connect(&self) -> Result<tonic::Streaming<WatchResponse>, Error> {
        let options = self.client.options();
        let policy = RetryPolicy::new(
            tokio::time::Instant::now() + options.retry_for,
            options.rpc_timeout,
        );
        let request = WatchRequest {
            prefix: self.prefix.clone(),
            from_index: self.position.resume_after(),
        };
        self.client
            .call(policy, |channel, _attempt| {
                // No deadline: the stream lasts as long as the watch.
                let request = tonic::Request::new(request.clone());
                async move { lock_service(channel).watch(request).await }
            })
            .await
    }

    /// Delivers what the stream brings until it ends (`Ok`: reconnect).
    async fn follow(&mut self, mut stream: tonic::Streaming<WatchResponse>) -> Result<(), Stop> {
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(status) => return retryable(&status),
            };
            for event in self.position.take(message) {
                self.out.send(Ok(event)).await.map_err(|_| Stop::Gone)?;
            }
        }
    }
}

enum Stop {
    /// Nobody listens any more.
    Gone,
    Failed(Error),
}

/// A broken stream is resumed, unless the node refused the watch itself.
fn retryable(status: &Status) -> Result<(), Stop> {
    match Next::<()>::after(status) {
        Next::Fail(error) => Err(Stop::Failed(error)),
        _ => {
            tracing::debug!(%status, "watch stream broke; resuming");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: WatchKind, index: u64, names: &[&str]) -> WatchResponse {
        WatchResponse {
            kind: kind.into(),
            index,
            changes: names
                .iter()
                .map(|name| LockChange {
                    name: name.to_string(),
                    ..Default::default()
                })
                .collect(),
            resync: false,
        }
    }

    #[test]
    fn resumes_after_the_last_delivered_index_and_drops_repeats() {
        let mut position = Position::default();
        assert_eq!(position.resume_after(), 0);
        position.take(message(WatchKind::Reset, 5, &[]));
        assert_eq!(
            position
                .take(message(WatchKind::State, 5, &["a", "b"]))
                .len(),
            2
        );
        // Broken off inside the state: start over from a fresh one.
        assert_eq!(position.resume_after(), 0);
        let reset = position.take(message(WatchKind::Reset, 6, &[]));
        assert_eq!(
            reset,
            vec![WatchEvent::Reset {
                index: 6,
                resync: true
            }]
        );
        position.take(message(WatchKind::Synced, 6, &[]));
        assert_eq!(position.resume_after(), 6);
        assert_eq!(
            position.take(message(WatchKind::Changes, 8, &["a"])).len(),
            1
        );
        assert_eq!(position.resume_after(), 8);
        // A node replaying what was delivered: not delivered again.
        assert!(position
            .take(message(WatchKind::Changes, 8, &["a"]))
            .is_empty());
        assert!(position
            .take(message(WatchKind::Changes, 7, &["a"]))
            .is_empty());
        assert_eq!(
            position.take(message(WatchKind::Changes, 9, &["a"])).len(),
            1
        );
    }

    #[test]
    fn changes_before_any_state_are_not_delivered() {
        let mut position = Position::default();
        assert!(position
            .take(message(WatchKind::Changes, 3, &["a"]))
            .is_empty());
        assert!(position.take(message(WatchKind::Synced, 3, &[])).is_empty());
        assert_eq!(position.resume_after(), 0);
    }
}
