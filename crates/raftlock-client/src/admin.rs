//! Membership changes and cluster-wide status, for operators' tools.

use std::time::Duration;

use raftlock_proto::v1::cluster_client::ClusterClient;
use raftlock_proto::v1::Role;
use raftlock_proto::v1::{
    AddLearnerRequest, Member, PromoteRequest, RemoveMemberRequest, StatusResponse,
};

use crate::{Client, Error};

impl Client {
    /// Adds node `id` at `addr` as a learner; the leader starts replicating to it.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<Vec<Member>, Error> {
        let req = AddLearnerRequest {
            id,
            addr: addr.to_string(),
        };
        let reply = self
            .unary(req, |c, r| async move {
                ClusterClient::new(c).add_learner(r).await
            })
            .await?;
        Ok(reply.members)
    }

    /// Makes learner `id` a voter.
    pub async fn promote(&self, id: u64) -> Result<Vec<Member>, Error> {
        let reply = self
            .unary(PromoteRequest { id }, |c, r| async move {
                ClusterClient::new(c).promote(r).await
            })
            .await?;
        Ok(reply.members)
    }

    /// Removes member `id`. Without `force`, refused if it could leave the
    /// cluster without a working majority, or with a single voter.
    pub async fn remove_member(&self, id: u64, force: bool) -> Result<Vec<Member>, Error> {
        let reply = self
            .unary(RemoveMemberRequest { id, force }, |c, r| async move {
                ClusterClient::new(c).remove_member(r).await
            })
            .await?;
        Ok(reply.members)
    }

    /// The status of whichever endpoint says it is the leader.
    pub async fn leader_status(&self, timeout: Duration) -> Result<StatusResponse, Error> {
        let mut last = Error::Unavailable("no endpoint answered".into());
        for endpoint in self.endpoints().to_vec() {
            match self.node_status(&endpoint, timeout).await {
                Ok(s) if s.role() == Role::Leader => return Ok(s),
                Ok(s) if s.has_leader && !s.leader_addr.is_empty() => {
                    if let Ok(l) = self.node_status(&s.leader_addr, timeout).await {
                        if l.role() == Role::Leader {
                            return Ok(l);
                        }
                    }
                    last = Error::Unavailable(format!("leader {} did not answer", s.leader_addr));
                }
                Ok(_) => last = Error::Unavailable("no leader known (election?)".into()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
