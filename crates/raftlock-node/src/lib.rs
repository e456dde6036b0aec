//! A raftlock server node: the lock table of `raftlock-core` replicated by
//! openraft, stored in sled, served over gRPC.
//!
//! [`Node::start`] opens a node's data and starts serving; the rest of the
//! crate is its inside, one layer per module.
//!
//! # Layout
//!
//! Client-facing:
//! - `api`: the `raftlock.v1.Lock` service: validation, proposals, long-poll grants.
//! - `admin`: the `raftlock.v1.Cluster` service: membership changes, with a
//!   guard against losing the working majority.
//! - [`auth`]: principals, roles and hashed tokens from the auth file, and
//!   the gRPC layer that authenticates each request and records its caller.
//! - `caller`: who is calling (the principal authentication found).
//! - `status`: every refusal turned into a gRPC `Status`, in one place.
//! - `metrics`: the Prometheus exporter, and what it exports.
//! - `watch`: the `Watch` stream: change events with a bounded history to
//!   resume from, served by any node.
//!
//! Between the services and Raft:
//! - `batcher`: groups concurrent commands into one log entry.
//! - `raft_calls`: appends and leadership confirmations, riding out
//!   elections; `NotServed` says where the leader is.
//! - `read_barrier`: one quorum round shared by concurrent reads and keepalives.
//! - `leader_duties`: session deadlines, expiries and lock-delay ticks, run
//!   while this node leads; `session_deadlines`, the deadlines it sleeps
//!   on, earliest first; `limits_duty`, the leader's quota flags proposed
//!   when the table's differ.
//! - `applied_table`: the applied lock table and its event stream, shared by
//!   the state machine and the services.
//!
//! Raft itself:
//! - [`member_addr`]: a member's peer and client addresses, in openraft's
//!   one address string.
//! - `network`: Raft RPCs between nodes, client and server side.
//! - `peer`: one channel per peer, and the log of peers going down and up.
//! - `node_tls`: the identity a peer's certificate proves, and endpoints to
//!   other nodes over TLS with this node's certificate.
//! - `raft_admission`: only member nodes' certificates may send Raft RPCs.
//! - `election`: when to campaign, after a pre-vote round.
//! - `store`: the Raft log, vote and snapshots in sled, and the early
//!   acknowledgement of the leader's own entries.
//! - `types`: openraft's type configuration.
//! - `fail_stop`: what a poisoned lock does (stops the node), for every lock.
//!
//! Around it all:
//! - [`config`]: what a node is started with.
//! - [`server_limits`]: bounds on connections, streams, queues and replies.
//! - [`node`]: starts the pieces, bootstraps a new cluster, shuts down.

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod applied_table;
pub mod auth;
pub(crate) mod batcher;
pub(crate) mod caller;
pub mod codec;
pub mod config;
pub(crate) mod election;
pub(crate) mod fail_stop;
pub(crate) mod leader_duties;
pub(crate) mod limits_duty;
pub mod member_addr;
pub(crate) mod metrics;
pub(crate) mod network;
pub mod node;
pub(crate) mod node_tls;
pub(crate) mod peer;
pub(crate) mod raft_admission;
pub(crate) mod raft_calls;
pub(crate) mod read_barrier;
pub mod server_limits;
pub(crate) mod session_deadlines;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod types;
pub(crate) mod watch;

pub use api::MAX_CLIENT_MESSAGE;
pub use config::{NodeConfig, NodeTls, RaftTimings, Security};
pub use member_addr::MemberAddr;
pub use network::MAX_RAFT_MESSAGE;
pub use node::Node;
pub use server_limits::ServerLimits;
pub use types::TypeConfig;

/// The servers' default log filter (`RUST_LOG` replaces it). openraft logs
/// at error level every failed call to a peer that is down, about 40 a
/// second; `peer` logs the peer going down and coming back instead.
pub const DEFAULT_LOG_FILTER: &str = "info,openraft=error,openraft::replication=off";

/// The storage layer, opened without a node, for the storage tests in
/// `tests/` (the `test-hooks` feature). Not an API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks {
    pub use crate::applied_table::AppliedTable;
    pub use crate::store::{open as open_store, LogStore, StateMachineStore};
    pub use crate::types::StorageError;
}
