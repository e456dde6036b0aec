//! The metrics endpoint serves the documented series, and they move when
//! the cluster does work.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use raftlock_client::{SessionOptions, Wait};
use support::{serial, Cluster};

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
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let extra = ["--metrics-listen", &metrics_addr, "--snapshot-every", "20"];
    let cluster = Cluster::start_with(1, &extra).await;
    let session = cluster
        .client()
        .open_session(SessionOptions::default())
        .await
        .unwrap_or_else(|e| panic!("no session: {e}\n{}", cluster.logs()));
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
}
