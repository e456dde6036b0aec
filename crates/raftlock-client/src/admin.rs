//! Membership changes and cluster-wide status, for operators' tools.
//!
//! The Cluster service is served on the nodes' peer ports (when they have
//! two): the membership calls here go to a [`Client`] made with peer
//! addresses, [`Client::membership_client`] finds them through the client
//! ports.

use std::time::Duration;

use raftlock_proto::v1::cluster_client::ClusterClient;
use raftlock_proto::v1::Role;
use raftlock_proto::v1::{
    AddLearnerRequest, Member, PromoteRequest, RemoveMemberRequest, StatusResponse,
};

use crate::{Client, Credentials, Error, Transport};

impl Client {
    /// Adds node `id` as a learner, the other nodes reaching it at
    /// `peer_addr` and clients at `client_addr` (empty: `peer_addr` too);
    /// the leader starts replicating to it.
    pub async fn add_learner(
        &self,
        id: u64,
        peer_addr: &str,
        client_addr: &str,
    ) -> Result<Vec<Member>, Error> {
        let req = AddLearnerRequest {
            id,
            addr: peer_addr.to_string(),
            client_addr: client_addr.to_string(),
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

    /// A client for the membership calls: the members' peer addresses,
    /// the leader's first, as the first of this client's endpoints that
    /// answers Status reports them.
    ///
    /// Over TLS the peer ports require a client certificate (an admin's, or
    /// a node's): without one this fails at once with
    /// [`Error::Credentials`] saying so, rather than with a handshake
    /// error from each peer port.
    pub async fn membership_client(&self, timeout: Duration) -> Result<Client, Error> {
        check_can_reach_peer_ports(&self.options().transport)?;
        let mut last = Error::Unavailable("no endpoint answered".into());
        for endpoint in self.endpoints().to_vec() {
            match self.node_status(&endpoint, timeout).await {
                Ok(s) if !s.members.is_empty() => return self.sibling(peer_addrs(&s)),
                Ok(s) => {
                    last = Error::Unavailable(format!("node {} is in no cluster yet", s.id));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
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

/// What membership changes need, told before anything is sent: over TLS,
/// a client certificate (the peer port refuses a handshake without one,
/// and a token alone is not accepted for the Cluster service).
fn check_can_reach_peer_ports(transport: &Transport) -> Result<(), Error> {
    match transport {
        Transport::Tls(Credentials { identity: None, .. }) => Err(Error::Credentials(
            "membership changes need an admin's client certificate, not only a token: the \
             nodes' peer ports accept no connection without a certificate from the cluster CA. \
             Give --cert and --key (RAFTLOCK_CERT, RAFTLOCK_KEY) or put client.pem and \
             client-key.pem in the profile directory; make one with `raftlock certs client NAME` \
             for a principal NAME with role admin in the auth file"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Every member's peer address in `status`, the leader's first.
fn peer_addrs(status: &StatusResponse) -> Vec<String> {
    let mut members: Vec<&Member> = status.members.iter().collect();
    members.sort_by_key(|m| !(status.has_leader && m.id == status.leader_id));
    members.into_iter().map(|m| m.addr.clone()).collect()
}

/// Where clients reach `member` (a server from before the split sends no
/// client address: its one address serves both).
pub fn client_addr(member: &Member) -> &str {
    if member.client_addr.is_empty() {
        &member.addr
    } else {
        &member.client_addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, addr: &str, client_addr: &str) -> Member {
        Member {
            id,
            addr: addr.into(),
            voter: true,
            client_addr: client_addr.into(),
        }
    }

    #[test]
    fn membership_over_tls_needs_a_client_certificate() {
        let creds = |identity| {
            Transport::Tls(Credentials {
                ca: "ca.pem".into(),
                token: Some(crate::Token::new("rlt_x")),
                identity,
            })
        };
        let refused = check_can_reach_peer_ports(&creds(None)).unwrap_err();
        assert!(matches!(&refused, Error::Credentials(m) if m.contains("client certificate")));
        assert!(!refused.to_string().contains("rlt_x"));
        let with_cert = creds(Some(("c.pem".into(), "k.pem".into())));
        assert!(check_can_reach_peer_ports(&with_cert).is_ok());
        assert!(check_can_reach_peer_ports(&Transport::Plain).is_ok());
    }

    #[test]
    fn the_leaders_peer_address_comes_first() {
        let status = StatusResponse {
            has_leader: true,
            leader_id: 2,
            members: vec![member(1, "a:7999", "a:7899"), member(2, "b:7999", "b:7899")],
            ..StatusResponse::default()
        };
        assert_eq!(peer_addrs(&status), ["b:7999", "a:7999"]);
    }

    #[test]
    fn an_old_member_serves_clients_at_its_one_address() {
        assert_eq!(client_addr(&member(1, "a:7899", "")), "a:7899");
        assert_eq!(client_addr(&member(1, "a:7999", "a:7899")), "a:7899");
    }
}
