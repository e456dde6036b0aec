//! `raftlock cluster add|remove`: membership changes, and the `--join`
//! flow a new server runs to add itself.
//!
//! The Cluster service is on the nodes' peer ports: `cluster` is given
//! client endpoints, asks one for the members' peer addresses and makes
//! the change there; `--join` is given peer addresses to begin with.

use std::time::Duration;

use clap::Subcommand;
use raftlock_client::{
    client_addr, parse_endpoint, Client, ClientOptions, Credentials, Error, Member, Transport,
};
use raftlock_node::{MemberAddr, NodeTls};

use crate::exit;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Add a node: as a learner first, then, once it has caught up (from a
    /// snapshot if the log it needs is purged), as a voter.
    Add {
        /// The new node's id.
        id: u64,
        /// The address the other nodes reach it at (its --peer-listen, or
        /// its one address if it has no peer port), HOST:PORT.
        peer_addr: String,
        /// The address clients reach it at (its --listen), HOST:PORT. Leave
        /// it out for a node without --peer-listen: PEER_ADDR serves both.
        #[arg(long)]
        client_addr: Option<String>,
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

/// How long each client endpoint gets to name the members.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(client: Client, command: ClusterCommand) -> i32 {
    if let ClusterCommand::Add {
        peer_addr,
        client_addr,
        ..
    } = &command
    {
        let given = std::iter::once(peer_addr).chain(client_addr);
        if let Some(Err(message)) = given.map(|a| parse_endpoint(a)).find(Result::is_err) {
            eprintln!("raftlock cluster add: {message}");
            return exit::USAGE;
        }
    }
    let admin = match client.membership_client(STATUS_TIMEOUT).await {
        Ok(admin) => admin,
        Err(e) => return exit::unavailable(&e),
    };
    let result = match command {
        ClusterCommand::Add {
            id,
            peer_addr,
            client_addr,
            timeout,
        } => {
            let client_addr = client_addr.unwrap_or_default();
            add(&admin, id, &peer_addr, &client_addr, timeout, true).await
        }
        ClusterCommand::Remove { id, force } => admin.remove_member(id, force).await,
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
        println!(
            "  {:<4} peer {:<24} client {:<24} {kind}",
            m.id,
            m.addr,
            client_addr(m)
        );
    }
}

/// Learner, catch up, voter, through `admin` (a client of the peer
/// addresses); the catching up is watched through the members' client
/// addresses. Shows progress on stderr when `progress`.
pub async fn add(
    admin: &Client,
    id: u64,
    peer_addr: &str,
    client_addr: &str,
    timeout: Duration,
    progress: bool,
) -> Result<Vec<Member>, Error> {
    let members = admin.add_learner(id, peer_addr, client_addr).await?;
    if members.iter().any(|m| m.id == id && m.voter) {
        return Ok(members);
    }
    let clients: Vec<&str> = members.iter().map(raftlock_client::client_addr).collect();
    // The members' client ports take the same credentials.
    let client = admin.sibling(clients)?;
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
    admin.promote(id).await
}

/// `raftlock server --join`: ask the cluster (through `seeds`, members'
/// peer addresses) to add this node at `advertised` until it has; over TLS
/// with the node's certificate (principal `node-<id>`, an admin) when `tls`.
pub async fn join(seeds: Vec<String>, id: u64, advertised: MemberAddr, tls: Option<NodeTls>) {
    let transport = match tls {
        Some(tls) => Transport::Tls(Credentials {
            ca: tls.ca,
            token: None,
            identity: Some((tls.cert, tls.key)),
        }),
        None => Transport::Plain,
    };
    let options = ClientOptions {
        transport,
        ..ClientOptions::default()
    };
    let (peer_addr, client_addr) = (advertised.peer, advertised.client);
    let admin = match Client::with_options(seeds, options) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%e, "--join: bad addresses");
            return;
        }
    };
    loop {
        let added = add(
            &admin,
            id,
            &peer_addr,
            &client_addr,
            Duration::from_secs(600),
            false,
        );
        match added.await {
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
