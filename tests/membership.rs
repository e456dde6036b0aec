//! Operating a cluster: adding nodes (caught up by snapshot), `--join`,
//! removing voters (the leader too), refusing changes that would leave a
//! single voter, replacing a node whose disk is gone, and a rolling
//! restart under load with zero failed client operations. And the two
//! ports: the client port serves no Raft or membership call, the peer port
//! no lock call, each port's redirects name the leader on that kind of
//! port, and single-port nodes (as before the split) still work.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftlock_client::{Client, Error, Member, SessionOptions, Wait};
use raftlock_proto::raft::raft_client::RaftClient;
use raftlock_proto::raft::RaftMessage;
use raftlock_proto::v1::cluster_client::ClusterClient;
use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::{GetLockRequest, PromoteRequest, StatusRequest};
use raftlock_proto::LEADER_ADDR_HEADER;
use support::{serial, Cluster};

const SMALL_SNAPSHOTS: &[&str] = &["--snapshot-every", "50"];

async fn fill(client: &Client, prefix: &str, n: usize) {
    let session = client
        .open_session(SessionOptions {
            ttl: Duration::from_secs(60),
            ..SessionOptions::default()
        })
        .await
        .unwrap();
    for i in 0..n {
        session
            .lock(&format!("{prefix}{i:04}"), Wait::No)
            .await
            .unwrap();
    }
    // Keep the locks: leak the session handle's keepalive for the test's life.
    std::mem::forget(session);
}

