//! Lock modes end to end, against a loopback cluster of real nodes: shared
//! holders run together while a writer waits for all of them, a semaphore
//! never admits more than its limit, and the Rust client's modes, mode
//! conflicts and cancelled waits behave as docs/protocol.md says.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftlock_client::{Error, LockInfo, LockMode, SessionOptions, Wait};
use support::{serial, Cluster};

/// `raftlock lock --endpoints CLUSTER NAME FLAGS -- sh -c SCRIPT` as
/// admin, started.
fn spawn_lock(cluster: &Cluster, name: &str, flags: &[&str], script: &str) -> Child {
    Command::new(support::BIN)
        .args(["lock", "--endpoints", &cluster.endpoints().join(","), name])
        .envs(cluster.cli_env())
        .args(flags)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .spawn()
        .expect("start raftlock lock")
}

/// A script that appends `start TAG NANOS TOKEN` to `log`, runs `middle`,
/// then appends `end TAG NANOS`.
fn marked(log: &Path, tag: &str, middle: &str) -> String {
    let log = log.display();
    format!(
        "echo start {tag} $(date +%s%N) $RAFTLOCK_TOKEN >> {log}; {middle}; \
         echo end {tag} $(date +%s%N) >> {log}"
    )
}

/// One command's run, from its markers.
#[derive(Debug)]
struct Interval {
    tag: String,
    start: u128,
    end: u128,
    token: u64,
}

fn intervals(log: &Path) -> Vec<Interval> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut runs: Vec<Interval> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["start", tag, at, token] => runs.push(Interval {
                tag: tag.into(),
                start: at.parse().unwrap(),
                end: u128::MAX,
                token: token.parse().unwrap(),
            }),
            ["end", tag, at] => {
                let run = runs.iter_mut().find(|r| r.tag == tag).unwrap();
                run.end = at.parse().unwrap();
            }
            _ => panic!("odd line {line:?} in {text}"),
        }
    }
    assert!(runs.iter().all(|r| r.end != u128::MAX), "{text}");
    runs
}

