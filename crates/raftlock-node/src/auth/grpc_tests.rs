//! The layer on a real tonic server over loopback, called by real tonic
//! clients: it stacks on `Server::builder()`, its refusals reach a client
//! as the gRPC statuses they are, and an admitted call's service sees the
//! principal as its `Caller`.

use std::net::SocketAddr;

use raftlock_proto::raft::raft_client::RaftClient;
use raftlock_proto::raft::raft_server::{Raft, RaftServer};
use raftlock_proto::raft::RaftMessage;
use raftlock_proto::v1::cluster_client::ClusterClient;
use raftlock_proto::v1::cluster_server::{Cluster, ClusterServer};
use raftlock_proto::v1::{
    AddLearnerRequest, MembershipResponse, PromoteRequest, RemoveMemberRequest,
};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

use super::file::{AuthFile, PrincipalEntry};
use super::{token, AuthLayer, AuthStore};
use crate::caller::Caller;

/// Answers every call with a status naming its caller, so a test sees
/// what the service saw.
struct NamesCaller;

fn caller_of<T>(request: &Request<T>) -> Status {
    Status::unimplemented(format!("caller {:?}", Caller::of(request).principal))
}

#[tonic::async_trait]
impl Cluster for NamesCaller {
    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Err(caller_of(&request))
    }
    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Err(caller_of(&request))
    }
    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Err(caller_of(&request))
    }
}

#[tonic::async_trait]
impl Raft for NamesCaller {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

fn store(dir: &std::path::Path) -> AuthStore {
    let principal = |name: &str, role: &str| PrincipalEntry {
        name: name.into(),
        role: role.into(),
        token_sha256: token::hash_hex(&format!("rlt_{name}")),
        prefixes: None,
        client_cert: false,
    };
    let path = dir.join("auth.toml");
    AuthFile {
        principals: vec![principal("ops", "admin"), principal("viewer", "read")],
    }
    .save(&path)
    .unwrap();
    AuthStore::load(path).unwrap()
}

async fn serve(layer: AuthLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(ClusterServer::new(NamesCaller))
            .add_service(RaftServer::new(NamesCaller))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn add_learner(channel: &Channel, token: Option<&str>) -> Status {
    let mut request = Request::new(AddLearnerRequest::default());
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    ClusterClient::new(channel.clone())
        .add_learner(request)
        .await
        .expect_err("the dummy service always refuses")
}

#[tokio::test]
async fn a_tonic_client_sees_the_layers_answers() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(AuthLayer::for_clients(store(dir.path()))).await;
    let channel = channel(addr).await;

    // Membership calls need a certificate: none here, so neither no
    // token nor an admin's token gets through, and the answer says why.
    for token in [None, Some("rlt_viewer"), Some("rlt_ops")] {
        let refused = add_learner(&channel, token).await;
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(
            refused
                .message()
                .starts_with("AddLearner needs a certificate")
                && refused.message().contains("a token alone is not enough"),
            "{refused:?}"
        );
    }

    let raft = RaftClient::new(channel)
        .append_entries(RaftMessage::default())
        .await
        .expect_err("Raft RPCs are not for clients");
    assert_eq!(raft.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_certified_caller_reaches_the_service_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // As if every connection presented node 7's certificate.
    let layer =
        AuthLayer::for_peers(store(dir.path())).with_node_certs(|_: &http::Extensions| Some(7));
    let channel = channel(serve(layer).await).await;
    let admitted = add_learner(&channel, None).await;
    assert_eq!(admitted.code(), Code::Unimplemented);
    assert_eq!(admitted.message(), "caller \"node-7\"");
}

#[tokio::test]
async fn a_peer_layer_serves_raft_rpcs_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(AuthLayer::for_peers(store(dir.path()))).await;
    let channel = channel(addr).await;
    let message = RaftMessage {
        data: b"entries".to_vec().into(),
    };
    let echoed = RaftClient::new(channel.clone())
        .append_entries(message.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(echoed, message);
    assert_eq!(
        add_learner(&channel, None).await.code(),
        Code::Unauthenticated
    );
}
