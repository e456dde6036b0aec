//! The bounds a node puts on what clients make it hold, on real processes:
//! connections per listener, streams per connection, the deadline of a
//! unary call, the write queue, watchers, and paged ListLocks. Each test
//! sets its bound small with the `raftlock server` flag, reaches it, and
//! checks the refusal and that the node recovers.

mod support;

use std::time::{Duration, Instant};

use raftlock_client::{Client, SessionOptions, Wait};
use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::{
    AcquireRequest, ListLocksRequest, OpenSessionRequest, StatusRequest, WatchRequest,
};
use raftlock_proto::ErrorKind;
use support::{serial, tls_channel, with_token, AuthedChannel, Cluster};
use tonic::transport::Channel;
use tonic::Code;

type Lock = LockClient<AuthedChannel>;

async fn lock_client(cluster: &Cluster, id: u64) -> Lock {
    LockClient::new(cluster.client_port(id).await)
}

async fn status_ok(client: &mut Lock) -> bool {
    client.status(StatusRequest {}).await.is_ok()
}

/// Opens a session; its id and secret.
async fn open(client: &mut Lock) -> (String, String) {
    let reply = client
        .open_session(OpenSessionRequest {
            ttl_ms: 30_000,
            ..Default::default()
        })
        .await
        .expect("a session")
        .into_inner();
    (reply.session_id, reply.session_secret)
}

fn acquire(session: &(String, String), name: &str, wait_ms: u64) -> AcquireRequest {
    AcquireRequest {
        session_id: session.0.clone(),
        session_secret: session.1.clone(),
        seq: 1,
        name: name.into(),
        wait_ms,
        ..Default::default()
    }
}

/// A fresh connection to node `id`'s client port, if the node serves
/// it: only an answered call proves that (a TLS handshake can complete
/// just before the node closes a connection past its limit).
async fn served_connection(cluster: &Cluster, id: u64) -> Option<LockClient<Channel>> {
    let credentials = cluster.credentials()?;
    let channel = tls_channel(&cluster.endpoint(id), &credentials.ca(), None)
        .await
        .ok()?;
    let mut client = LockClient::new(channel);
    let request = with_token(StatusRequest {}, &credentials.admin_token);
    client.status(request).await.ok()?;
    Some(client)
}