/// Most runs in progress at any one time.
fn most_at_once(runs: &[Interval]) -> usize {
    let mut edges: Vec<(u128, i32)> = runs
        .iter()
        .flat_map(|r| [(r.start, 1), (r.end, -1)])
        .collect();
    // At equal times count the end first: a slot given back, then taken.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

fn count_lines(path: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.starts_with(prefix)).count())
        .unwrap_or(0)
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!("raftlock lock still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn lock_info(cluster: &Cluster, name: &str) -> Option<LockInfo> {
    cluster.client().get_lock(name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_commands_run_together_and_an_exclusive_one_waits_for_both() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints().join(",");
    let dir = cluster.dir().to_path_buf();
    let (log, go) = (dir.join("log"), dir.join("go"));
    // Each reader waits (up to 30 s) until both have started and the test
    // says go: if shared holders excluded each other, they could not both
    // start, and the first would end alone after 30 s.
    let reader = |tag: &str| {
        let middle = format!(
            "for i in $(seq 300); do \
               [ $(grep -c '^start r' {log}) -ge 2 ] && [ -e {go} ] && break; sleep 0.1; \
             done",
            log = log.display(),
            go = go.display()
        );
        spawn_lock(&cluster, "db", &["--shared"], &marked(&log, tag, &middle))
    };
    let mut readers = [reader("r1"), reader("r2")];
    wait_until("both readers started", Duration::from_secs(30), || {
        count_lines(&log, "start r") == 2
    });
    let mut writer = spawn_lock(&cluster, "db", &[], &marked(&log, "w", "true"));

    // The table shows both readers holding, the writer queued behind them.
    let started = Instant::now();
    let info = loop {
        let info = lock_info(&cluster, "db").await.expect("db is held");
        if !info.waiters.is_empty() {
            break info;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(info.holders.len(), 2, "{info:?}");
    assert!(info
        .holders
        .iter()
        .all(|h| h.mode() == raftlock_proto::v1::LockMode::Shared));
    assert_eq!(
        info.waiters[0].mode(),
        raftlock_proto::v1::LockMode::Exclusive
    );
    let out = Command::new(support::BIN)
        .args(["locks", "db", "--json", "--endpoints", &endpoints])
        .envs(cluster.cli_env())
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["mode"], "shared", "{rows}");
    assert_eq!(rows[0]["holders"].as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[0]["queue"][0]["mode"], "exclusive", "{rows}");
    let out = Command::new(support::BIN)
        .args(["locks", "db", "--endpoints", &endpoints])
        .envs(cluster.cli_env())
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table.lines().count(),
        3,
        "a header and a line per holder: {table}"
    );
    assert!(table.contains("1 (exclusive)"), "{table}");

    std::fs::write(&go, "").unwrap();
    for child in readers.iter_mut().chain([&mut writer]) {
        assert_eq!(wait_exit(child, Duration::from_secs(60)), 0);
    }
    let runs = intervals(&log);
    let by_tag = |tag: &str| runs.iter().find(|r| r.tag == tag).unwrap();
    let (r1, r2, w) = (by_tag("r1"), by_tag("r2"), by_tag("w"));
    assert!(
        r1.start < r2.end && r2.start < r1.end,
        "readers did not overlap: {runs:?}"
    );
    assert!(
        w.start > r1.end && w.start > r2.end,
        "the writer ran with a reader: {runs:?}"
    );
    assert!(w.token > r1.token.max(r2.token), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_of_two_never_runs_three_commands_at_once() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints().join(",");
    let log = cluster.dir().join("log");
    let mut children: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|tag| {
            spawn_lock(
                &cluster,
                "pool",
                &["--limit", "2"],
                &marked(&log, tag, "sleep 1.5"),
            )
        })
        .collect();
    for child in &mut children {
        assert_eq!(wait_exit(child, Duration::from_secs(60)), 0);
    }
    let runs = intervals(&log);
    assert_eq!(runs.len(), 3);
    assert_eq!(most_at_once(&runs), 2, "{runs:?}");

    // Another limit for the name while it is in use: refused, nothing runs.
    let session = cluster
        .client()
        .open_session(SessionOptions::default())
        .await
        .unwrap();
    session
        .lock_with("pool", Wait::No, LockMode::Semaphore { limit: 2 })
        .await
        .unwrap();
    let out = Command::new(support::BIN)
        .args(["lock", "--endpoints", &endpoints, "pool", "--limit", "3"])
        .args(["--no-wait", "--", "true"])
        .envs(cluster.cli_env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("semaphore with limit 2"), "{stderr}");
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_holds_in_every_mode_and_refuses_conflicts() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let open = || client.open_session(SessionOptions::default());
    let (a, b, c) = (
        open().await.unwrap(),
        open().await.unwrap(),
        open().await.unwrap(),
    );

    // Two readers at once; a writer cannot join them.
    let ga = a.lock_with("db", Wait::No, LockMode::Shared).await.unwrap();
    let gb = b.lock_with("db", Wait::No, LockMode::Shared).await.unwrap();
    assert_eq!((ga.mode, gb.mode), (LockMode::Shared, LockMode::Shared));
    assert!(!ga.reentrant && !gb.reentrant);
    assert_eq!(a.held_mode("db"), Some(LockMode::Shared));
    let refused = c.lock("db", Wait::For(Duration::from_millis(300))).await;
    assert!(
        matches!(refused, Err(Error::NotAcquired { .. })),
        "{refused:?}"
    );
    // Asking again in the same mode is reentrant; in another, a conflict.
    let again = a.lock_with("db", Wait::No, LockMode::Shared).await.unwrap();
    assert!(again.reentrant);
    assert_eq!(again.token, ga.token);
    match a.lock("db", Wait::No).await {
        Err(Error::ModeConflict(message)) => assert!(message.contains("shared"), "{message}"),
        other => panic!("expected a mode conflict, got {other:?}"),
    }
    // A read/write name is not a semaphore.
    let as_semaphore = c
        .lock_with("db", Wait::No, LockMode::Semaphore { limit: 2 })
        .await;
    assert!(
        matches!(as_semaphore, Err(Error::ModeConflict(_))),
        "{as_semaphore:?}"
    );
    assert_eq!(c.held_mode("db"), None);

    // A writer queues behind the readers and gets it when both release.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move { c.lock("db", Wait::Forever).await })
    };
    let started = Instant::now();
    while lock_info(&cluster, "db").await.unwrap().waiters.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.release("db").await.unwrap();
    assert!(!a.holds("db"));
    assert!(!writer.is_finished());
    b.release("db").await.unwrap();
    let gc = writer.await.unwrap().unwrap();
    assert_eq!(gc.mode, LockMode::Exclusive);
    assert!(gc.token > ga.token.max(gb.token));

    // A shared wait given up by dropping it leaves the queue (its cancel
    // is asked in the mode it waited in, or it would be refused).
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        a.lock_with("db", Wait::Forever, LockMode::Shared),
    )
    .await;
    assert!(gave_up.is_err());
    let started = Instant::now();
    loop {
        let info = lock_info(&cluster, "db").await.unwrap();
        if info.waiters.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dropped shared wait stayed queued: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.release("db").await.unwrap();
    assert!(lock_info(&cluster, "db").await.is_none());
    assert!(!a.holds("db"), "the cancelled wait was granted and kept");
    for session in [a, b, c] {
        session.close().await.unwrap();
    }
}

