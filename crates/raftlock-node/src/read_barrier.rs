//! The read barrier: one leadership confirmation (a quorum round) shared
//! by every concurrent read and keepalive.
//!
//! Each `ensure_linearizable` costs a heartbeat round to every follower, and
//! openraft 0.9 gives those heartbeats the heartbeat interval as timeout. A
//! keepalive per session each TTL/3 made one round per call: 64 sessions
//! renewing at once under write load queued 128 heartbeats behind the
//! followers' appends, they timed out, keepalives were retried, and every
//! client stalled for seconds. Here at most one round runs at a time, and
//! every call that arrived before a round started is answered by it (a call
//! arriving during a round waits for the next), which keeps each answer
//! linearizable: the confirmation always happens after the call arrived.
//!
//! The queue is bounded (`--max-queued-reads`): a call that finds it full
//! is refused at once with [`NotServed::Overloaded`].

use tokio::sync::{mpsc, oneshot};

use crate::raft_calls::{ensure_linearizable, NotServed, Overload};
use crate::types::Raft;

type Waiter = oneshot::Sender<Result<(), NotServed>>;

/// Hands confirmation requests to the task that runs the rounds; cheap to
/// clone. The same shape as [`crate::batcher::Batcher`].
#[derive(Clone)]
pub struct ReadBarrier {
    queue: mpsc::Sender<Waiter>,
    limit: usize,
}

impl ReadBarrier {
    /// Starts the task, with room for `limit` waiting calls (at least
    /// one); it ends when every `ReadBarrier` is dropped.
    pub fn new(raft: Raft, limit: usize) -> Self {
        let limit = limit.max(1);
        let (queue, waiting) = mpsc::channel(limit);
        tokio::spawn(run_rounds(raft, waiting));
        ReadBarrier { queue, limit }
    }

    /// Confirms with a quorum that this node leads and waits until what was
    /// committed before the call is applied here (see `ensure_linearizable`).
    pub async fn wait(&self) -> Result<(), NotServed> {
        let (reply, answer) = oneshot::channel();
        let stopped = || NotServed::Unavailable("the node is shutting down".into());
        self.queue.try_send(reply).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!("raftlock_overloaded_total", "queue" => "reads").increment(1);
                NotServed::Overloaded(Overload {
                    queue: "reads",
                    limit: self.limit,
                    flag: "--max-queued-reads",
                })
            }
            mpsc::error::TrySendError::Closed(_) => stopped(),
        })?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`ReadBarrier::wait`] for a keepalive: never refused for a full
    /// queue, it waits for room. Refusing keepalives would let a flood of
    /// reads by one client expire everyone else's sessions and hand their
    /// locks away; a keepalive costs the queue one slot for one round.
    pub async fn wait_for_room(&self) -> Result<(), NotServed> {
        let (reply, answer) = oneshot::channel();
        let stopped = || NotServed::Unavailable("the node is shutting down".into());
        self.queue.send(reply).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// One round for everything queued when it starts; what arrives during a
/// round waits for the next.
async fn run_rounds(raft: Raft, mut waiting: mpsc::Receiver<Waiter>) {
    while let Some(first) = waiting.recv().await {
        let mut round = vec![first];
        while let Ok(next) = waiting.try_recv() {
            round.push(next);
        }
        let result = ensure_linearizable(&raft).await;
        for reply in round {
            let _ = reply.send(result.clone());
        }
    }
}
