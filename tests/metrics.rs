//! The metrics endpoint serves the documented series, and they move when
//! the cluster does work; and no node's page carries a secret (a session
//! secret, a token, private key material).

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

/// The whole answer to `GET /metrics` at `addr`, headers included.
fn metrics_page(addr: &str) -> Vec<u8> {
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    write!(sock, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut page = Vec::new();
    sock.read_to_end(&mut page).unwrap();
    page
}

/// One form a secret may take in a page: what it is, and its bytes.
struct Form {
    what: String,
    bytes: Vec<u8>,
}

/// A hex secret as text (either case) and as the raw bytes it encodes.
fn hex_forms(what: &str, hex: &str) -> Vec<Form> {
    let raw: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("a hex secret"))
        .collect();
    vec![
        Form {
            what: format!("{what} (hex)"),
            bytes: hex.to_ascii_lowercase().into_bytes(),
        },
        Form {
            what: format!("{what} (upper-case hex)"),
            bytes: hex.to_ascii_uppercase().into_bytes(),
        },
        Form {
            what: format!("{what} (raw bytes)"),
            bytes: raw,
        },
    ]
}

/// A private key's PEM marker and each line of its base64 body: any of
/// them in a page means key material got there.
fn key_forms(path: &std::path::Path) -> Vec<Form> {
    let pem = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let body = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16);
    let mut forms: Vec<Form> = body
        .map(|line| Form {
            what: format!("a line of {name}"),
            bytes: line.as_bytes().to_vec(),
        })
        .collect();
    assert!(!forms.is_empty(), "{name} has no body");
    forms.push(Form {
        what: "a PEM private key marker".into(),
        bytes: b"PRIVATE KEY".to_vec(),
    });
    forms
}

/// What of `forms` appears in `page`.
fn leaks(page: &[u8], forms: &[Form]) -> Vec<String> {
    forms
        .iter()
        .filter(|f| page.windows(f.bytes.len()).any(|w| w == f.bytes))
        .map(|f| f.what.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metrics_page_carries_a_secret() {
    use raftlock_proto::v1::lock_client::LockClient;
    use raftlock_proto::v1::{AcquireRequest, KeepAliveRequest, OpenSessionRequest};

    let _serial = serial().await;
    let cluster = Cluster::start_with_metrics(3, &[]).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let credentials = cluster.credentials().expect("a secure cluster").clone();
    let mut raw = LockClient::new(cluster.client_port(leader).await);
    let mut forms = Vec::new();
    for i in 0..3u64 {
        let open = OpenSessionRequest {
            ttl_ms: 60_000,
            label: format!("metrics-{i}"),
            ..Default::default()
        };
        let session = raw.open_session(open).await.unwrap().into_inner();
        let (id, secret) = (session.session_id, session.session_secret);
        assert!(secret.len() >= 32, "a short secret: {}", secret.len());
        let acquire = AcquireRequest {
            session_id: id.clone(),
            session_secret: secret.clone(),
            seq: 1,
            name: format!("metrics/secret/{i}"),
            ..Default::default()
        };
        assert!(raw.acquire(acquire).await.unwrap().into_inner().acquired);
        let keep = KeepAliveRequest {
            session_id: id,
            session_secret: secret.clone(),
        };
        raw.keep_alive(keep).await.unwrap();
        forms.extend(hex_forms(&format!("session {i}'s secret"), &secret));
    }
    forms.push(Form {
        what: "admin's token".into(),
        bytes: credentials.admin_token.clone().into_bytes(),
    });
    let keys = std::fs::read_dir(&credentials.dir).unwrap().flatten();
    let keys: Vec<_> = keys
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-key.pem"))
        .collect();
    // The CA's, three nodes', admin's client certificate's.
    assert!(keys.len() >= 5, "{keys:?}");
    for key in &keys {
        forms.extend(key_forms(key));
    }
    // Past a sampling interval, so the page shows the sessions and locks.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for id in cluster.ids() {
        let page = metrics_page(&cluster.metrics_addr(id));
        let text = String::from_utf8_lossy(&page);
        assert!(
            text.contains("raftlock_term"),
            "node {id}: not a metrics page: {text}"
        );
        assert_eq!(leaks(&page, &forms), Vec::<String>::new(), "node {id}");
        // The search does find each form when it is there.
        for form in &forms {
            let mut planted = page.clone();
            planted.extend_from_slice(b"\nleak ");
            planted.extend_from_slice(&form.bytes);
            assert!(
                leaks(&planted, &forms).contains(&form.what),
                "{}",
                form.what
            );
        }
    }
    // The pages were looked at while the sessions were there to be seen.
    let series = scrape(&cluster.metrics_addr(leader));
    assert_eq!(value(&series, "raftlock_sessions"), 3.0);
}