fn voters(members: &[Member]) -> Vec<u64> {
    members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

async fn wait_for_voter(client: &Client, id: u64) -> raftlock_client::StatusResponse {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(leader) = client.leader_status(Duration::from_millis(500)).await {
            if leader.members.iter().any(|m| m.id == id && m.voter) {
                return leader;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "node {id} never became a voter"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_add_catches_up_from_a_snapshot() {
    let _serial = serial().await;
    let mut cluster = Cluster::start_with(3, SMALL_SNAPSHOTS).await;
    let client = cluster.client();
    fill(&client, "pre/", 200).await;
    let addr = cluster.add_node(4, false);
    let peer_addr = cluster.peer_addr(4);
    cluster.spawn(4);
    // Through the client endpoints only: the command finds the peer ports.
    let out = std::process::Command::new(support::BIN)
        .args([
            "--endpoints",
            &cluster.endpoints()[..3].join(","),
            "cluster",
            "add",
            "4",
            &peer_addr,
            "--client-addr",
            &addr,
        ])
        .envs(cluster.cli_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leader = wait_for_voter(&client, 4).await;
    assert_eq!(voters(&leader.members), vec![1, 2, 3, 4]);
    let added = leader.members.iter().find(|m| m.id == 4).unwrap();
    assert_eq!((&added.addr, &added.client_addr), (&peer_addr, &addr));
    cluster
        .wait_applied(4, leader.last_applied, Duration::from_secs(20))
        .await;
    let status = cluster.status(4).await.unwrap();
    assert_eq!(status.locks, 200);
    assert!(
        status.snapshot_index > 0,
        "caught up from a snapshot: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_the_leader_and_refuse_a_single_voter() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let members = cluster
        .admin()
        .await
        .remove_member(leader, false)
        .await
        .unwrap();
    assert_eq!(voters(&members).len(), 2);
    assert!(!voters(&members).contains(&leader));
    // The other two elect a leader among themselves and keep serving.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(s) = client.leader_status(Duration::from_millis(500)).await {
            if s.id != leader {
                break s;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no new leader after removing {leader}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let session = client
        .open_session(SessionOptions::default())
        .await
        .unwrap();
    session.lock("after-removal", Wait::No).await.unwrap();

    // Two voters left: removing one more would leave a single node.
    let other = voters(&status.members)
        .into_iter()
        .find(|v| *v != status.id)
        .unwrap();
    let admin = cluster.admin().await;
    match admin.remove_member(other, false).await {
        Err(Error::Other(msg)) => assert!(msg.contains("--force"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let members = admin.remove_member(other, true).await.unwrap();
    assert_eq!(voters(&members), vec![status.id]);
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_lost_disk_is_replaced_and_rejoins() {
    let _serial = serial().await;
    let mut cluster = Cluster::start_with(3, SMALL_SNAPSHOTS).await;
    let client = cluster.client();
    fill(&client, "a/", 100).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(victim);
    // Its disk is gone: remove it, wipe it, let it join again as a new node.
    let members = cluster
        .admin()
        .await
        .remove_member(victim, false)
        .await
        .unwrap();
    assert!(!members.iter().any(|m| m.id == victim));
    fill(&client, "b/", 100).await;
    cluster.wipe_and_rejoin(victim);
    cluster.spawn(victim);
    let leader_status = wait_for_voter(&client, victim).await;
    cluster
        .wait_applied(victim, leader_status.last_applied, Duration::from_secs(20))
        .await;
    let status = cluster.status(victim).await.unwrap();
    assert_eq!(status.locks, 200);
    assert!(status.snapshot_index > 0, "came back through a snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_fails_no_client_operation() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = cluster.client();
        let (stop, done) = (stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let session = client.open_session(SessionOptions::default()).await?;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("rolling-{}", w % 2);
                session
                    .lock(&name, Wait::For(Duration::from_secs(30)))
                    .await?;
                session.release(&name).await?;
                n += 1;
                done.fetch_add(1, Ordering::SeqCst);
            }
            session.close().await?;
            Ok::<u64, Error>(n)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 1..=3 {
        cluster.stop(id);
        cluster.spawn(id);
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let cycles = w
            .await
            .unwrap()
            .expect("no client operation failed during the rolling restart");
        assert!(cycles > 0);
    }
    assert!(
        done.load(Ordering::SeqCst) > before,
        "still making progress after the restarts"
    );
}

/// The gRPC code of `call`'s error (a success is a test failure).
fn code_of<T: std::fmt::Debug>(call: Result<T, tonic::Status>) -> tonic::Code {
    call.expect_err("the call was served").code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_port_serves_only_its_own_services() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let credentials = cluster.credentials().expect("a secure cluster");
    for id in 1..=3 {
        // Node `id`'s own certificate: a member, so the peer port lets its
        // Raft calls through to the decoder.
        let node_cert = credentials.dir.join(format!("node-{id}.pem"));
        let node_key = credentials.dir.join(format!("node-{id}-key.pem"));
        let as_node = |addr: String| {
            let (ca, cert, key) = (credentials.ca(), node_cert.clone(), node_key.clone());
            async move {
                support::tls_channel(&addr, &ca, Some((&cert, &key)))
                    .await
                    .unwrap()
            }
        };
        let mut raft = RaftClient::new(as_node(cluster.endpoint(id)).await);
        let empty = || RaftMessage {
            data: Vec::new().into(),
        };
        // The client port's authentication refuses Raft RPCs by name,
        // before any routing, even from a member node.
        for refused in [
            raft.append_entries(empty()).await,
            raft.vote(empty()).await,
            raft.install_snapshot(empty()).await,
            raft.pre_vote(empty()).await,
        ] {
            let status = refused.expect_err("the call was served");
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            assert!(
                status.message().contains("not served to clients"),
                "{status:?}"
            );
        }
        let unimplemented = tonic::Code::Unimplemented;
        let mut membership = ClusterClient::new(cluster.client_port(id).await);
        let promote = PromoteRequest { id: 9 };
        assert_eq!(code_of(membership.promote(promote).await), unimplemented);
        let mut lock = LockClient::new(cluster.peer_port(id).await);
        assert_eq!(code_of(lock.status(StatusRequest {}).await), unimplemented);
        // The peer port does serve Raft: garbage is refused, not unknown.
        let mut raft = RaftClient::new(as_node(cluster.peer_addr(id)).await);
        assert_eq!(
            code_of(raft.vote(empty()).await),
            tonic::Code::InvalidArgument
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_name_the_leader_on_the_port_they_came_in_on() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let leader_named = |status: tonic::Status| {
        let header = status.metadata().get(LEADER_ADDR_HEADER).cloned();
        header.map(|v| v.to_str().unwrap().to_string())
    };

    let mut lock = LockClient::new(cluster.client_port(follower).await);
    let read = GetLockRequest {
        name: "redirected".into(),
    };
    let refused = lock.get_lock(read).await.expect_err("a follower redirects");
    assert_eq!(leader_named(refused), Some(cluster.endpoint(leader)));
    let status = lock.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.leader_addr, cluster.endpoint(leader));
    assert_eq!(status.addr, cluster.endpoint(follower));
    assert_eq!(status.peer_addr, cluster.peer_addr(follower));

    let mut membership = ClusterClient::new(cluster.peer_port(follower).await);
    let refused = membership
        .promote(PromoteRequest { id: leader })
        .await
        .expect_err("a follower redirects");
    assert_eq!(leader_named(refused), Some(cluster.peer_addr(leader)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_nodes_still_form_a_cluster_and_take_new_members() {
    let _serial = serial().await;
    // Secure like every cluster here: one port, TLS with optional client
    // certificates, membership changes by admin's certificate.
    let mut cluster = Cluster::start_single_port(3).await;
    let client = cluster.client();
    let session = client
        .open_session(SessionOptions::default())
        .await
        .unwrap();
    session.lock("single-port", Wait::No).await.unwrap();
    let status = cluster.status(1).await.unwrap();
    for m in &status.members {
        assert_eq!(m.addr, m.client_addr, "one address for both: {m:?}");
    }
    assert_eq!(status.peer_addr, status.addr);
    // A new single-port node, added by its one address.
    let addr = cluster.add_node(4, false);
    cluster.spawn(4);
    let out = std::process::Command::new(support::BIN)
        .args(["--endpoints", &cluster.endpoints()[..3].join(",")])
        .args(["cluster", "add", "4", &addr])
        .envs(cluster.cli_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leader = wait_for_voter(&client, 4).await;
    cluster
        .wait_applied(4, leader.last_applied, Duration::from_secs(20))
        .await;
    assert_eq!(cluster.status(4).await.unwrap().locks, 1);
    session.close().await.unwrap();
}
