//! Raft RPCs between nodes over tonic: the client side openraft calls
//! ([`Network`]) and the server side that hands requests to the local
//! Raft ([`RaftService`]), plus the pre-vote of [`crate::election`].
//! Payloads are bincode-encoded openraft types.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use raftlock_proto::raft::raft_client::RaftClient;
use raftlock_proto::raft::raft_server::Raft as RaftRpc;
use raftlock_proto::raft::RaftMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::election::{self, LeaderContact, PreVoteRequest, PreVoteResponse};
use crate::fail_stop;
use crate::peer::{Peer, Peers};
use crate::raft_admission::RaftAdmission;
use crate::store::CommitGate;
use crate::types::{NodeId, Raft, TypeConfig};

/// Largest Raft message accepted: append batches and snapshot chunks.
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;
/// The transport deadline of one pre-vote call. The election round gives up
/// sooner (after its minimum election timeout); this only bounds a call
/// that outlives the round, so it cannot pile up behind a dead peer.
const PRE_VOTE_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes one [`Connection`] per peer; openraft calls it when it needs one.
#[derive(Clone)]
pub struct Network {
    retry_every: Duration,
    commit_gate: CommitGate,
    peers: Peers,
}

impl Network {
    /// `retry_every`: how long replication to an unreachable peer waits
    /// before trying again. Keep it near the heartbeat interval: openraft's
    /// default (500 ms) left a restarted follower unheard for longer than
    /// its election timeout, so it rejoined by deposing the leader.
    /// `commit_gate`: from [`crate::store::open`]; holds back commit
    /// indexes this leader has not synced yet. `peers`: the channels,
    /// shared with the elections' pre-votes.
    pub fn new(retry_every: Duration, commit_gate: CommitGate, peers: Peers) -> Self {
        Network {
            retry_every,
            commit_gate,
            peers,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            peer: self.peers.get(target, &node.addr),
            retry_every: self.retry_every,
            commit_gate: self.commit_gate.clone(),
        }
    }
}

pub struct Connection {
    target: NodeId,
    peer: Arc<Peer>,
    retry_every: Duration,
    commit_gate: CommitGate,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Connection {
    /// Sends one bincode-encoded request through `method` and decodes the
    /// peer's `Result`.
    async fn call<Req, Resp, E, F, Fut>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        method: F,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, Request<RaftMessage>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<RaftMessage>, Status>>,
    {
        let data = crate::codec::encode(req).map_err(|e| NetworkError::new(&e))?;
        let reply = send(&self.peer, data, option.hard_ttl(), method)
            .await
            .map_err(|status| {
                // A dead peer shows up as a transport error: back off from it.
                if status.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&status))
                } else {
                    RPCError::Network(NetworkError::new(&status))
                }
            })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            crate::codec::decode(&reply.data).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// One call to `peer`, recorded in its health (see [`Peer::call`]).
