//! A follower that rejoins, restarted or resumed after a pause, must not
//! disrupt a healthy leader: under a light lock load, no leader change and
//! no new term. And while a peer is down, the leader logs it going down
//! and coming back, not every failed call.
//!
//! The log-filter test starts its nodes without `RUST_LOG`: it is about
//! the server's own default filter, not the harness's test filter.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftlock_chaos::{runner, LocalCluster, Nodes};
use raftlock_client::{Client, ClientOptions, SessionOptions, Wait};
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
    let mut nodes = LocalCluster::start_secure_with_log_filter(Path::new(BIN), 3, &[], None)
        .expect("start the cluster");
    let secure = ClientOptions {
        transport: nodes.admin_transport(),
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
