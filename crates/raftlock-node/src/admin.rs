//! The membership service (`raftlock.v1.Cluster`): add a learner, promote
//! it, remove a member, with a guard against changes that could leave the
//! cluster without a working majority.
//!
//! Served on the peer port (when a node has two): its callers are
//! operators' tools that reach the peer network, so a follower's redirect
//! names the leader's peer address, not its client one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Membership};
use raftlock_proto::v1::cluster_server::Cluster;
use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::{
    AddLearnerRequest, Member, MembershipResponse, PromoteRequest, RemoveMemberRequest,
    StatusRequest,
};
use tonic::{Request, Response, Status};

use crate::config::NodeTls;
use crate::member_addr::MemberAddr;
use crate::node_tls;
use crate::raft_calls::{ensure_linearizable, not_served, NotServed};
use crate::types::{NodeId, Raft};

/// Shrinking to fewer voters than this (a single node) needs --force.
const MIN_VOTERS: usize = 2;
/// How long the removal guard waits for a member's status answer before
/// counting it down: a live node answers in milliseconds, and an operator
/// waits for every member in turn.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a membership change was refused (see `status` for the codes).
#[derive(Debug, thiserror::Error)]
pub(crate) enum MembershipRefused {
    #[error(
        "need a non-zero id, a HOST:PORT peer address and (if another) a HOST:PORT client address"
    )]
    BadLearner,
    #[error("node {id} is already a member at {addr}; remove it first")]
    MemberElsewhere { id: NodeId, addr: String },
    #[error("node {0} is not a member; add it first")]
    PromoteUnknown(NodeId),
    #[error("node {0} is not a member")]
    NotAMember(NodeId),
    #[error(
        "removing node {id} leaves {remaining} voter(s): a single node is no longer a replicated \
         cluster (use --force if you mean it)"
    )]
    TooFewVoters { id: NodeId, remaining: usize },
    #[error(
        "only nodes {up:?} answer: without a working majority of both the old voters \
         {voters:?} and the new ones {remaining:?} the change could never commit \
         (use --force if you mean it)"
    )]
    NoWorkingMajority {
        up: BTreeSet<NodeId>,
        voters: BTreeSet<NodeId>,
        remaining: BTreeSet<NodeId>,
    },
}

/// Every member of `membership`, as the Cluster and Lock services report them.
pub(crate) fn members_of(membership: &Membership<NodeId, BasicNode>) -> Vec<Member> {
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| {
            let addr =
                MemberAddr::parse(&node.addr).unwrap_or_else(|_| MemberAddr::single(&node.addr));
            Member {
                id: *id,
                addr: addr.peer,
                voter: voters.contains(id),
                client_addr: addr.client,
            }
        })
        .collect()
}

/// The new learner's addresses: `addr` is its peer address, and an empty
/// `client_addr` (a caller from before the split) means the same one.
fn learner_addr(req: &AddLearnerRequest) -> Result<MemberAddr, MembershipRefused> {
    if req.id == 0 {
        return Err(MembershipRefused::BadLearner);
    }
    let client = if req.client_addr.is_empty() {
        &req.addr
    } else {
        &req.client_addr
    };
    let bad = |_| MembershipRefused::BadLearner;
    let peer = MemberAddr::parse(&req.addr).map_err(bad)?;
    let client = MemberAddr::parse(client).map_err(bad)?;
    // Each field is one address: the encoding is this node's business.
    if !peer.is_single() || !client.is_single() {
        return Err(MembershipRefused::BadLearner);
    }
    Ok(MemberAddr {
        peer: peer.peer,
        client: client.client,
    })
}

/// The change that removes member `id`.
fn removal(id: NodeId, voters: &BTreeSet<NodeId>) -> ChangeMembers<NodeId, BasicNode> {
    if voters.contains(&id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    }
}

pub struct ClusterService {
    raft: Raft,
    id: NodeId,
    /// How the removal guard reaches the members: TLS with this node's
    /// certificate, or plain text.
    tls: Option<NodeTls>,
}

impl ClusterService {
    pub fn new(raft: Raft, id: NodeId, tls: Option<NodeTls>) -> Self {
        ClusterService { raft, id, tls }
    }

    /// `e` as a status, a redirect naming the leader's peer address: the
    /// caller reached us on the peer port and goes on there.
    fn refused(&self, e: NotServed) -> Status {
        match e {
            NotServed::NotLeader(Some((leader, client))) => {
                let peer = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map_or(client, |n| MemberAddr::peer_of(&n.addr));
                NotServed::NotLeader(Some((leader, peer))).into()
            }
            other => other.into(),
        }
    }