async fn send<F, Fut>(
    peer: &Arc<Peer>,
    data: Vec<u8>,
    timeout: Duration,
    method: F,
) -> Result<RaftMessage, Status>
where
    F: FnOnce(RaftClient<Channel>, Request<RaftMessage>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<RaftMessage>, Status>>,
{
    let call = peer.call();
    let client = match peer.client().await {
        Ok(client) => client,
        Err(why) => {
            call.failed(&why);
            return Err(Status::unavailable(why));
        }
    };
    let mut request = Request::new(RaftMessage { data: data.into() });
    request.set_timeout(timeout);
    match method(client, request).await {
        Ok(reply) => {
            call.succeeded();
            Ok(reply.into_inner())
        }
        Err(status) => {
            call.failed(&describe(&status));
            Err(status)
        }
    }
}

/// The innermost cause of a transport error ("Connection refused (os
/// error 111)"), else the status message.
fn describe(status: &Status) -> String {
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(e) = cause {
        innermost = Some(e.to_string());
        cause = e.source();
    }
    innermost.unwrap_or_else(|| status.message().to_string())
}

/// Asks `peer` for a pre-vote (see [`crate::election`]).
pub async fn pre_vote(peer: &Arc<Peer>, req: &PreVoteRequest) -> Result<PreVoteResponse, Status> {
    let data = crate::codec::encode(req).map_err(|e| Status::internal(e.to_string()))?;
    let reply = send(peer, data, PRE_VOTE_TIMEOUT, |mut c, r| async move {
        c.pre_vote(r).await
    })
    .await?;
    decode(&reply)
}

impl RaftNetwork<TypeConfig> for Connection {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry_every))
    }

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        rpc.leader_commit = self.commit_gate.visible(rpc.leader_commit);
        self.call(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(&rpc, &option, |mut c, r| async move {
            c.install_snapshot(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }
}

/// Serves other nodes' Raft RPCs by handing them to the local Raft, and
/// notes in `contact` each time a leader is heard from.
pub struct RaftService {
    raft: Raft,
    contact: LeaderContact,
    /// openraft's leader lease (election_timeout_max), for pre-votes.
    lease: Duration,
    /// Who may call, on a secure node; `None`: anyone (`--insecure`).
    admission: Option<RaftAdmission>,
    /// No snapshot chunk may reach past this offset (`--max-snapshot-bytes`).
    max_snapshot_bytes: u64,
}

impl RaftService {
    pub fn new(
        raft: Raft,
        contact: LeaderContact,
        lease: Duration,
        admission: Option<RaftAdmission>,
    ) -> Self {
        // Every node builds exactly one RaftService, right after its Raft:
        // from here on a Raft that stops on its own (a storage error, a
        // panic) stops the process (see `fail_stop`).
        fail_stop::stop_when_raft_fails(&raft);
        RaftService {
            raft,
            contact,
            lease,
            admission,
            max_snapshot_bytes: crate::codec::DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }

    /// Refuses snapshot chunks that reach past `bytes` (default
    /// [`crate::codec::DEFAULT_MAX_SNAPSHOT_BYTES`]; `--max-snapshot-bytes`).
    pub fn with_max_snapshot_bytes(mut self, bytes: u64) -> Self {
        self.max_snapshot_bytes = bytes;
        self
    }

    /// The request's payload, once its sender is admitted: a stranger's
    /// bytes are never decoded.
    fn admit<T: DeserializeOwned>(&self, request: &Request<RaftMessage>) -> Result<T, Status> {
        if let Some(admission) = &self.admission {
            admission.check(request)?;
        }
        decode(request.get_ref())
    }
}

/// openraft writes a chunk at its offset into the snapshot file: a chunk
/// reaching past the largest snapshot this node accepts is refused before
/// openraft sees it, so a peer cannot make the node fill its disk.
fn check_snapshot_chunk(
    req: &InstallSnapshotRequest<TypeConfig>,
    max_snapshot_bytes: u64,
) -> Result<(), Status> {
    let end = req.offset.checked_add(req.data.len() as u64);
    match end {
        Some(end) if end <= max_snapshot_bytes => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "snapshot chunk at offset {} ({} bytes) reaches past --max-snapshot-bytes {}",
            req.offset,
            req.data.len(),
            max_snapshot_bytes
        ))),
    }
}

fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    crate::codec::decode(&message.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<tonic::Response<RaftMessage>, Status> {
    let data = crate::codec::encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(RaftMessage { data: data.into() }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.admit(&request)?;
        let result = self.raft.append_entries(req).await;
        // Refused for a stale term, it came from a leader that is no more.
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.contact.touch();
        }
        encode(&result)
    }

    async fn vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: VoteRequest<NodeId> = self.admit(&request)?;
        let result = self.raft.vote(req).await;
        // As in Raft, granting a vote restarts the election timeout.
        if matches!(&result, Ok(r) if r.vote_granted) {
            self.contact.touch();
        }
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = self.admit(&request)?;
        check_snapshot_chunk(&req, self.max_snapshot_bytes).inspect_err(|status| {
            tracing::warn!(vote = %req.vote, "{}", status.message());
        })?;
        let sender = req.vote;
        let result = self.raft.install_snapshot(req).await;
        if matches!(&result, Ok(r) if r.vote <= sender) {
            self.contact.touch();
        }
        encode(&result)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: PreVoteRequest = self.admit(&request)?;
        encode(&election::answer(
            &self.raft,
            &self.contact,
            self.lease,
            &req,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, SnapshotMeta, Vote};

    fn chunk(offset: u64, len: usize) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: Vote::new_committed(1, 1),
            meta: SnapshotMeta {
                last_log_id: Some(openraft::LogId::new(CommittedLeaderId::new(1, 1), 5)),
                last_membership: Default::default(),
                snapshot_id: "s".into(),
            },
            offset,
            data: vec![0; len],
            done: false,
        }
    }

    #[test]
    fn snapshot_chunks_past_the_limit_are_refused() {
        assert!(check_snapshot_chunk(&chunk(0, 100), 100).is_ok());
        assert!(check_snapshot_chunk(&chunk(60, 40), 100).is_ok());
        let past = check_snapshot_chunk(&chunk(61, 40), 100).unwrap_err();
        assert_eq!(past.code(), tonic::Code::InvalidArgument);
        assert!(check_snapshot_chunk(&chunk(1 << 40, 0), 100).is_err());
        assert!(check_snapshot_chunk(&chunk(u64::MAX, 1), u64::MAX).is_err());
    }
}
