//! Who may send this node Raft RPCs (AppendEntries, Vote, InstallSnapshot,
//! PreVote): on a secure node, only a node whose certificate names a
//! member of this node's current membership. Checked before the payload
//! is decoded, so a stranger's bytes never reach bincode or Raft.
//!
//! Before it has a membership (not yet bootstrapped, or not yet added) a
//! node accepts the ids in its `--peers`, or any node certificate when it
//! joins with `--join` or has no `--peers` (waiting for `raftlock cluster
//! add`): the leader that adds it is not known in advance.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftlock_tls::Identity;
use tonic::{Request, Status};

use crate::fail_stop;
use crate::node_tls;
use crate::types::{NodeId, Raft};

/// A refusal is logged at most this often per reason.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Which nodes a node without a membership yet accepts.
#[derive(Clone, Debug)]
pub enum BeforeMembership {
    /// These (its `--peers`).
    Listed(BTreeSet<NodeId>),
    /// Any node certificate (`--join`).
    AnyNode,
}

/// The check, shared by every Raft RPC of one node.
#[derive(Clone)]
pub struct RaftAdmission {
    raft: Raft,
    before_membership: BeforeMembership,
    last_logged: Arc<Mutex<[Option<Instant>; 2]>>,
}

/// Why a call was refused; the index of its log throttle.
#[derive(Clone, Copy)]
enum Reason {
    NoNodeCert = 0,
    NotMember = 1,
}

impl RaftAdmission {
    pub fn new(raft: Raft, before_membership: BeforeMembership) -> RaftAdmission {
        RaftAdmission {
            raft,
            before_membership,
            last_logged: Arc::default(),
        }
    }

    /// Lets `request` on, or says why not (PERMISSION_DENIED).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(Identity::Node(id)) = node_tls::cert_identity(request.extensions()) else {
            let message = "Raft RPCs need a node certificate".to_string();
            self.log(Reason::NoNodeCert, &message);
            return Err(Status::permission_denied(message));
        };
        if self.is_member(id) {
            return Ok(());
        }
        let message = format!("node certificate for {id}: not a member");
        self.log(Reason::NotMember, &message);
        Err(Status::permission_denied(message))
    }

    fn is_member(&self, id: NodeId) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        if membership.nodes().next().is_some() {
            return membership.get_node(&id).is_some();
        }
        match &self.before_membership {
            BeforeMembership::Listed(ids) => ids.contains(&id),
            BeforeMembership::AnyNode => true,
        }
    }

    /// A WARN line, unless one was logged for the same reason within
    /// [`LOG_EVERY`]: a stranger retrying must not flood the log.
    fn log(&self, reason: Reason, message: &str) {
        let now = Instant::now();
        let mut last = fail_stop::lock(&self.last_logged);
        let slot = &mut last[reason as usize];
        if slot.is_none_or(|at| now - at >= LOG_EVERY) {
            *slot = Some(now);
            tracing::warn!("Raft RPC refused: {message}");
        }
    }
}