    fn members(&self) -> MembershipResponse {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        MembershipResponse {
            members: members_of(metrics.membership_config.membership()),
        }
    }

    /// The guard against removing voter `id` (without --force): at least
    /// [`MIN_VOTERS`] must remain, and both the current voters and those
    /// that remain need a working majority among the members answering now.
    async fn check_voter_removal(
        &self,
        id: NodeId,
        voters: BTreeSet<NodeId>,
        nodes: &BTreeMap<NodeId, BasicNode>,
    ) -> Result<(), MembershipRefused> {
        let remaining: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
        let up = self.reachable(nodes).await;
        let majority =
            |set: &BTreeSet<NodeId>| set.iter().filter(|v| up.contains(v)).count() * 2 > set.len();
        if remaining.len() < MIN_VOTERS {
            return Err(MembershipRefused::TooFewVoters {
                id,
                remaining: remaining.len(),
            });
        }
        // Joint consensus needs a working majority of both configurations.
        if !majority(&voters) || !majority(&remaining) {
            return Err(MembershipRefused::NoWorkingMajority {
                up,
                voters,
                remaining,
            });
        }
        Ok(())
    }

    /// Which of `nodes` answer a status call right now (this node counts).
    async fn reachable(&self, nodes: &BTreeMap<NodeId, BasicNode>) -> BTreeSet<NodeId> {
        let mut up = BTreeSet::new();
        for (id, node) in nodes {
            if *id == self.id {
                up.insert(*id);
                continue;
            }
            // A status call on the client port: it proves the node
            // answers, which a TCP connect to a frozen one would not.
            let client_addr = MemberAddr::client_of(&node.addr);
            let host = node_tls::host_of(&client_addr);
            let probe = async {
                let endpoint =
                    node_tls::endpoint(&client_addr, &host, self.tls.as_ref(), PROBE_TIMEOUT)
                        .ok()?;
                let mut client = LockClient::new(endpoint.connect().await.ok()?);
                client.status(StatusRequest {}).await.ok()
            };
            if let Ok(Some(_)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                up.insert(*id);
            }
        }
        up
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let req = request.into_inner();
        let addr = learner_addr(&req)?;
        let known = self.members();
        if let Some(m) = known.members.iter().find(|m| m.id == req.id) {
            if m.addr != addr.peer || m.client_addr != addr.client {
                let was = MemberAddr {
                    peer: m.addr.clone(),
                    client: m.client_addr.clone(),
                };
                return Err(MembershipRefused::MemberElsewhere {
                    id: m.id,
                    addr: was.to_string(),
                }
                .into());
            }
            return Ok(Response::new(known));
        }
        tracing::info!(id = req.id, %addr, "membership change: adding a learner");
        let node = BasicNode {
            addr: addr.to_string(),
        };
        self.raft
            .add_learner(req.id, node, false)
            .await
            .map_err(|e| self.refused(not_served(e)))?;
        Ok(Response::new(self.members()))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let id = request.into_inner().id;
        ensure_linearizable(&self.raft)
            .await
            .map_err(|e| self.refused(e))?;
        let known = self.members();
        match known.members.iter().find(|m| m.id == id) {
            None => return Err(MembershipRefused::PromoteUnknown(id).into()),
            Some(m) if m.voter => return Ok(Response::new(known)),
            Some(_) => {}
        }
        tracing::info!(id, "membership change: promoting a learner to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.refused(not_served(e)))?;
        Ok(Response::new(self.members()))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let req = request.into_inner();
        ensure_linearizable(&self.raft)
            .await
            .map_err(|e| self.refused(e))?;
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let nodes: BTreeMap<NodeId, BasicNode> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        if !nodes.contains_key(&req.id) {
            return Err(MembershipRefused::NotAMember(req.id).into());
        }
        if !req.force && voters.contains(&req.id) {
            self.check_voter_removal(req.id, voters.clone(), &nodes)
                .await?;
        }
        tracing::info!(
            id = req.id,
            leader = self.id,
            "membership change: removing a member"
        );
        // retain = false: a removed voter does not stay on as a learner.
        self.raft
            .change_membership(removal(req.id, &voters), false)
            .await
            .map_err(|e| self.refused(not_served(e)))?;
        Ok(Response::new(self.members()))
    }
}
