//! Generated protobuf and gRPC code for raftlock: the client API
//! (`raftlock.v1`) and the node-to-node Raft transport (`raftlock.raft.v1`).

pub mod v1 {
    tonic::include_proto!("raftlock.v1");
}

pub mod raft {
    tonic::include_proto!("raftlock.raft.v1");
}

/// Metadata keys a follower sets when it redirects a client to the leader.
pub const LEADER_ID_HEADER: &str = "raftlock-leader-id";
pub const LEADER_ADDR_HEADER: &str = "raftlock-leader-addr";
/// Metadata key a client sets when it cannot reach the leader a follower
/// named: that follower then holds the call until another leader is
/// elected and redirects there, instead of naming the dead one again.
pub const UNREACHABLE_LEADER_HEADER: &str = "raftlock-unreachable-leader";
/// Metadata key naming the kind of refusal, for clients that map errors.
pub const ERROR_KIND_HEADER: &str = "raftlock-error";
