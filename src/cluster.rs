//! `raftlock cluster add|remove`: membership changes, and the `--join`
//! flow a new server runs to add itself.

use std::time::Duration;

use clap::Subcommand;
use raftlock_client::{parse_endpoint, Client, Error, Member};

use crate::exit;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Add a node: as a learner first, then, once it has caught up (from a
    /// snapshot if the log it needs is purged), as a voter.
    Add {
        /// The new node's id.
        id: u64,
        /// The address the other nodes reach it at (HOST:PORT).
        addr: String,
        /// Give up if it has not caught up within this many seconds.
        #[arg(long, default_value = "300", value_parser = crate::parse_duration_secs)]
        timeout: Duration,
    },
    /// Remove a node (a voter through joint consensus, or a learner).
    /// Removing the leader works: the others elect a new one.
    Remove {
        id: u64,
        /// Also when it would leave a single voter or no working majority.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(client: Client, command: ClusterCommand) -> i32 {
    if let ClusterCommand::Add { addr, .. } = &command {
        if let Err(message) = parse_endpoint(addr) {
            eprintln!("raftlock cluster add: {message}");
            return exit::USAGE;
        }
    }
    let result = match command {
        ClusterCommand::Add { id, addr, timeout } => add(&client, id, &addr, timeout, true).await,
        ClusterCommand::Remove { id, force } => client.remove_member(id, force).await,
    };
    match result {
        Ok(members) => {
            print_members(&members);
            exit::OK
        }
        Err(e) => exit::unavailable(&e),
    }
}

fn print_members(members: &[Member]) {
    println!("members:");
    for m in members {
        let kind = if m.voter { "voter" } else { "learner" };
        println!("  {:<4} {:<24} {kind}", m.id, m.addr);
    }
}

/// Learner, catch up, voter. Shows progress on stderr when `progress`.
pub async fn add(
    client: &Client,
    id: u64,
    addr: &str,
    timeout: Duration,
    progress: bool,
) -> Result<Vec<Member>, Error> {
    let members = client.add_learner(id, addr).await?;
    if members.iter().any(|m| m.id == id && m.voter) {
        return Ok(members);
    }
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let leader = client.leader_status(Duration::from_secs(1)).await;
        if let Ok(leader) = &leader {
            let matched = leader
                .replication
                .iter()
                .find(|r| r.id == id)
                .map_or(0, |r| r.matched_index);
            if progress {
                eprint!(
                    "\rnode {id} catching up: {matched}/{} entries",
                    leader.last_log_index
                );
            }
            if matched >= leader.last_applied && matched > 0 {
                if progress {
                    eprintln!();
                }
                break;
            }
        }
        if tokio::time::Instant::now() > until {
            return Err(Error::Unavailable(format!(
                "node {id} did not catch up within {timeout:?}; it stays a learner"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.promote(id).await
}

/// `raftlock server --join`: ask the cluster to add this node until it has.
pub async fn join(seeds: Vec<String>, id: u64, advertise: String) {
    let client = match Client::new(seeds) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%e, "--join: bad addresses");
            return;
        }
    };
    loop {
        match add(&client, id, &advertise, Duration::from_secs(600), false).await {
            Ok(members) => {
                tracing::info!(?members, "joined the cluster as a voter");
                return;
            }
            Err(e) => {
                tracing::warn!(%e, "not added to the cluster yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
