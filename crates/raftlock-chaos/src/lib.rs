//! raftlock's chaos suite: a lock-set workload against a fenced register,
//! nemeses that crash, pause and partition nodes (locally or in
//! docker-compose), and a checker that fails loudly: fenced safety, no
//! lost updates, per-lock linearizability against a mutex, availability.

pub mod checker;
pub mod docker;
pub mod history;
pub mod linearizability;
pub mod nodes;
pub mod register;
pub mod runner;
pub mod workload;

pub use nodes::{LocalCluster, Nodes};
pub use runner::{run, Fault, Report, RunConfig};
