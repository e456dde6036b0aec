//! Power cuts: a node runs under the power-loss shim (crates/raftlock-powerloss),
//! is SIGKILLed and has its data dir put back to what its fsyncs made
//! durable, as a reboot after a power cut would; it must then start
//! cleanly and still hold every lock it acknowledged, with the same tokens.
//! A kill -9 alone cannot test this: the page cache keeps unsynced writes.
//!
//! The node runs secure, as in production (TLS on both ports, a token per
//! client): the shim then sits under rustls and the auth file as well,
//! and must still pass socket writes and credential reads straight
//! through.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raftlock_client::{Client, ClientOptions, Credentials, SessionOptions, Token, Transport, Wait};
use raftlock_powerloss::{build_shim, Image, IMAGE_ENV, ROOT_ENV};

/// Runs `raftlock ARGS` to completion; its stdout, trimmed.
fn raftlock(args: &[&str]) -> String {
    let out = Command::new(support::BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "raftlock {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Node 1's credentials, made as an operator would (`raftlock certs`,
/// `raftlock auth`), outside the data dir: a power cut does not touch
/// them, as they were written long before.
struct NodeCredentials {
    dir: PathBuf,
    /// The workload's bearer token (principal `locker`, role lock).
    token: String,
}

impl NodeCredentials {
    fn create(dir: PathBuf) -> NodeCredentials {
        let root = dir.to_string_lossy().to_string();
        raftlock(&["certs", "init", "--dir", &root]);
        raftlock(&["certs", "node", "1", "--dir", &root]);
        let auth = dir.join("auth.toml").to_string_lossy().to_string();
        let token = raftlock(&["auth", "add", "locker", "--role", "lock", "--file", &auth]);
        NodeCredentials { dir, token }
    }

    fn server_args(&self) -> Vec<OsString> {
        let file = |name: &str| self.dir.join(name).into_os_string();
        vec![
            "--tls-cert".into(),
            file("node-1.pem"),
            "--tls-key".into(),
            file("node-1-key.pem"),
            "--tls-ca".into(),
            file("ca.pem"),
            "--auth-file".into(),
            file("auth.toml"),
        ]
    }

    fn transport(&self) -> Transport {
        Transport::Tls(Credentials {
            ca: self.dir.join("ca.pem"),
            token: Some(Token::new(self.token.clone())),
            identity: None,
        })
    }
}

/// One single-node cluster whose data dir lives under the shim.
struct PoweredNode {
    dir: tempfile::TempDir,
    shim: PathBuf,
    credentials: NodeCredentials,
    addr: String,
    peer_addr: String,
    extra: Vec<String>,
    child: Option<Child>,
}

impl PoweredNode {
    fn start(extra: &[&str]) -> PoweredNode {
        let target = Path::new(support::BIN).ancestors().nth(2).unwrap();
        let shim = build_shim(&target.join("powerloss-shim")).expect("build the shim");
        // Both held until both are chosen, so they differ.
        let listeners = [0, 1].map(|_| TcpListener::bind("127.0.0.1:0").unwrap());
        let [port, peer_port] = listeners.map(|l| l.local_addr().unwrap().port());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let credentials = NodeCredentials::create(dir.path().join("credentials"));
        let mut node = PoweredNode {
            dir,
            shim,
            credentials,
            addr: format!("127.0.0.1:{port}"),
            peer_addr: format!("127.0.0.1:{peer_port}"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        node.boot();
        node
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("image")
    }

    fn boot(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .unwrap();
        let child = Command::new(support::BIN)
            .args(["server", "--id", "1", "--listen", &self.addr])
            .args(["--peer-listen", &self.peer_addr])
            .args(["--peers", &format!("1={}/{}", self.peer_addr, self.addr)])
            .args(self.credentials.server_args())
            .arg("--data-dir")
            .arg(self.data())
            .args(&self.extra)
            .env("LD_PRELOAD", &self.shim)
            .env(ROOT_ENV, self.data())
            .env(IMAGE_ENV, self.image())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, then only what was fsynced is left; then boot again.
    fn cut_power_and_reboot(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        Image::new(self.image()).restore(&self.data()).unwrap();
        std::fs::remove_dir_all(self.image()).unwrap();
        self.boot();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    fn client(&self) -> Client {
        self.client_over(self.credentials.transport(), Duration::from_secs(20))
    }

    fn client_over(&self, transport: Transport, retry_for: Duration) -> Client {
        let options = ClientOptions {
            retry_for,
            transport,
            ..ClientOptions::default()
        };
        Client::with_options([self.addr.clone()], options).unwrap()
    }

    /// The node came back secure: plain text gets nothing from it.
    async fn assert_plain_text_refused(&self) {
        let plain = self.client_over(Transport::Plain, Duration::from_secs(1));
        let answer = plain.list_locks("", 1).await;
        assert!(answer.is_err(), "a plain-text client read the lock table");
    }

    async fn locks(&self) -> BTreeMap<String, u64> {
        let (locks, truncated) = match self.client().list_locks("", 100_000).await {
            Ok(reply) => reply,
            Err(e) => panic!("after the power cut: {e}\n{}", self.log()),
        };
        assert!(!truncated);
        locks
            .into_iter()
            .filter_map(|l| Some((l.name, l.holder?.fencing_token)))
            .collect()
    }
}

impl Drop for PoweredNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Takes `count` locks named `prefix-N` in one long-lived session, releases
/// every third, and returns what should be held: name -> token.
async fn hold_locks(node: &PoweredNode, prefix: &str, count: usize) -> BTreeMap<String, u64> {
    let options = SessionOptions {
        ttl: Duration::from_secs(3600),
        ..SessionOptions::default()
    };
    let session = node.client().open_session(options).await.unwrap();
    let mut held = BTreeMap::new();
    for i in 0..count {
        let grant = session
            .lock(&format!("{prefix}-{i:05}"), Wait::No)
            .await
            .unwrap();
        held.insert(grant.name, grant.token);
    }
    for i in (0..count).step_by(3) {
        let name = format!("{prefix}-{i:05}");
        session.release(&name).await.unwrap();
        held.remove(&name);
    }
    // The session is not closed: its locks stay held through the cut.
    std::mem::forget(session);
    held
}

#[tokio::test]
async fn acknowledged_locks_survive_a_power_cut() {
    let _serial = support::serial().await;
    let mut node = PoweredNode::start(&[]);
    let held = hold_locks(&node, "results.h5", 30).await;
    node.cut_power_and_reboot();
    assert_eq!(node.locks().await, held, "\n{}", node.log());
    node.assert_plain_text_refused().await;

    // And a second time, on top of what the first reboot recovered.
    let more = hold_locks(&node, "second", 10).await;
    node.cut_power_and_reboot();
    let mut expected = held;
    expected.extend(more);
    assert_eq!(node.locks().await, expected, "\n{}", node.log());
}

#[tokio::test]
async fn pages_in_sled_blob_files_survive_a_power_cut() {
    let _serial = support::serial().await;
    // Long names and frequent snapshots make sled pages larger than its
    // blob threshold, which sled writes to files of their own.
    let mut node = PoweredNode::start(&["--snapshot-every", "200"]);
    let prefix = "x".repeat(400);
    let held = hold_locks(&node, &prefix, 1500).await;
    let blobs = std::fs::read_dir(node.data().join("sled/blobs"))
        .unwrap()
        .count();
    assert!(
        blobs > 0,
        "the workload made no blob files: it tests nothing"
    );
    node.cut_power_and_reboot();
    assert_eq!(node.locks().await, held, "\n{}", node.log());
}
