//! Quotas under real processes: requests past a `--max-*` flag are refused
//! with RESOURCE_EXHAUSTED naming the flag, nothing else is disturbed, one
//! principal cannot take another's share, a hostile loop leaves the
//! leader's memory bounded and a normal client's latency sane, and status
//! and metrics show the use against each limit.
//!
//! Raw gRPC stubs are used where the refusal itself is checked (its code,
//! kind and message), the Rust client where a normal user's view matters.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use raftlock_client::{SessionOptions, Wait};
use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::*;
use raftlock_proto::ErrorKind;
use support::{serial, tls_channel, with_token, Cluster, BIN};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A principal's view of the leader: a channel and its token.
struct Principal {
    client: LockClient<Channel>,
    token: String,
}

/// An open session and its secret.
#[derive(Clone, Debug)]
struct Opened {
    id: String,
    secret: String,
}

impl Principal {
    async fn at(cluster: &Cluster, node: u64, token: &str) -> Principal {
        let ca = cluster.credentials().expect("a secure cluster").ca();
        let channel = tls_channel(&cluster.endpoint(node), &ca, None)
            .await
            .expect("a TLS channel");
        Principal {
            client: LockClient::new(channel),
            token: token.to_string(),
        }
    }

    async fn open(&mut self) -> Result<Opened, Status> {
        let request = OpenSessionRequest {
            ttl_ms: 30_000,
            ..Default::default()
        };
        let reply = self.client.open_session(with_token(request, &self.token));
        let reply = reply.await?.into_inner();
        Ok(Opened {
            id: reply.session_id,
            secret: reply.session_secret,
        })
    }

    /// Acquire `name` as `session`; with `wait_ms` > 0 the session stays
    /// queued when the wait ends.
    async fn acquire(
        &mut self,
        session: &Opened,
        seq: u64,
        name: &str,
        wait_ms: u64,
    ) -> Result<AcquireResponse, Status> {
        let request = AcquireRequest {
            session_id: session.id.clone(),
            session_secret: session.secret.clone(),
            seq,
            name: name.into(),
            wait_ms,
            leave_queue_on_timeout: false,
            ..Default::default()
        };
        let reply = self.client.acquire(with_token(request, &self.token));
        Ok(reply.await?.into_inner())
    }

    async fn status(&mut self) -> StatusResponse {
        let reply = self
            .client
            .status(with_token(StatusRequest {}, &self.token));
        reply.await.expect("status").into_inner()
    }
}

/// A quota refusal: RESOURCE_EXHAUSTED, kind `quota-exceeded`, naming `flag`.
fn assert_quota_refusal(result: Result<impl std::fmt::Debug, Status>, flag: &str) {
    let status = result.expect_err("refused past the quota");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(ErrorKind::of(&status), Some(ErrorKind::QuotaExceeded));
    // The message ends "raise it with FLAG" (--max-sessions is a prefix of
    // --max-sessions-per-principal: `contains` would not tell them apart).
    assert!(
        status.message().ends_with(flag),
        "{flag} does not end {:?}",
        status.message()
    );
}

