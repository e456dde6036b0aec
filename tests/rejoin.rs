//! A follower that rejoins, restarted or resumed after a pause, must not
//! disrupt a healthy leader: under a light lock load, no leader change and
//! no new term. And while a peer is down, the leader logs it going down
//! and coming back, not every failed call.
//!
//! The log-filter test starts its own secure nodes ([`OperatorNodes`]):
//! the shared harness gives every secure node a test log filter, and that
//! test is about the server's own.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use raftlock_chaos::{runner, Nodes};
use raftlock_client::{Client, ClientOptions, Credentials, SessionOptions, Token, Transport, Wait};
use support::{serial, Cluster, BIN};
use tokio::task::JoinHandle;

/// Takes and releases one lock in a loop until `stop`; returns how many
/// rounds it did and every error it saw.
fn light_load(client: Client, stop: Arc<AtomicBool>) -> JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let mut errors = Vec::new();
        let session = match client
            .open_session(SessionOptions {
                ttl: Duration::from_secs(10),
                lock_delay: Duration::ZERO,
                label: "rejoin-load".into(),
            })
            .await
        {
            Ok(session) => session,
            Err(e) => return (0, vec![format!("open session: {e}")]),
        };
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = session.lock("rejoin/load", Wait::No).await {
                errors.push(format!("lock: {e}"));
            } else if let Err(e) = session.release("rejoin/load").await {
                errors.push(format!("release: {e}"));
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (rounds, errors)
    })
}

/// Waits until node `id` follows `leader` and has caught up with it.
async fn wait_following(cluster: &Cluster, id: u64, leader: u64) {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let (Some(s), Some(l)) = (cluster.status(id).await, cluster.status(leader).await) {
            if s.has_leader && s.leader_id == leader && s.last_applied >= l.last_applied {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "node {id} does not follow node {leader}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `rounds` of `hurt` on the followers in turn, under load, checking
/// after each that the leader still leads in the term it started with.
async fn leader_survives(rounds: usize, hurt: impl AsyncFn(&mut Cluster, u64)) {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let term = cluster.status(leader).await.expect("leader answers").term;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = light_load(cluster.client(), stop.clone());
    for round in 0..rounds {
        let follower = followers[round % followers.len()];
        hurt(&mut cluster, follower).await;
        wait_following(&cluster, follower, leader).await;
        let s = cluster.status(leader).await.expect("leader answers");
        assert!(
            s.role() == raftlock_client::Role::Leader && s.term == term,
            "round {round}: node {follower} rejoined and node {leader} is now {} in term {} \
             (was leader in term {term})\n{}",
            s.role().label(),
            s.term,
            cluster.logs()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (done, errors) = load.await.unwrap();
    assert!(done > 0, "the load did nothing");
    assert!(errors.is_empty(), "the load saw errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_followers_do_not_depose_the_leader() {
    leader_survives(20, async |cluster: &mut Cluster, id| {
        cluster.kill(id);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.spawn(id);
    })
    .await;
}

/// A paused follower hears nothing for longer than its election timeout,
/// as a restarted one the leader cannot reach yet: when it resumes, it must
/// find the leader still there rather than campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_followers_do_not_depose_the_leader() {
    leader_survives(20, async |cluster: &mut Cluster, id| {
        cluster.signal(id, libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.signal(id, libc::SIGCONT);
    })
    .await;
}

/// With openraft's own election timer off, a cluster whose nodes all
/// restart must still elect (every node starts without a leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_elects_a_leader() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let session = cluster
        .client()
        .open_session(SessionOptions {
            ttl: Duration::from_secs(10),
            lock_delay: Duration::ZERO,
            label: "after-restart".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("no session after the restart (leader {leader}): {e}"));
    session.lock("after-restart", Wait::No).await.unwrap();
}

/// Runs `raftlock ARGS` to completion; its stdout, trimmed.
fn raftlock(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(BIN).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "raftlock {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Three secure nodes (TLS, an auth file) on loopback, each on a client
/// port and a peer port, started without `RUST_LOG`: they log with the
/// server's own default filter, as an operator runs them.
struct OperatorNodes {
    dir: tempfile::TempDir,
    /// Node id -> (client address, peer address).
    addrs: BTreeMap<u64, (String, String)>,
    procs: BTreeMap<u64, Child>,
    /// `reader`'s bearer token: status is all this test asks for.
    token: String,
}

impl OperatorNodes {
    fn start() -> anyhow::Result<OperatorNodes> {
        let dir = tempfile::tempdir()?;
        let credentials = dir.path().join("credentials").to_string_lossy().to_string();
        raftlock(&["certs", "init", "--dir", &credentials])?;
        for id in 1..=3u64 {
            raftlock(&["certs", "node", &id.to_string(), "--dir", &credentials])?;
        }
        let auth = format!("{credentials}/auth.toml");
        let token = raftlock(&["auth", "add", "reader", "--role", "read", "--file", &auth])?;
        // All six held until all are chosen, so they differ.
        let listeners = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ports = listeners
            .iter()
            .map(|l| Ok(l.local_addr()?.port()))
            .collect::<std::io::Result<Vec<u16>>>()?;
        drop(listeners);
        let addrs = (1..=3u64)
            .zip(ports.chunks(2))
            .map(|(id, p)| {
                (
                    id,
                    (format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])),
                )
            })
            .collect();
        let mut nodes = OperatorNodes {
            dir,
            addrs,
            procs: BTreeMap::new(),
            token,
        };
        for id in 1..=3 {
            nodes.start(id)?;
        }
        Ok(nodes)
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    fn credential(&self, name: &str) -> OsString {
        self.dir
            .path()
            .join("credentials")
            .join(name)
            .into_os_string()
    }

    fn transport(&self) -> Transport {
        Transport::Tls(Credentials {
            ca: self.credential("ca.pem").into(),
            token: Some(Token::new(self.token.clone())),
            identity: None,
        })
    }

    fn signal(&self, id: u64, sig: i32) -> anyhow::Result<()> {
        let child = self.procs.get(&id).context("not running")?;
        // SAFETY: kill(2) on our own child process touches no memory.
        if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }
}

impl Nodes for OperatorNodes {
    fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    fn endpoint(&self, id: u64) -> String {
        self.addrs[&id].0.clone()
    }

    fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.procs.remove(&id) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let peers: Vec<String> = self
            .addrs
            .iter()
            .map(|(i, (client, peer))| format!("{i}={peer}/{client}"))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let (client, peer) = &self.addrs[&id];
        let child = Command::new(BIN)
            .env_remove("RUST_LOG")
            .args(["server", "--id", &id.to_string(), "--listen", client])
            .args(["--peer-listen", peer, "--peers", &peers.join(",")])
            .arg("--tls-cert")
            .arg(self.credential(&format!("node-{id}.pem")))
            .arg("--tls-key")
            .arg(self.credential(&format!("node-{id}-key.pem")))
            .arg("--tls-ca")
            .arg(self.credential("ca.pem"))
            .arg("--auth-file")
            .arg(self.credential("auth.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.procs.insert(id, child);
        Ok(())
    }

    fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGTERM)?;
        if let Some(mut child) = self.procs.remove(&id) {
            child.wait()?;
        }
        Ok(())
    }

    fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGSTOP)
    }

    fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGCONT)
    }
}

impl Drop for OperatorNodes {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.kill(id);
        }
    }
}

