//! A raftlock server node.
//!
//! Layers, one per module: [`store`] persists the Raft log and the lock
//! table's snapshots in sled; [`network`] carries Raft RPCs between nodes
//! over tonic, one channel per [`peer`]; [`election`] decides when to
//! campaign (a pre-vote round first); [`batcher`] groups client commands into log entries;
//! [`api`] is the client-facing gRPC service; [`leader`] runs
//! the leader-only duties (session expiry, lock-delay ticks); [`node`] wires
//! them together into something you can start and stop.

pub mod admin;
pub mod api;
pub mod batcher;
pub mod config;
pub mod election;
pub mod leader;
pub mod leadership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peer;
pub mod propose;
pub mod shared;
pub mod store;
pub mod types;

pub use config::{NodeConfig, RaftTimings};
pub use node::Node;
pub use types::TypeConfig;

/// The servers' default log filter (`RUST_LOG` replaces it). openraft logs
/// at error level every failed call to a peer that is down, about 40 a
/// second; [`peer`] logs the peer going down and coming back instead.
pub const DEFAULT_LOG_FILTER: &str = "info,openraft=error,openraft::replication=off";
