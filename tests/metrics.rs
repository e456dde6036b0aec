//! The metrics endpoint serves the documented series, and they move when
//! the cluster does work.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use raftlock_client::{Client, SessionOptions, Wait};
use support::serial;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`, parsed into series (name with labels) -> value.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    write!(sock, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    sock.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series:?} in {:?}", m.keys().collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_moving_series() {
    let _serial = serial().await;
    let dir = tempfile::TempDir::new().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let peer_addr = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("node.log");
    let mut node = std::process::Command::new(support::BIN)
        .args([
            "server",
            "--id",
            "1",
            "--listen",
            &addr,
            "--peer-listen",
            &peer_addr,
            "--peers",
            &format!("1={peer_addr}/{addr}"),
            "--insecure",
        ])
        .args(["--metrics-listen", &metrics_addr, "--snapshot-every", "20"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = Client::new([addr.clone()]).unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let session = loop {
        match client.open_session(SessionOptions::default()).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() >= until => {
                let exited = node.try_wait().unwrap();
                let _ = node.kill();
                panic!(
                    "single node never served: {e}; process exited: {exited:?}; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    session.lock("m/0", Wait::No).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = scrape(&metrics_addr);

    for i in 1..=30 {
        session.lock(&format!("m/{i}"), Wait::No).await.unwrap();
    }
    session.release("m/0").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = scrape(&metrics_addr);

    assert_eq!(value(&after, "raftlock_is_leader"), 1.0);
    assert_eq!(value(&after, "raftlock_role{role=\"leader\"}"), 1.0);
    assert!(value(&after, "raftlock_term") >= 1.0);
    assert_eq!(
        value(&after, "raftlock_grants_total") - value(&before, "raftlock_grants_total"),
        30.0
    );
    assert_eq!(value(&after, "raftlock_releases_total"), 1.0);
    assert_eq!(value(&after, "raftlock_locks_held"), 30.0);
    assert_eq!(value(&after, "raftlock_sessions"), 1.0);
    assert_eq!(value(&after, "raftlock_waiters"), 0.0);
    assert!(value(&after, "raftlock_applied_index") > value(&before, "raftlock_applied_index"));
    assert!(value(&after, "raftlock_snapshots_total") >= 1.0);
    assert!(value(&after, "raftlock_snapshot_bytes") > 0.0);
    assert!(
        value(&after, "raftlock_fsync_seconds_count")
            > value(&before, "raftlock_fsync_seconds_count")
    );
    assert!(
        value(&after, "raftlock_rpc_seconds_count{rpc=\"acquire\"}")
            >= value(&before, "raftlock_rpc_seconds_count{rpc=\"acquire\"}") + 30.0
    );
    session.close().await.unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
}
