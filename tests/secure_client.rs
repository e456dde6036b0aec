//! Clients against a real secure node (TLS with a CA, an auth file of
//! principals): the Rust client locks and watches with a token, a wrong
//! token is refused at once rather than retried, a read-only token may not
//! lock; and the `raftlock` command does the same with `--ca` and
//! `--auth-token-file`, and with nothing but a profile directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use raftlock_client::{
    write_profile, Client, ClientOptions, Credentials, Error, SessionOptions, Token, Transport,
    Wait, WatchEvent,
};
use raftlock_tls::{Ca, CredentialsDir};

const BIN: &str = env!("CARGO_BIN_EXE_raftlock");

/// One node at a time: each test starts a server process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A one-node secure cluster and the credentials to reach it.
struct SecureNode {
    dir: tempfile::TempDir,
    creds: CredentialsDir,
    endpoint: String,
    server: Child,
}

/// The principals in the node's auth file: name, role.
const PRINCIPALS: [(&str, &str); 3] = [("admin", "admin"), ("worker", "lock"), ("viewer", "read")];

impl SecureNode {
    async fn start() -> SecureNode {
        let dir = tempfile::tempdir().unwrap();
        let creds = CredentialsDir::new(dir.path().join("credentials"));
        let ca = Ca::create(&creds, 30).unwrap();
        ca.issue_node(1, &[], 30, &creds).unwrap();
        let auth_file = dir.path().join("auth.toml");
        for (name, role) in PRINCIPALS {
            let token = auth_add(&auth_file, name, role);
            write_token(&dir.path().join(format!("{name}.token")), &token);
        }
        let [client_port, peer_port] = free_ports();
        let endpoint = format!("127.0.0.1:{client_port}");
        let peer = format!("127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let server = Command::new(BIN)
            .args(["server", "--id", "1", "--listen", &endpoint])
            .args([
                "--peer-listen",
                &peer,
                "--peers",
                &format!("1={peer}/{endpoint}"),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(creds.node_cert(1))
            .arg("--tls-key")
            .arg(creds.node_key(1))
            .arg("--tls-ca")
            .arg(creds.ca_cert())
            .arg("--auth-file")
            .arg(&auth_file)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start raftlock server");
        let node = SecureNode {
            dir,
            creds,
            endpoint,
            server,
        };
        node.wait_for_leader().await;
        node
    }

    fn token_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.token"))
    }

    /// A client presenting `name`'s token.
    fn client(&self, name: &str) -> Client {
        let token = raftlock_client::read_token_file(&self.token_file(name)).unwrap();
        self.client_with_token(&token)
    }

    fn client_with_token(&self, token: &str) -> Client {
        let options = ClientOptions {
            retry_for: Duration::from_secs(30),
            transport: Transport::Tls(Credentials {
                ca: self.creds.ca_cert(),
                token: Some(Token::new(token)),
                identity: None,
            }),
            ..ClientOptions::default()
        };
        Client::with_options([self.endpoint.clone()], options).unwrap()
    }

    async fn wait_for_leader(&self) {
        let client = self.client("admin");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let status = client
                .node_status(&self.endpoint, Duration::from_secs(1))
                .await;
            if status.as_ref().is_ok_and(|s| s.has_leader) {
                return;
            }
            let log = std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default();
            assert!(Instant::now() < until, "no leader: {status:?}\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `raftlock ARGS` against this node, with no RAFTLOCK_* credentials
    /// in its environment except `env`, and no profile unless `env` names one.
    fn raftlock(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut command = Command::new(BIN);
        command.args(args).env_remove("RAFTLOCK_ENDPOINTS");
        for name in [
            "RAFTLOCK_CA",
            "RAFTLOCK_AUTH_TOKEN_FILE",
            "RAFTLOCK_CERT",
            "RAFTLOCK_KEY",
        ] {
            command.env_remove(name);
        }
        command
            .env_remove("RAFTLOCK_INSECURE")
            .env("RAFTLOCK_CONFIG_DIR", self.dir.path().join("no-profile"));
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run raftlock")
    }
}

impl Drop for SecureNode {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Adds a principal with `raftlock auth add`; its token.
fn auth_add(file: &Path, name: &str, role: &str) -> String {
    let out = Command::new(BIN)
        .args(["auth", "add", name, "--role", role, "--file"])
        .arg(file)
        .output()
        .expect("run raftlock auth add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write_token(path: &Path, token: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, token).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Two distinct free ports: both listeners are held until both are read,
/// so the second bind cannot hand out the first port again.
fn free_ports() -> [u16; 2] {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    [
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_locks_and_watches_and_a_wrong_one_is_refused_at_once() {
    let _serial = SERIAL.lock().await;
    let node = SecureNode::start().await;
    let client = node.client("worker");
    let session = client
        .open_session(SessionOptions::default())
        .await
        .unwrap();
    let grant = session.lock("secure-a", Wait::No).await.unwrap();
    assert!(grant.token > 0);
    let mut watch = client.watch("secure-");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(WatchEvent::Reset { .. })))),
        "{first:?}"
    );
    session.release("secure-a").await.unwrap();
    session.close().await.unwrap();

    let wrong = node.client_with_token("rlt_not_a_token_of_this_cluster");
    let started = Instant::now();
    let refused = wrong.open_session(SessionOptions::default()).await;
    let Err(error @ Error::Unauthenticated(_)) = refused else {
        panic!("{:?}", refused.err())
    };
    assert!(!error.to_string().contains("rlt_not_a_token"), "{error}");
    // Refused, not retried for the client's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_may_look_but_not_lock() {
    let _serial = SERIAL.lock().await;
    let node = SecureNode::start().await;
    let viewer = node.client("viewer");
    assert!(viewer.list_locks("", 10).await.is_ok());
    let refused = viewer.open_session(SessionOptions::default()).await;
    assert!(
        matches!(&refused, Err(Error::PermissionDenied(m)) if m.contains("viewer")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_connects_with_flags_or_with_only_a_profile() {
    let _serial = SERIAL.lock().await;
    let node = SecureNode::start().await;
    let ca = node.creds.ca_cert();
    let token = node.token_file("worker");
    let (ca_arg, token_arg) = (ca.to_str().unwrap(), token.to_str().unwrap());
    let at = ["--endpoints", node.endpoint.as_str()];
    let flags = ["--ca", ca_arg, "--auth-token-file", token_arg];

    let status = node.raftlock(&[&["status"][..], &at, &flags].concat(), &[]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let lock = [&["lock"][..], &at, &flags, &["cli-a", "--", "true"]].concat();
    let out = node.raftlock(&lock, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Only a profile directory, as `raftlock dev` writes one.
    let profile = node.dir.path().join("profile");
    let admin = raftlock_client::read_token_file(&node.token_file("admin")).unwrap();
    write_profile(&profile, &ca, &admin, None).unwrap();
    let env = [("RAFTLOCK_CONFIG_DIR", profile.as_path())];
    let status = node.raftlock(&[&["status"][..], &at].concat(), &env);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let out = node.raftlock(
        &[&["lock"][..], &at, &["cli-b", "--", "true"]].concat(),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A token the cluster does not know: refused, exit 77, nothing ran.
    let wrong = node.dir.path().join("wrong.token");
    write_token(&wrong, "rlt_wrong_token_value");
    let wrong_flags = ["--ca", ca_arg, "--auth-token-file", wrong.to_str().unwrap()];
    let out = node.raftlock(
        &[&["lock"][..], &at, &wrong_flags, &["cli-c", "--", "true"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(!stderr(&out).contains("rlt_wrong_token_value"));
    // The gateway checks its credentials before it serves.
    let zmq = format!("tcp://127.0.0.1:{}", free_ports()[0]);
    let gateway = [&["gateway", "--zmq", zmq.as_str()][..], &at, &wrong_flags].concat();
    let out = node.raftlock(&gateway, &[]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );
    // A read token: permission denied, the same exit status.
    let viewer = node.token_file("viewer");
    let viewer_flags = [
        "--ca",
        ca_arg,
        "--auth-token-file",
        viewer.to_str().unwrap(),
    ];
    let out = node.raftlock(
        &[&["lock"][..], &at, &viewer_flags, &["cli-d", "--", "true"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
}
