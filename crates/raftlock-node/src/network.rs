//! Raft RPCs between nodes over tonic: the client side openraft calls
//! ([`Network`]) and the server side that hands requests to the local
//! Raft ([`RaftService`]). Payloads are bincode-encoded openraft types.

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
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::store::CommitGate;
use crate::types::{NodeId, Raft, TypeConfig};

/// Largest Raft message accepted: append batches and snapshot chunks.
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;

/// Makes one [`Connection`] per peer; openraft calls it when it needs one.
#[derive(Clone)]
pub struct Network {
    retry_every: Duration,
    commit_gate: CommitGate,
}

impl Network {
    /// `retry_every`: how long replication to an unreachable peer waits
    /// before trying again. Keep it near the heartbeat interval: openraft's
    /// default (500 ms) left a restarted follower unheard for longer than
    /// its election timeout, so it rejoined by deposing the leader.
    /// `commit_gate`: from [`crate::store::open`]; holds back commit
    /// indexes this leader has not synced yet.
    pub fn new(retry_every: Duration, commit_gate: CommitGate) -> Self {
        Network {
            retry_every,
            commit_gate,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            client: None,
            retry_every: self.retry_every,
            commit_gate: self.commit_gate.clone(),
        }
    }
}

pub struct Connection {
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
    retry_every: Duration,
    commit_gate: CommitGate,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Connection {
    fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| Unreachable::new(&e))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        let client = RaftClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        self.client = Some(client.clone());
        Ok(client)
    }

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
        let data = bincode::serialize(req).map_err(|e| NetworkError::new(&e))?;
        let client = self.client()?;
        let mut request = Request::new(RaftMessage { data: data.into() });
        request.set_timeout(option.hard_ttl());
        let reply = match method(client, request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                // A dead peer shows up as a transport error: back off from it.
                return Err(if status.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&status))
                } else {
                    RPCError::Network(NetworkError::new(&status))
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&reply.data).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
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

/// Serves other nodes' Raft RPCs by handing them to the local Raft.
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> Self {
        RaftService { raft }
    }
}

fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    bincode::deserialize(&message.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<tonic::Response<RaftMessage>, Status> {
    let data = bincode::serialize(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(RaftMessage { data: data.into() }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.append_entries(req).await)
    }

    async fn vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: VoteRequest<NodeId> = decode(request.get_ref())?;
        encode(&self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.install_snapshot(req).await)
    }
}
