//! Elections with a pre-vote round, so that a node which cannot win does
//! not raise the term and depose a healthy leader.
//!
//! openraft 0.9 has no pre-vote: a node that hears nothing from the leader
//! for its election timeout campaigns at a higher term, even when the
//! others still hear from their leader and refuse it. A restarted follower
//! the leader had not reached yet did exactly that, every few hundred ms,
//! and the first reply the leader then got from it carried the higher term:
//! the healthy leader stepped down. So openraft's election timer is off
//! (`enable_elect: false`) and [`run`] drives elections instead: when this
//! node has heard from no leader for its (randomized) timeout, it asks the
//! voters whether they would vote for it ([`answer`]) and starts a real
//! election only if a majority of every voter configuration says yes.
//!
//! The pre-vote only decides *when* a node campaigns; who wins, and so
//! safety, is still openraft's vote.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RaftTimings;
use crate::network::pre_vote;
use crate::peer::Peers;
use crate::types::{LogId, NodeId, Raft};

/// When this node last heard from a leader it accepts (an append or a
/// snapshot that was not refused for a stale term), or granted a vote.
#[derive(Clone)]
pub struct LeaderContact {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for LeaderContact {
    /// Starts as if the node had just heard from a leader: a node that
    /// restarts waits a full timeout before it campaigns.
    fn default() -> Self {
        LeaderContact {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl LeaderContact {
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// "Would you vote for me if I campaigned now?"
#[derive(Debug, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PreVoteResponse {
    pub granted: bool,
}

/// What a voter knows when it answers a pre-vote.
pub struct VoterView {
    /// This node leads and a quorum acknowledged it within the lease.
    pub leading: bool,
    /// This node heard from a leader within the lease.
    pub heard_from_leader: bool,
    pub last_log_id: Option<LogId>,
}

/// The pre-vote rule: yes only to a candidate whose log is at least as up
/// to date as ours, and only if we have no live leader ourselves. The lease
/// is openraft's own (election_timeout_max): within it, openraft would
/// refuse the real vote anyway.
pub fn grant(view: &VoterView, req: &PreVoteRequest) -> bool {
    !view.leading && !view.heard_from_leader && req.last_log_id >= view.last_log_id
}

/// Answers a pre-vote from this node's current state.
pub fn answer(
    raft: &Raft,
    contact: &LeaderContact,
    lease: Duration,
    req: &PreVoteRequest,
) -> PreVoteResponse {
    let state = raft.server_metrics().borrow().state;
    let data = raft.data_metrics().borrow().clone();
    let lease_ms = lease.as_millis() as u64;
    let view = VoterView {
        leading: state == ServerState::Leader
            && data.millis_since_quorum_ack.is_some_and(|ms| ms < lease_ms),
        heard_from_leader: contact.last().elapsed() < lease,
        last_log_id: data.last_log,
    };
    let granted = grant(&view, req);
    tracing::debug!(candidate = req.candidate, granted, "pre-vote");
    PreVoteResponse { granted }
}

/// Whether `granted` holds a majority of every configuration in `joint`
/// (two during a membership change, one otherwise).
pub fn has_quorum(joint: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    joint
        .iter()
        .all(|voters| voters.intersection(granted).count() * 2 > voters.len())
}

/// Drives this node's elections until `stop` (see the module docs).
pub async fn run(
    raft: Raft,
    id: NodeId,
    contact: LeaderContact,
    peers: Peers,
    timings: RaftTimings,
    mut stop: watch::Receiver<bool>,
) {
    // As openraft's timer: a node that had a leader waits out the leader's
    // lease plus a random timeout, so one node usually campaigns alone.
    let lease = Duration::from_millis(timings.election_max_ms);
    let mut attempted = Instant::now();
    loop {
        let timeout = Duration::from_millis(
            rand::thread_rng().gen_range(timings.election_min_ms..=timings.election_max_ms),
        );
        let due = (contact.last() + lease + timeout).max(attempted + timeout);
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.changed() => return,
        }
        if contact.last() + lease + timeout > Instant::now() {
            continue; // a leader was heard from meanwhile
        }
        attempted = Instant::now();
        if raft.server_metrics().borrow().state == ServerState::Leader {
            continue;
        }
        if pre_vote_round(&raft, id, &peers, &timings).await {
            tracing::info!("pre-vote won: starting an election");
            if raft.trigger().elect().await.is_err() {
                return; // Raft has stopped
            }
        }
    }
}

/// Asks every other voter; true once a majority of every configuration
/// (this node included) would vote for us.
async fn pre_vote_round(raft: &Raft, id: NodeId, peers: &Peers, timings: &RaftTimings) -> bool {
    let membership = raft.metrics().borrow().membership_config.clone();
    let membership = membership.membership();
    let joint = membership.get_joint_config().clone();
    if !joint.iter().any(|voters| voters.contains(&id)) {
        return false; // a learner does not campaign
    }
    let mut granted = BTreeSet::from([id]);
    if has_quorum(&joint, &granted) {
        return true;
    }
    let req = Arc::new(PreVoteRequest {
        candidate: id,
        last_log_id: raft.data_metrics().borrow().last_log,
    });
    let deadline = Duration::from_millis(timings.election_min_ms);
    let mut asks = JoinSet::new();
    for voter in membership.voter_ids().filter(|v| *v != id) {
        let Some(node) = membership.get_node(&voter) else {
            continue;
        };
        let peer = peers.get(voter, &node.addr);
        let req = req.clone();
        asks.spawn(async move {
            let answer = tokio::time::timeout(deadline, pre_vote(&peer, &req)).await;
            (
                voter,
                matches!(answer, Ok(Ok(PreVoteResponse { granted: true }))),
            )
        });
    }
    while let Some(Ok((voter, yes))) = asks.join_next().await {
        if yes {
            granted.insert(voter);
            if has_quorum(&joint, &granted) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn view(leading: bool, heard: bool, last: Option<LogId>) -> VoterView {
        VoterView {
            leading,
            heard_from_leader: heard,
            last_log_id: last,
        }
    }

    fn ask(last: Option<LogId>) -> PreVoteRequest {
        PreVoteRequest {
            candidate: 1,
            last_log_id: last,
        }
    }

    #[test]
    fn refused_while_the_voter_hears_from_a_leader() {
        assert!(!grant(&view(false, true, log(3, 10)), &ask(log(3, 10))));
        assert!(!grant(&view(true, false, log(3, 10)), &ask(log(3, 10))));
    }

    #[test]
    fn refused_to_a_candidate_with_an_older_log() {
        assert!(!grant(&view(false, false, log(3, 10)), &ask(log(3, 9))));
        assert!(!grant(&view(false, false, log(3, 10)), &ask(log(2, 20))));
        assert!(!grant(&view(false, false, log(1, 1)), &ask(None)));
    }

    #[test]
    fn granted_without_a_leader_to_an_up_to_date_candidate() {
        assert!(grant(&view(false, false, log(3, 10)), &ask(log(3, 10))));
        assert!(grant(&view(false, false, log(3, 10)), &ask(log(4, 2))));
        assert!(grant(&view(false, false, None), &ask(None)));
    }

    #[test]
    fn quorum_of_every_configuration() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<_>>();
        let one = vec![set(&[1, 2, 3])];
        assert!(!has_quorum(&one, &set(&[1])));
        assert!(has_quorum(&one, &set(&[1, 3])));
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!has_quorum(&joint, &set(&[1, 2, 3])));
        assert!(has_quorum(&joint, &set(&[1, 3, 4])));
    }
}