/// The log at `path` once a line past its first `skip` contains `needle`,
/// or as it is after `within`.
async fn wait_for_line(path: &Path, skip: usize, needle: &str, within: Duration) -> String {
    let until = tokio::time::Instant::now() + within;
    loop {
        let log = std::fs::read_to_string(path).unwrap();
        let found = log.lines().skip(skip).any(|l| l.contains(needle));
        if found || tokio::time::Instant::now() > until {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_logged_when_it_goes_and_comes_back() {
    let _serial = serial().await;
    let mut nodes = OperatorNodes::start().unwrap();
    let secure = ClientOptions {
        transport: nodes.transport(),
        ..ClientOptions::default()
    };
    let probe = Client::with_options(nodes.endpoints(), secure).unwrap();
    runner::wait_healthy(&probe, &nodes, Duration::from_secs(20))
        .await
        .expect("a healthy cluster");
    let leader = runner::leader(&probe, &nodes).await.expect("a leader");
    let down = (1..=3).find(|id| *id != leader).unwrap();
    let log_path = nodes.log_path(leader);
    let before = std::fs::read_to_string(&log_path).unwrap().lines().count();

    nodes.kill(down).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    nodes.start(down).unwrap();
    runner::wait_healthy(&probe, &nodes, Duration::from_secs(20))
        .await
        .expect("healthy again");

    // The restarted node can look caught up before the leader logs it back:
    // the leader's first calls to it, each opening a TLS connection, can
    // outlast their deadline while the node already applies what they
    // carried, and only a call that returns in time counts as an answer.
    let back = format!("peer reachable again peer={down}");
    let log = wait_for_line(&log_path, before, &back, Duration::from_secs(10)).await;
    let lines: Vec<&str> = log.lines().skip(before).collect();
    let about_peer = |what: &str| {
        lines
            .iter()
            .filter(|l| l.contains(what) && l.contains(&format!("peer={down}")))
            .count()
    };
    // Four seconds of a dead peer used to be ~150 lines of openraft errors.
    assert!(
        lines.len() <= 6,
        "{} lines logged by the leader while node {down} was down:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert_eq!(about_peer("peer unreachable"), 1, "{}", lines.join("\n"));
    assert_eq!(
        about_peer("peer reachable again"),
        1,
        "{}",
        lines.join("\n")
    );
}