/// Adds a `lock` principal to the cluster's auth file and makes every
/// node reload it; its token once every node accepts it.
async fn add_principal(cluster: &Cluster, name: &str) -> String {
    let auth = cluster.credentials().expect("secure").auth_file();
    let out = Command::new(BIN)
        .args(["auth", "add", name, "--role", "lock", "--file"])
        .arg(&auth)
        .output()
        .expect("run raftlock auth add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for id in 1..=cluster.endpoints().len() as u64 {
        cluster.signal(id, libc::SIGHUP);
    }
    let until = Instant::now() + Duration::from_secs(10);
    for id in 1..=cluster.endpoints().len() as u64 {
        let mut principal = Principal::at(cluster, id, &token).await;
        loop {
            let reply = principal
                .client
                .status(with_token(StatusRequest {}, &token));
            if reply.await.is_ok() {
                break;
            }
            assert!(Instant::now() < until, "node {id} never accepted {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    token
}

/// The quota named `key` in a Status answer: (used, limit, flag).
fn quota(status: &StatusResponse, key: &str) -> (u64, u64, String) {
    let q = (status.quotas.iter())
        .find(|q| q.quota == key)
        .unwrap_or_else(|| panic!("no quota {key} in {:?}", status.quotas));
    (q.used, q.limit, q.flag.clone())
}

/// Waits until the leader's Status shows `limit` for `key`: the leader
/// proposes its flags once it leads, so they apply a moment later.
async fn wait_for_limit(admin: &mut Principal, key: &str, limit: u64) {
    let until = Instant::now() + Duration::from_secs(10);
    while quota(&admin.status().await, key).1 != limit {
        assert!(
            Instant::now() < until,
            "the {key} limit never became {limit}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SMALL_QUOTAS: [&str; 4] = [
    "--max-sessions=40",
    "--max-sessions-per-principal=20",
    "--max-waiters-per-lock=5",
    "--max-locks=60",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_a_quota_are_refused_naming_its_flag_and_nobody_else_notices() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(3, &SMALL_QUOTAS).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let admin_token = cluster.credentials().expect("secure").admin_token.clone();
    let mut admin = Principal::at(&cluster, leader, &admin_token).await;
    wait_for_limit(&mut admin, "sessions", 40).await;
    let alice_token = add_principal(&cluster, "alice").await;
    let bob_token = add_principal(&cluster, "bob").await;
    let mut alice = Principal::at(&cluster, leader, &alice_token).await;
    let mut bob = Principal::at(&cluster, leader, &bob_token).await;

    // (b) alice at her per-principal quota does not keep bob out.
    let mut alices = Vec::new();
    for _ in 0..20 {
        alices.push(alice.open().await.expect("within alice's quota"));
    }
    assert_quota_refusal(alice.open().await, "--max-sessions-per-principal");
    let bobs = bob.open().await.expect("bob is not alice");
    let held = bob.acquire(&bobs, 1, "q/x", 0).await.expect("bob locks");
    assert!(held.acquired);

    // (a) the cluster's quota: 20 + 1 open, 19 more fit, the next does not;
    // bob keeps locking while others are refused.
    let mut admins = Vec::new();
    for _ in 0..19 {
        admins.push(admin.open().await.expect("within the cluster's quota"));
    }
    for seq in 2..6 {
        assert_quota_refusal(admin.open().await, "--max-sessions");
        let name = format!("b/{seq}");
        let reply = bob.acquire(&bobs, seq, &name, 0).await;
        assert!(reply.expect("bob still locks").acquired);
    }

    // (c) five waiters queue on bob's name; the sixth is refused.
    for (seq, session) in alices.iter().take(5).enumerate() {
        let reply = alice.acquire(session, seq as u64 + 1, "q/x", 50).await;
        assert!(reply.expect("a waiter within the quota").queued);
    }
    assert_quota_refusal(
        alice.acquire(&alices[5], 1, "q/x", 50).await,
        "--max-waiters-per-lock",
    );

    // (c) names: q/x and bob's four b/* are in the table; 55 more fit.
    let mut taken = 0;
    let refused = loop {
        let name = format!("n/{taken}");
        match admin.acquire(&admins[0], taken + 1, &name, 0).await {
            Ok(reply) if reply.acquired => taken += 1,
            other => break other,
        }
        assert!(taken <= 60, "more names than --max-locks=60");
    };
    assert_eq!(taken, 55, "names taken before --max-locks refused");
    assert_quota_refusal(refused, "--max-locks");

    // (e) status shows each use against its limit.
    let status = admin.status().await;
    assert_eq!(
        quota(&status, "sessions"),
        (40, 40, "--max-sessions".into())
    );
    assert_eq!(quota(&status, "sessions_per_principal").0, 20);
    assert_eq!(
        quota(&status, "waiters_per_lock"),
        (5, 5, "--max-waiters-per-lock".into())
    );
    assert_eq!(quota(&status, "locks"), (60, 60, "--max-locks".into()));
    assert_eq!(status.quotas.len(), 8, "{:?}", status.quotas);
    let printed = status_cli(&cluster);
    let line = (printed.lines())
        .find(|l| l.trim_start().starts_with("sessions "))
        .unwrap_or_else(|| panic!("no sessions quota line in:\n{printed}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "sessions",
            "40",
            "/",
            "40",
            "--max-sessions",
            "NEAR",
            "LIMIT"
        ]
    );
}

/// `raftlock status` against the cluster, as an operator runs it.
fn status_cli(cluster: &Cluster) -> String {
    let out = Command::new(BIN)
        .arg("status")
        .arg("--endpoints")
        .arg(cluster.endpoints().join(","))
        .env_remove("RAFTLOCK_ENDPOINTS")
        .envs(cluster.cli_env())
        .output()
        .expect("run raftlock status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pid of the `raftlock server` whose data directory is `data_dir`.
fn pid_of(data_dir: &Path) -> u32 {
    let wanted = data_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = (cmdline.split(|b| *b == 0))
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "server") && args.contains(&wanted) {
            return pid;
        }
    }
    panic!("no raftlock server with --data-dir {wanted}");
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("its address").port()
}

/// `GET /metrics`, as series (name with labels) -> value.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let mut sock = std::net::TcpStream::connect(addr).expect("metrics port");
    write!(sock, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("a request");
    let mut text = String::new();
    sock.read_to_string(&mut text).expect("a reply");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (body.lines())
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// How long the hostile loop runs.
const HOSTILE_FOR: Duration = Duration::from_secs(8);

/// What the hostile loop saw.
#[derive(Default, Debug)]
struct Hostile {
    answered: u64,
    quota_refusals: u64,
    other_errors: Vec<String>,
}

/// One hostile task: opens sessions without end, and with each queues
/// on shared names and takes fresh ones, until `until`.
async fn hostile(mut mallory: Principal, task: u64, until: Instant) -> Hostile {
    let mut seen = Hostile::default();
    let mut sessions: Vec<Opened> = Vec::new();
    let mut step = 0u64;
    while Instant::now() < until {
        step += 1;
        let opened = mallory.open().await;
        let session = match opened {
            Ok(session) => {
                sessions.push(session.clone());
                session
            }
            Err(e) => {
                count(&mut seen, Err::<(), _>(e));
                match sessions.get(step as usize % sessions.len().max(1)) {
                    Some(session) => session.clone(),
                    None => continue,
                }
            }
        };
        let shared = format!("h/shared/{}", step % 8);
        count(
            &mut seen,
            mallory.acquire(&session, 2 * step, &shared, 20).await,
        );
        let fresh = format!("h/{task}/{step}");
        count(
            &mut seen,
            mallory.acquire(&session, 2 * step + 1, &fresh, 0).await,
        );
    }
    seen
}

fn count<T>(seen: &mut Hostile, result: Result<T, Status>) {
    match result {
        Ok(_) => seen.answered += 1,
        Err(e) if ErrorKind::of(&e) == Some(ErrorKind::QuotaExceeded) => seen.quota_refusals += 1,
        Err(e) => seen
            .other_errors
            .push(format!("{:?}: {}", e.code(), e.message())),
    }
}

/// The quotas of the hostile test, chosen so the table stays tiny: at most
/// 100 sessions with 4 waits each, 300 names, and the retry answers of 100
/// sessions (each reserves 64). One principal's sessions hold at most
/// 90 x 2 names, so it cannot take every name from the others: the
/// normal client's names still fit under --max-locks.
const HOSTILE_QUOTAS: [&str; 7] = [
    "--max-sessions=100",
    "--max-sessions-per-principal=90",
    "--max-holds-per-session=2",
    "--max-waits-per-session=4",
    "--max-waiters-per-lock=50",
    "--max-locks=300",
    "--max-retained-answers=6400",
];

/// How much a node's RSS may grow under the hostile loop. The quotas above
/// allow a table of well under 1 MiB (a session, a name or a remembered
/// answer is some hundreds of bytes); the rest is room for what any load
/// costs whatever the quotas: connection and Raft buffers, the allocator's
/// arenas, sled's page cache for the log written meanwhile.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_loop_leaves_memory_bounded_and_a_normal_client_served() {
    let _serial = serial().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--metrics-listen", &metrics];
    args.extend(HOSTILE_QUOTAS);
    let cluster = Cluster::start_with(1, &args).await;
    let admin_token = cluster.credentials().expect("secure").admin_token.clone();
    let mut admin = Principal::at(&cluster, 1, &admin_token).await;
    wait_for_limit(&mut admin, "sessions", 100).await;
    let mallory_token = add_principal(&cluster, "mallory").await;
    let pid = pid_of(&cluster.dir().join("node1"));
    let normal = cluster
        .client()
        .open_session(SessionOptions::default())
        .await;
    let normal = normal.expect("a normal session");
    normal.lock("normal/warm", Wait::No).await.expect("warm up");
    let baseline = rss_kib(pid);

    let until = Instant::now() + HOSTILE_FOR;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4 {
        let mallory = Principal::at(&cluster, 1, &mallory_token).await;
        tasks.spawn(hostile(mallory, task, until));
    }
    let mut latencies = Vec::new();
    let mut peak = baseline;
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let name = format!("normal/{}", round % 4);
        let started = Instant::now();
        normal
            .lock(&name, Wait::No)
            .await
            .expect("a normal acquire");
        latencies.push(started.elapsed());
        normal.release(&name).await.expect("a normal release");
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = Hostile::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("a hostile task");
        seen.answered += done.answered;
        seen.quota_refusals += done.quota_refusals;
        seen.other_errors.extend(done.other_errors);
    }
    peak = peak.max(rss_kib(pid));
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    println!(
        "hostile: {seen:?}; rss {baseline} KiB -> peak {peak} KiB; normal acquire \
         median {median:?}, max {worst:?} over {} rounds",
        latencies.len()
    );
    assert!(seen.quota_refusals > 0, "the loop never reached a quota");
    assert!(seen.other_errors.is_empty(), "{:?}", seen.other_errors);
    assert!(
        peak - baseline < RSS_GROWTH_BOUND_KIB,
        "RSS grew {} KiB",
        peak - baseline
    );
    assert!(median < Duration::from_millis(250), "median {median:?}");
    assert!(worst < Duration::from_secs(2), "worst {worst:?}");

    // (e) status and metrics show the use against the limits.
    let status = admin.status().await;
    let (sessions, limit, _) = quota(&status, "sessions");
    assert_eq!(
        (sessions, limit),
        (91, 100),
        "mallory's 90 and the normal one"
    );
    let waits = quota(&status, "waits_per_session");
    assert!(waits.0 <= 4 && waits.1 == 4, "{waits:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scraped = scrape(&metrics);
    let series =
        |name: &str, key: &str| scraped.get(&format!("{name}{{quota=\"{key}\"}}")).copied();
    assert_eq!(series("raftlock_quota_used", "sessions"), Some(91.0));
    assert_eq!(series("raftlock_quota_limit", "sessions"), Some(100.0));
    assert_eq!(series("raftlock_quota_limit", "locks"), Some(300.0));
    assert!(series("raftlock_quota_used", "locks").is_some_and(|v| v <= 300.0));
}
