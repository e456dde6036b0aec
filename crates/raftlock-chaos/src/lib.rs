//! raftlock's chaos suite: a lock-set workload of writers and readers
//! against a fenced register, nemeses that crash, pause and partition nodes
//! (locally or in docker-compose), and a checker that fails loudly: fenced
//! safety, no lost updates, readers see no write (direct rules, no search),
//! writers linearizable against a mutex (a search with a budget), tokens
//! that only grow, availability.

pub mod checker;
pub mod docker;
pub mod history;
pub mod linearizability;
pub mod nodes;
pub mod readers;
pub mod register;
pub mod runner;
pub mod workload;

pub use nodes::{LocalCluster, Nodes};
pub use runner::{run, Fault, Report, RunConfig};
