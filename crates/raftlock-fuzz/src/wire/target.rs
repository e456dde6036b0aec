//! A node under fire: a one-node cluster of the real binary, a session
//! that holds a lock, the lock table as it was, and the check made after
//! every burst (the node answers, logged no panic, and its table is the
//! same: same holder, same token).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use raftlock_chaos::{LocalCluster, Nodes};
use raftlock_client::{
    Client, ClientOptions, Credentials, LockInfo, Role, Session, SessionOptions, Token, Transport,
    Wait,
};

use super::conn::Dialer;

/// How long the node has to answer a valid client after a burst.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// The name the target's own session holds throughout.
pub const HELD_NAME: &str = "fuzz/held";

pub struct Target {
    pub secure: bool,
    cluster: LocalCluster,
    /// The client port, as a stranger reaches it (TLS without a certificate).
    pub client_port: Dialer,
    /// The peer port as a stranger reaches it.
    pub peer_port: Dialer,
    /// The peer port presenting the node's own certificate (secure only):
    /// past the Raft admission, so payloads get decoded.
    pub peer_port_as_node: Option<Dialer>,
    /// `admin`'s bearer token on a secure node.
    pub admin_token: Option<String>,
    client: Client,
    session: Session,
    pub token: u64,
    table: Vec<LockInfo>,
    panics_logged: usize,
}

impl Target {
    /// Starts the node, waits for it to lead, takes [`HELD_NAME`].
    pub async fn start(binary: &Path, secure: bool) -> anyhow::Result<Target> {
        let cluster = if secure {
            LocalCluster::start_secure(binary, 1, &[])?
        } else {
            LocalCluster::start_insecure(binary, 1, &[])?
        };
        let client_addr = cluster.endpoint(1);
        let peer_addr = cluster.peer_addr(1);
        let (transport, dialers, admin_token) = match cluster.credentials() {
            Some(creds) => {
                let dir = &creds.dir;
                let node = (dir.join("node-1.pem"), dir.join("node-1-key.pem"));
                let dialers = (
                    Dialer::tls(&client_addr, &creds.ca(), None)?,
                    Dialer::tls(&peer_addr, &creds.ca(), None)?,
                    Some(Dialer::tls(
                        &peer_addr,
                        &creds.ca(),
                        Some((&node.0, &node.1)),
                    )?),
                );
                let transport = Transport::Tls(Credentials {
                    ca: creds.ca(),
                    token: Some(Token::new(creds.admin_token.clone())),
                    identity: None,
                });
                (transport, dialers, Some(creds.admin_token.clone()))
            }
            None => {
                let dialers = (Dialer::plain(&client_addr), Dialer::plain(&peer_addr), None);
                (Transport::Plain, dialers, None)
            }
        };
        let options = ClientOptions {
            retry_for: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(5),
            transport,
            ..ClientOptions::default()
        };
        let client = Client::with_options([client_addr.clone()], options)?;
        wait_for_leader(&client, &client_addr).await?;
        let session = client
            .open_session(SessionOptions {
                // Long enough that a keepalive delayed by a burst never
                // costs the session.
                ttl: Duration::from_secs(600),
                lock_delay: Duration::ZERO,
                label: "raftlock-fuzz".into(),
            })
            .await?;
        let grant = session.lock(HELD_NAME, Wait::No).await?;
        let (table, _) = client.list_locks("", 0).await?;
        let panics_logged = cluster.count_in_logs("panicked").unwrap_or(0);
        Ok(Target {
            secure,
            cluster,
            client_port: dialers.0,
            peer_port: dialers.1,
            peer_port_as_node: dialers.2,
            admin_token,
            client,
            session,
            token: grant.token,
            table,
            panics_logged,
        })
    }

    pub fn name(&self) -> &'static str {
        if self.secure {
            "secure node"
        } else {
            "insecure node"
        }
    }

    /// After a burst: `Err` says what is wrong with the node.
    pub async fn check(&mut self) -> Result<(), String> {
        let panics = self.cluster.count_in_logs("panicked").unwrap_or(0);
        if panics > self.panics_logged {
            self.panics_logged = panics;
            return Err(format!(
                "the node logged a panic\n{}",
                self.cluster.logs(60)
            ));
        }
        let read = tokio::time::timeout(ANSWER_WITHIN, self.client.list_locks("", 0)).await;
        let table = match read {
            Err(_) => {
                return Err(format!(
                    "no answer to ListLocks within {ANSWER_WITHIN:?}\n{}",
                    self.cluster.logs(60)
                ))
            }
            Ok(Err(e)) => {
                return Err(format!("ListLocks failed: {e}\n{}", self.cluster.logs(60)));
            }
            Ok(Ok((table, _))) => table,
        };
        let held = table.iter().find(|l| l.name == HELD_NAME);
        let token = held
            .and_then(|l| l.holder.as_ref())
            .map(|h| h.fencing_token);
        if token != Some(self.token) {
            return Err(format!(
                "{HELD_NAME:?} is no longer held with token {}: {held:?}",
                self.token
            ));
        }
        if table != self.table {
            return Err(format!(
                "the lock table changed\nbefore: {:?}\nafter: {table:?}",
                self.table
            ));
        }
        if let Some(why) = self.session.lost_reason() {
            return Err(format!("the fuzzer's session was lost: {why}"));
        }
        Ok(())
    }

    pub fn session_id(&self) -> String {
        self.session.id().to_string()
    }

    pub fn logs(&self) -> String {
        self.cluster.logs(60)
    }
}

async fn wait_for_leader(client: &Client, addr: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.node_status(addr, Duration::from_millis(500)).await;
        if matches!(&status, Ok(s) if s.role == Role::Leader as i32) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow::anyhow!("no leader: {status:?}")).context(addr.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