/// Retries [`served_connection`] for up to `within`: a slot frees only
/// once the node has seen an old connection close.
async fn connect_within(
    cluster: &Cluster,
    id: u64,
    within: Duration,
) -> Option<LockClient<Channel>> {
    let until = Instant::now() + within;
    loop {
        if let Some(client) = served_connection(cluster, id).await {
            return Some(client);
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_while_the_others_keep_working() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(1, &["--max-client-connections", "3"]).await;
    // The harness's own status probes have closed their connections by
    // the time the node has noticed: wait for each slot.
    let mut held = Vec::new();
    while held.len() < 3 {
        let client = connect_within(&cluster, 1, Duration::from_secs(10)).await;
        held.push(client.expect("3 connections within the limit of 3"));
    }
    // A fourth is closed at once (during its TLS handshake), every time.
    for _ in 0..3 {
        assert!(
            served_connection(&cluster, 1).await.is_none(),
            "a fourth connection was served"
        );
    }
    let token = &cluster.credentials().expect("secure").admin_token;
    for client in &mut held {
        let request = with_token(StatusRequest {}, token);
        assert!(
            client.status(request).await.is_ok(),
            "a held connection stopped working"
        );
    }
    // One goes away: a new connection is admitted again.
    held.pop();
    let admitted = connect_within(&cluster, 1, Duration::from_secs(5)).await;
    assert!(
        admitted.is_some(),
        "no connection admitted after one closed\n{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_stream_limit_waits_while_another_is_served() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(1, &["--max-streams-per-connection", "2"]).await;
    let mut crowded = lock_client(&cluster, 1).await;
    let mut other = lock_client(&cluster, 1).await;
    let holder = open(&mut other).await;
    assert!(
        other
            .acquire(acquire(&holder, "busy", 0))
            .await
            .unwrap()
            .into_inner()
            .acquired
    );
    // Two long-polls fill the crowded connection's two streams.
    let wait = Duration::from_millis(2500);
    let mut polls = Vec::new();
    for _ in 0..2 {
        let session = open(&mut other).await;
        let mut client = crowded.clone();
        let request = acquire(&session, "busy", wait.as_millis() as u64);
        polls.push(tokio::spawn(async move {
            client.acquire(request).await.is_ok()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let third = tokio::spawn(async move { status_ok(&mut crowded).await });
    // Another connection is served at once meanwhile.
    assert!(status_ok(&mut other).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(third.await.unwrap(), "the third call failed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "a third stream ran beside two on a connection limited to two (after {waited:?})"
    );
    for poll in polls {
        assert!(poll.await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_stuck_past_the_request_timeout_ends_with_deadline_exceeded() {
    let _serial = serial().await;
    let mut cluster = Cluster::start_with(3, &["--request-timeout-ms", "1500"]).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let mut client = lock_client(&cluster, leader).await;
    for follower in (1..=3).filter(|id| *id != leader) {
        cluster.kill(follower);
    }
    // Without a quorum the write can never commit: only the deadline ends it.
    let started = Instant::now();
    let answer = client
        .open_session(OpenSessionRequest {
            ttl_ms: 30_000,
            ..Default::default()
        })
        .await;
    let took = started.elapsed();
    let status = answer.expect_err("a write without a quorum succeeded");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("--request-timeout-ms"),
        "{status:?}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The node itself is fine: it answers what it can.
    assert!(status_ok(&mut client).await);
}

/// Fires `n` OpenSession calls at once over `channels` connections; the
/// statuses of the refused ones.
async fn flood(channels: &[Lock], n: usize) -> (usize, Vec<tonic::Status>) {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut client = channels[i % channels.len()].clone();
        calls.spawn(async move {
            client
                .open_session(OpenSessionRequest {
                    ttl_ms: 30_000,
                    ..Default::default()
                })
                .await
        });
    }
    let (mut served, mut refused) = (0, Vec::new());
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            Ok(_) => served += 1,
            Err(status) => refused.push(status),
        }
    }
    (served, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_against_a_tiny_write_queue_is_refused_as_overloaded_and_the_node_recovers() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(1, &["--max-queued-writes", "2"]).await;
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(lock_client(&cluster, 1).await);
    }
    let (served, refused) = flood(&channels, 400).await;
    assert!(served > 0, "nothing served");
    assert!(!refused.is_empty(), "a queue of 2 took 400 writes at once");
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(ErrorKind::of(status), Some(ErrorKind::Overloaded));
        assert!(
            status.message().contains("--max-queued-writes"),
            "{status:?}"
        );
    }
    // Recovered: a lone write goes through, and the Rust client, which
    // retries `overloaded` after a backoff, gets every one of a crowd in.
    let mut lone = channels[0].clone();
    open(&mut lone).await;
    let client = cluster.client();
    let mut opens = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client: Client = client.clone();
        opens.spawn(async move {
            client
                .open_session(SessionOptions {
                    ttl: Duration::from_secs(30),
                    lock_delay: Duration::ZERO,
                    label: format!("crowd {i}"),
                })
                .await
                .map(|_| ())
        });
    }
    while let Some(opened) = opens.join_next().await {
        opened
            .unwrap()
            .expect("the client retries an overloaded node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_past_the_limit_are_refused_until_one_ends() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(1, &["--max-watchers", "2"]).await;
    let mut client = lock_client(&cluster, 1).await;
    let watch = |prefix: &str| WatchRequest {
        prefix: prefix.into(),
        from_index: 0,
    };
    let first = client.watch(watch("a/")).await.expect("a first watch");
    let _second = client.watch(watch("b/")).await.expect("a second watch");
    let refused = client.watch(watch("c/")).await.expect_err("a third watch");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(ErrorKind::of(&refused), Some(ErrorKind::Overloaded));
    assert!(refused.message().contains("--max-watchers"));
    drop(first);
    let until = Instant::now() + Duration::from_secs(5);
    while client.watch(watch("c/")).await.is_err() {
        assert!(Instant::now() < until, "no watch slot freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A prefix longer than any lock name is refused for both reads.
    let long = "p".repeat(raftlock_core::MAX_NAME_LEN + 1);
    let refused = client.watch(watch(&long)).await.expect_err("a long prefix");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .list_locks(ListLocksRequest {
            prefix: long,
            ..Default::default()
        })
        .await
        .expect_err("a long prefix");
    assert_eq!(refused.code(), Code::InvalidArgument);
}

/// Holds `names` with a few sessions, many proposals at once.
async fn hold_all(client: &Client, names: &[String]) {
    let mut sessions = Vec::new();
    for i in 0..5 {
        let options = SessionOptions {
            ttl: Duration::from_secs(60),
            lock_delay: Duration::ZERO,
            label: format!("holder {i}"),
        };
        sessions.push(client.open_session(options).await.unwrap());
    }
    let mut grants = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let session = sessions[i % sessions.len()].clone();
        let name = name.clone();
        grants.spawn(async move { session.lock(&name, Wait::No).await.map(|g| g.token) });
        if grants.len() >= 64 {
            grants.join_next().await.unwrap().unwrap().expect("granted");
        }
    }
    while let Some(grant) = grants.join_next().await {
        grant.unwrap().expect("granted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_locks_pages_return_every_name_once_in_order() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(1, &["--max-list-page", "300"]).await;
    let client = cluster.client();
    let mut names: Vec<String> = (0..2500).map(|i| format!("page/{i}")).collect();
    hold_all(&client, &names).await;
    hold_all(&client, &["other/1".to_string(), "pagf".to_string()]).await;
    names.sort();

    // The Rust client pages under the hood for a caller that wants N.
    let (listed, cut) = client.list_locks("page/", 0).await.unwrap();
    let listed: Vec<String> = listed.into_iter().map(|l| l.name).collect();
    assert_eq!(listed, names);
    assert!(!cut);
    let (some, cut) = client.list_locks("page/", 700).await.unwrap();
    assert_eq!(some.len(), 700);
    assert!(cut);

    // A page above the server's largest is cut to it, with a token.
    let mut raw = lock_client(&cluster, 1).await;
    let page = raw
        .list_locks(ListLocksRequest {
            prefix: "page/".into(),
            limit: 5000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.locks.len(), 300);
    assert!(page.truncated);
    assert_eq!(page.next_page_token, names[299]);
    // A token from another prefix is refused.
    let refused = raw
        .list_locks(ListLocksRequest {
            prefix: "other/".into(),
            limit: 10,
            page_token: page.next_page_token,
        })
        .await
        .expect_err("a foreign token");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // `raftlock locks` pages through everything: one row per lock.
    let mut command = std::process::Command::new(support::BIN);
    command.args([
        "locks",
        "page/",
        "--limit",
        "0",
        "--endpoints",
        &cluster.endpoint(1),
    ]);
    command.envs(cluster.cli_env());
    let out = command.output().expect("run raftlock locks");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(rows, names.iter().map(String::as_str).collect::<Vec<_>>());
}
