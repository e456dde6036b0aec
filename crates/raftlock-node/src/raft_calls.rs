//! The calls into Raft that only the leader serves: appending an entry
//! ([`write()`]; [`crate::batcher`] groups commands into entries) and
//! confirming leadership for a read ([`ensure_linearizable`]). Both ride
//! out an election in progress, and fail with [`NotServed`], which names
//! the leader when one is known.

use std::future::Future;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::BasicNode;
use raftlock_core::{Proposal, Response};

use crate::member_addr::MemberAddr;
use crate::types::{NodeId, Raft};

/// Why a write or linearizable read could not be served here.
#[derive(Clone, Debug)]
pub enum NotServed {
    /// This node is not the leader; the leader, if known, and its client
    /// address (clients never need the peer port).
    NotLeader(Option<(NodeId, String)>),
    /// No quorum, shutting down, or another Raft failure.
    Unavailable(String),
    /// A bounded queue in front of Raft is full: which one, and the flag
    /// that raises it. Retryable after a backoff.
    Overloaded(Overload),
}

/// A full queue: what it holds, its bound, and the flag that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overload {
    pub queue: &'static str,
    pub limit: usize,
    pub flag: &'static str,
}

impl std::fmt::Display for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node overloaded: {} {} already queued (the limit, {}); retry after a backoff",
            self.limit, self.queue, self.flag
        )
    }
}

/// How long a node without a leader holds a call, waiting for an election
/// to finish, before telling the client to try elsewhere. Answering "no
/// leader" at once would send every client into backoff just as the new
/// leader appears.
const ELECTION_WAIT: Duration = Duration::from_millis(800);

/// Appends `proposal` to the log, waits until it is applied here, and
/// returns its responses. A proposal refused for want of a leader is
/// proposed again if this node wins the election: it was never accepted,
/// and its client requests are deduplicated anyway.
pub(crate) async fn write(raft: &Raft, proposal: Proposal) -> Result<Vec<Response>, NotServed> {
    let written = again_if_elected(raft, || raft.client_write(proposal.clone())).await?;
    Ok(written.data)
}

/// Confirms leadership with a quorum and waits until everything committed
/// before this call is applied here, so a read that follows is linearizable.
pub async fn ensure_linearizable(raft: &Raft) -> Result<(), NotServed> {
    again_if_elected(raft, || raft.ensure_linearizable()).await?;
    Ok(())
}

/// Runs `attempt`; if it failed because no leader was known, waits for the
/// election, and if this node won it, runs `attempt` once more.
async fn again_if_elected<T, E, F, Fut>(raft: &Raft, mut attempt: F) -> Result<T, NotServed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RaftError<NodeId, E>>>,
    E: std::error::Error + openraft::TryAsRef<openraft::error::ForwardToLeader<NodeId, BasicNode>>,
{
    match attempt().await {
        Ok(done) => Ok(done),
        Err(e) => match after_election(raft, not_served(e)).await {
            NotServed::NotLeader(Some((id, _))) if id == own_id(raft) => {
                attempt().await.map_err(not_served)
            }
            other => Err(other),
        },
    }
}

fn own_id(raft: &Raft) -> NodeId {
    raft.metrics().borrow().id
}

/// If no leader is known, waits (a little) for the election to name one.
async fn after_election(raft: &Raft, e: NotServed) -> NotServed {
    if !matches!(e, NotServed::NotLeader(None)) {
        return e;
    }
    wait_for_leader(raft, None).await
}

/// Waits (a little) for a leader other than `suspect`, which a client could
/// not reach: this node has not noticed yet, but the election is coming.
pub async fn leader_other_than(raft: &Raft, suspect: NodeId) -> NotServed {
    wait_for_leader(raft, Some(suspect)).await
}

async fn wait_for_leader(raft: &Raft, not: Option<NodeId>) -> NotServed {
    // Server metrics change with leader and membership only, not with
    // every append and apply.
    let mut metrics = raft.server_metrics();
    let until = tokio::time::Instant::now() + ELECTION_WAIT;
    loop {
        {
            let m = metrics.borrow_and_update();
            if let Some(leader) = m.current_leader.filter(|l| Some(*l) != not) {
                let addr = m
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| MemberAddr::client_of(&n.addr));
                if let Some(addr) = addr {
                    return NotServed::NotLeader(Some((leader, addr)));
                }
            }
        }
        match tokio::time::timeout_at(until, metrics.changed()).await {
            Ok(Ok(())) => {}
            _ => return NotServed::NotLeader(None),
        }
    }
}

pub(crate) fn not_served<E>(e: RaftError<NodeId, E>) -> NotServed
where
    E: std::error::Error + openraft::TryAsRef<openraft::error::ForwardToLeader<NodeId, BasicNode>>,
{
    match e.forward_to_leader::<BasicNode>() {
        Some(forward) => NotServed::NotLeader(
            forward.leader_id.zip(
                forward
                    .leader_node
                    .as_ref()
                    .map(|n| MemberAddr::client_of(&n.addr)),
            ),
        ),
        None => NotServed::Unavailable(e.to_string()),
    }
}
