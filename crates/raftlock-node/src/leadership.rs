//! Sharing leadership confirmations among concurrent reads and keepalives.
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

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::propose::{ensure_linearizable, NotServed};
use crate::types::Raft;

type Waiter = oneshot::Sender<Result<(), NotServed>>;

#[derive(Clone)]
pub struct LeadershipCheck {
    raft: Raft,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    round_running: bool,
    waiting: Vec<Waiter>,
}

impl LeadershipCheck {
    pub fn new(raft: Raft) -> Self {
        LeadershipCheck {
            raft,
            state: Arc::default(),
        }
    }

    /// Confirms with a quorum that this node leads and waits until what was
    /// committed before the call is applied here (see `ensure_linearizable`).
    pub async fn confirm(&self) -> Result<(), NotServed> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.waiting.push(reply);
            !std::mem::replace(&mut state.round_running, true)
        };
        if start {
            tokio::spawn(self.clone().run_rounds());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(NotServed::Unavailable("the node is shutting down".into())))
    }

    async fn run_rounds(self) {
        loop {
            let waiting = {
                let mut state = self.lock();
                if state.waiting.is_empty() {
                    state.round_running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let result = ensure_linearizable(&self.raft).await;
            for reply in waiting {
                let _ = reply.send(result.clone());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
