//! A node that cannot use its storage exits non-zero (so a supervisor
//! restarts it) rather than lingering unable to serve: when a sync fails
//! at runtime, and when what is on disk cannot be read at startup. Each
//! test runs one real `raftlock server --insecure` process. (Damaged
//! bytes on disk are crates/raftlock-node/tests/hostile_storage.rs.)
//!
//! A sync is made to fail by moving the sled directory away while the node
//! runs: sled keeps writing through its open files, but the sync of the
//! directory's entries (by path) fails. That works as root too, where
//! taking permissions away does not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use raftlock_client::{Client, ClientOptions, SessionOptions, Transport};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_raftlock");
/// `raftlock_node::fail_stop::EXIT_STORAGE_FAILED` (sysexits' EX_IOERR).
const EXIT_STORAGE_FAILED: i32 = 74;
/// What a Rust panic that reaches `main` exits with.
const EXIT_PANIC: i32 = 101;

/// The processes share two cores with other tests: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct OneNode {
    dir: TempDir,
    addr: String,
    child: Child,
}

impl OneNode {
    fn start(dir: TempDir, extra_args: &[&str]) -> OneNode {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = spawn(dir.path(), &addr, extra_args);
        OneNode { dir, addr, child }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    async fn client(&self) -> Client {
        Client::with_options(
            vec![self.addr.clone()],
            ClientOptions {
                retry_for: Duration::from_secs(2),
                transport: Transport::Plain,
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    /// Waits until the node has elected itself and takes writes.
    async fn wait_until_serving(&self) {
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .open_session(SessionOptions::default())
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "never served:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status, if the process ends within `within`.
    async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for OneNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, addr: &str, extra_args: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .unwrap();
    Command::new(BIN)
        .args(["server", "--insecure", "--id", "1", "--listen", addr])
        .args(["--peers", &format!("1={addr}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra_args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Makes the node's next sync fail (see the module docs).
fn break_syncs(node: &OneNode) {
    std::fs::rename(node.data().join("sled"), node.data().join("sled-moved")).unwrap();
}

/// One write after `break_syncs`; it may fail or hang, the node must exit.
fn write_in_background(node: &OneNode) {
    let addr = node.addr.clone();
    tokio::spawn(async move {
        let options = ClientOptions {
            retry_for: Duration::from_secs(1),
            transport: Transport::Plain,
            ..ClientOptions::default()
        };
        if let Ok(client) = Client::with_options(vec![addr], options) {
            let _ = client.open_session(SessionOptions::default()).await;
        }
    });
}

#[tokio::test]
async fn a_failed_sync_stops_the_node_with_the_storage_exit_status() {
    let _serial = SERIAL.lock().await;
    // Without the early acknowledgement, the failed sync reaches Raft as a
    // storage error, and Raft stops.
    let mut node = OneNode::start(TempDir::new().unwrap(), &["--no-early-ack"]);
    node.wait_until_serving().await;
    break_syncs(&node);
    write_in_background(&node);
    let status = node.exit_within(Duration::from_secs(10)).await;
    let log = node.log();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(EXIT_STORAGE_FAILED),
        "{status:?}\n{log}"
    );
    assert!(log.contains("storage failed"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // The failed sync left its mark: the node refuses to start again on
    // this data, however the directory is put back.
    std::fs::rename(node.data().join("sled-moved"), node.data().join("sled")).unwrap();
    node.child = spawn(node.dir.path(), &node.addr, &[]);
    let status = node.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", node.log());
    assert!(node.log().contains("SYNC-FAILED"), "{}", node.log());
}

#[tokio::test]
async fn a_failed_sync_after_an_early_acknowledgement_aborts() {
    let _serial = SERIAL.lock().await;
    let mut node = OneNode::start(TempDir::new().unwrap(), &[]);
    node.wait_until_serving().await;
    break_syncs(&node);
    write_in_background(&node);
    let status = node.exit_within(Duration::from_secs(10)).await;
    let log = node.log();
    let status = status.unwrap_or_else(|| panic!("still running:\n{log}"));
    assert!(!status.success(), "{log}");
    assert_ne!(status.code(), Some(EXIT_PANIC), "{log}");
}