/// Holders of every mode, and the queue, survive the leader's crash with
/// their tokens; the semaphore still admits no more than its limit, and the
/// next grants come with larger tokens from the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_and_semaphore_holds_survive_a_leader_crash() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(
            client
                .open_session(SessionOptions::default())
                .await
                .unwrap(),
        );
    }
    let semaphore = LockMode::Semaphore { limit: 2 };
    let r1 = sessions[0]
        .lock_with("rw", Wait::No, LockMode::Shared)
        .await
        .unwrap();
    let r2 = sessions[1]
        .lock_with("rw", Wait::No, LockMode::Shared)
        .await
        .unwrap();
    let s1 = sessions[2]
        .lock_with("pool", Wait::No, semaphore)
        .await
        .unwrap();
    let s2 = sessions[3]
        .lock_with("pool", Wait::No, semaphore)
        .await
        .unwrap();
    let queued = {
        let s = sessions[4].clone();
        tokio::spawn(async move { s.lock_with("pool", Wait::Forever, semaphore).await })
    };
    let started = Instant::now();
    while lock_info(&cluster, "pool")
        .await
        .unwrap()
        .waiters
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill(leader);
    cluster.wait_for_leader(Duration::from_secs(10)).await;

    let tokens = |info: &LockInfo| -> Vec<u64> {
        let mut t: Vec<u64> = info.holders.iter().map(|h| h.fencing_token).collect();
        t.sort();
        t
    };
    let rw = lock_info(&cluster, "rw").await.unwrap();
    assert_eq!(tokens(&rw), {
        let mut t = vec![r1.token, r2.token];
        t.sort();
        t
    });
    let pool = lock_info(&cluster, "pool").await.unwrap();
    assert_eq!(
        (pool.limit, pool.holders.len(), pool.waiters.len()),
        (2, 2, 1)
    );
    assert_eq!(tokens(&pool), {
        let mut t = vec![s1.token, s2.token];
        t.sort();
        t
    });
    assert!(
        !queued.is_finished(),
        "a third holder was admitted: {pool:?}"
    );

    // Freeing a slot grants the waiter, through the new leader.
    sessions[2].release("pool").await.unwrap();
    let s3 = tokio::time::timeout(Duration::from_secs(20), queued)
        .await
        .expect("the waiter is granted after the failover")
        .unwrap()
        .unwrap();
    assert!(s3.token > s1.token.max(s2.token));
    let pool = lock_info(&cluster, "pool").await.unwrap();
    assert_eq!(pool.holders.len(), 2);
    // A writer after the failover waits for both readers and outranks them.
    sessions[0].release("rw").await.unwrap();
    sessions[1].release("rw").await.unwrap();
    let w = sessions[2]
        .lock("rw", Wait::For(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(w.token > r1.token.max(r2.token));
}
