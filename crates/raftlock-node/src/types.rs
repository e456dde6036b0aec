//! The openraft type configuration: what a log entry carries and what
//! applying one returns (one response per command in the entry).

use raftlock_core::{Proposal, Response};

openraft::declare_raft_types!(
    /// raftlock's Raft: entries carry lock-table [`Proposal`]s.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Response>,
        NodeId = u64,
        Node = openraft::BasicNode,
        // A file, not memory: see `store::snapshot_files`.
        SnapshotData = tokio::fs::File,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
