//! A secure cluster (TLS on both ports, authentication) with real
//! processes and raw gRPC clients: what it refuses, to whom, and that the
//! refusals leave it unharmed.
//!
//! - transport: plain text, a client that trusts another CA;
//! - the peer port: no handshake without a certificate from the CA, and
//!   membership changes only by a node's or an admin's certificate (a
//!   token alone is refused, in the CLI before anything is sent);
//! - Raft RPCs: only from member nodes' certificates, refused before the
//!   payload is decoded (a stranger's garbage does not move the term);
//! - tokens: missing or wrong, roles, lock-name prefixes, another
//!   principal's session;
//! - node certificates act as admins (the removal guard's status calls);
//! - SIGHUP reloads the auth file; tokens and secrets stay out of the logs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use raftlock_chaos::{LocalCluster, Nodes};
use raftlock_proto::raft::raft_client::RaftClient;
use raftlock_proto::raft::RaftMessage;
use raftlock_proto::v1::cluster_client::ClusterClient;
use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::*;
use support::{serial, tls_channel, with_token, BIN};
use tonic::transport::Channel;
use tonic::Code;

/// admin's client certificate (file stem in the credentials directory).
const ADMIN_CERT: &str = "client-admin";

/// A secure 3-node cluster with a leader, and its credentials.
struct Secure {
    cluster: LocalCluster,
    creds: PathBuf,
    admin: String,
}

impl Secure {
    async fn start() -> Secure {
        let cluster = LocalCluster::start_secure(Path::new(BIN), 3, &[]).expect("start");
        let credentials = cluster.credentials().expect("secure").clone();
        let secure = Secure {
            creds: credentials.dir.clone(),
            admin: credentials.admin_token.clone(),
            cluster,
        };
        secure.wait_for_leader().await;
        secure
    }

    fn ca(&self) -> PathBuf {
        self.creds.join("ca.pem")
    }

    /// A TLS channel to node `id`'s client port, without a certificate.
    async fn client_port(&self, id: u64) -> Channel {
        let addr = self.cluster.endpoint(id);
        tls_channel(&addr, &self.ca(), None).await.expect("TLS")
    }

    /// A TLS channel to node `id`'s peer port presenting `cert` (the file
    /// stem in the credentials directory, e.g. `node-9`), or nothing.
    async fn peer_port(&self, id: u64, cert: Option<&str>) -> Channel {
        let files = cert.map(|c| {
            (
                self.creds.join(format!("{c}.pem")),
                self.creds.join(format!("{c}-key.pem")),
            )
        });
        let identity = files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let addr = self.cluster.peer_addr(id);
        tls_channel(&addr, &self.ca(), identity).await.expect("TLS")
    }

    async fn status(&self, id: u64) -> Option<StatusResponse> {
        let channel = tls_channel(&self.cluster.endpoint(id), &self.ca(), None).await;
        let mut client = LockClient::new(channel.ok()?);
        let reply = client.status(with_token(StatusRequest {}, &self.admin));
        Some(reply.await.ok()?.into_inner())
    }

    /// The leader's id, once every node agrees on one.
    async fn wait_for_leader(&self) -> u64 {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let mut leaders = Vec::new();
            for id in self.cluster.ids() {
                leaders.push(self.status(id).await.filter(|s| s.has_leader));
            }
            if let [Some(first), rest @ ..] = leaders.as_slice() {
                if rest
                    .iter()
                    .all(|s| s.as_ref().map(|s| s.leader_id) == Some(first.leader_id))
                {
                    return first.leader_id;
                }
            }
            assert!(
                Instant::now() < until,
                "no leader:\n{}",
                self.cluster.logs(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `raftlock ARGS` in the credentials directory; its stdout.
    fn raftlock(&self, args: &[&str]) -> String {
        let out = Command::new(BIN).args(args).output().expect("run raftlock");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "raftlock {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn auth_file(&self) -> String {
        self.creds.join("auth.toml").to_string_lossy().into_owned()
    }

    /// Adds a principal to the auth file (nodes not told yet); its token.
    fn add_principal(&self, name: &str, role: &str, prefixes: &[&str]) -> String {
        let file = self.auth_file();
        let mut args = vec!["auth", "add", name, "--role", role, "--file", &file];
        for prefix in prefixes {
            args.extend(["--prefix", prefix]);
        }
        self.raftlock(&args)
    }

    fn sighup_all(&self) {
        for id in self.cluster.ids() {
            self.cluster.signal(id, libc::SIGHUP).expect("SIGHUP");
        }
    }

    /// Waits until every node answers `token`'s Status with `want`.
    async fn wait_for_token(&self, token: &str, want: Code) {
        let until = Instant::now() + Duration::from_secs(10);
        for id in self.cluster.ids() {
            let mut client = LockClient::new(self.client_port(id).await);
            loop {
                let got = match client.status(with_token(StatusRequest {}, token)).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                if got == want {
                    break;
                }
                assert!(Instant::now() < until, "node {id}: {got:?}, not {want:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Every node's log, whole.
    fn all_logs(&self) -> String {
        let ids = self.cluster.ids();
        let logs = ids.iter().map(|id| self.cluster.log_path(*id));
        logs.map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn garbage() -> RaftMessage {
    RaftMessage {
        data: vec![0xde, 0xad, 0xbe, 0xef].into(),
    }
}

/// Plain text to `addr`'s Status: an error (or nothing) within 5 s.
async fn plain_status(addr: &str) -> Result<StatusResponse, String> {
    let call = async {
        let mut client = LockClient::connect(format!("http://{addr}"))
            .await
            .map_err(|e| e.to_string())?;
        let reply = client.status(StatusRequest {}).await;
        reply.map(|r| r.into_inner()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err("no answer".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_and_leave_the_cluster_unharmed() {
    let _serial = serial().await;
    let secure = Secure::start().await;
    let leader = secure.wait_for_leader().await;
    let term = secure.status(leader).await.unwrap().term;

    // Plain text, on either port.
    for addr in [secure.cluster.endpoint(1), secure.cluster.peer_addr(1)] {
        assert!(
            plain_status(&addr).await.is_err(),
            "{addr} answered plain text"
        );
    }
    // A client trusting another CA does not trust the nodes.
    let other = tempfile::TempDir::new().unwrap();
    let other_dir = other.path().to_string_lossy().into_owned();
    secure.raftlock(&["certs", "init", "--dir", &other_dir]);
    let other_ca = other.path().join("ca.pem");
    let connected = tls_channel(&secure.cluster.endpoint(1), &other_ca, None).await;
    assert!(connected.is_err(), "handshake with the wrong CA succeeded");

    // Raft RPCs: a node certificate for a non-member, a client
    // certificate (with no certificate the handshake fails: see
    // the_peer_port_requires_a_certificate). Garbage payloads: the check
    // comes first.
    let creds = secure.creds.to_string_lossy().into_owned();
    secure.raftlock(&["certs", "node", "9", "--dir", &creds]);
    secure.raftlock(&["certs", "client", "mallory", "--dir", &creds]);
    let cases = [
        (Some("node-9"), "node certificate for 9: not a member"),
        (Some("client-mallory"), "Raft RPCs need a node certificate"),
    ];
    for id in secure.cluster.ids() {
        for (cert, why) in cases {
            let mut raft = RaftClient::new(secure.peer_port(id, cert).await);
            let calls = [
                raft.append_entries(garbage()).await,
                raft.vote(garbage()).await,
                raft.install_snapshot(garbage()).await,
                raft.pre_vote(garbage()).await,
            ];
            for reply in calls {
                let status = reply.expect_err("a stranger's Raft RPC was served");
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "{cert:?}: {status:?}"
                );
                assert_eq!(status.message(), why);
            }
        }
    }
    // Raft is not served on the client port, whoever asks.
    let mut raft = RaftClient::new(secure.client_port(1).await);
    let refused = raft.vote(with_token(garbage(), &secure.admin)).await;
    assert_eq!(code(refused), Code::PermissionDenied);

    // Unharmed: same leader, same term, and a lock still works.
    assert_eq!(secure.wait_for_leader().await, leader);
    assert_eq!(secure.status(leader).await.unwrap().term, term);
    let mut client = LockClient::new(secure.client_port(leader).await);
    let open = OpenSessionRequest {
        ttl_ms: 10_000,
        ..Default::default()
    };
    let session = client.open_session(with_token(open, &secure.admin)).await;
    let session = session.expect("open a session").into_inner();
    let acquire = AcquireRequest {
        session_id: session.session_id,
        session_secret: session.session_secret,
        seq: 1,
        name: "after/strangers".into(),
        ..Default::default()
    };
    let acquired = client.acquire(with_token(acquire, &secure.admin)).await;
    assert!(acquired.expect("acquire").into_inner().acquired);
    let logs = secure.all_logs();
    assert!(logs.contains("Raft RPC refused: node certificate for 9: not a member"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_prefixes_and_sessions() {
    let _serial = serial().await;
    let secure = Secure::start().await;
    let alice = secure.add_principal("alice", "lock", &["alice/"]);
    let bob = secure.add_principal("bob", "lock", &[]);
    secure.sighup_all();
    secure.wait_for_token(&alice, Code::Ok).await;
    secure.wait_for_token(&bob, Code::Ok).await;
    let leader = secure.wait_for_leader().await;
    let mut client = LockClient::new(secure.client_port(leader).await);

    // No token, an unknown one: UNAUTHENTICATED.
    assert_eq!(
        code(client.status(StatusRequest {}).await),
        Code::Unauthenticated
    );
    let wrong = with_token(StatusRequest {}, "rlt_not-a-real-token");
    assert_eq!(code(client.status(wrong).await), Code::Unauthenticated);

    // Alice: her prefix only.
    let open = || OpenSessionRequest {
        ttl_ms: 60_000,
        ..Default::default()
    };
    let session = client.open_session(with_token(open(), &alice)).await;
    let session = session.expect("alice's session").into_inner();
    let acquire = |name: &str, seq| AcquireRequest {
        session_id: session.session_id.clone(),
        session_secret: session.session_secret.clone(),
        seq,
        name: name.into(),
        ..Default::default()
    };
    let outside = client
        .acquire(with_token(acquire("bob/db", 1), &alice))
        .await;
    assert_eq!(code(outside), Code::PermissionDenied);
    let inside = client
        .acquire(with_token(acquire("alice/db", 2), &alice))
        .await;
    assert!(inside.expect("alice/db").into_inner().acquired);

    // Bob, with Alice's public session id, with and without her secret.
    for secret in [String::new(), session.session_secret.clone()] {
        let release = ReleaseRequest {
            session_id: session.session_id.clone(),
            session_secret: secret.clone(),
            seq: 10,
            name: "alice/db".into(),
        };
        let keep = KeepAliveRequest {
            session_id: session.session_id.clone(),
            session_secret: secret.clone(),
        };
        let close = CloseSessionRequest {
            session_id: session.session_id.clone(),
            session_secret: secret.clone(),
            seq: 11,
        };
        let replies = [
            code(client.release(with_token(release, &bob)).await),
            code(client.keep_alive(with_token(keep, &bob)).await),
            code(client.close_session(with_token(close, &bob)).await),
        ];
        assert_eq!(
            replies,
            [Code::PermissionDenied; 3],
            "secret given: {}",
            !secret.is_empty()
        );
    }
    let get = GetLockRequest {
        name: "alice/db".into(),
    };
    let lock = client.get_lock(with_token(get, &bob)).await.expect("get");
    let holder = lock.into_inner().lock.and_then(|l| l.holder);
    assert_eq!(
        holder.map(|h| h.session_id),
        Some(session.session_id.clone())
    );

    // No token and no session secret in any log line.
    let logs = secure.all_logs();
    for secret in [&secure.admin, &alice, &bob, &session.session_secret] {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_principals() {
    let _serial = serial().await;
    let secure = Secure::start().await;
    let carol = secure.add_principal("carol", "read", &[]);
    // Not before the nodes reread the file.
    let mut client = LockClient::new(secure.client_port(1).await);
    let early = client.status(with_token(StatusRequest {}, &carol)).await;
    assert_eq!(code(early), Code::Unauthenticated);
    secure.sighup_all();
    secure.wait_for_token(&carol, Code::Ok).await;

    let file = secure.auth_file();
    secure.raftlock(&["auth", "remove", "carol", "--file", &file]);
    secure.sighup_all();
    secure.wait_for_token(&carol, Code::Unauthenticated).await;
    secure.wait_for_token(&secure.admin, Code::Ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_certificates_act_as_admins_between_members() {
    let _serial = serial().await;
    let secure = Secure::start().await;
    // A member's certificate, no token: principal node-1, an admin.
    let mut client = LockClient::new({
        let creds = &secure.creds;
        let (cert, key) = (creds.join("node-1.pem"), creds.join("node-1-key.pem"));
        let addr = secure.cluster.endpoint(2);
        tls_channel(&addr, &secure.ca(), Some((&cert, &key)))
            .await
            .unwrap()
    });
    let status = client
        .status(StatusRequest {})
        .await
        .expect("node-1's status");
    assert_eq!(status.into_inner().id, 2);

    // The removal guard asks every member's status over TLS with the
    // leader's certificate: were those calls refused, it would count the
    // members down and refuse.
    let leader = secure.wait_for_leader().await;
    let victim = secure
        .cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    let mut cluster = ClusterClient::new(secure.peer_port(leader, Some(ADMIN_CERT)).await);
    let remove = RemoveMemberRequest {
        id: victim,
        force: false,
    };
    let removed = cluster.remove_member(remove).await;
    let members = removed.expect("removal allowed").into_inner().members;
    assert!(members.iter().all(|m| m.id != victim), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_is_added_and_replicated_to_over_tls() {
    let _serial = serial().await;
    let mut secure = Secure::start().await;
    let leader = secure.wait_for_leader().await;
    // No --peers, no --join: it waits for an admin to add it.
    let client_addr = secure.cluster.add_node(4, false).expect("node 4");
    secure.cluster.start(4).expect("start node 4");
    let mut cluster = ClusterClient::new(secure.peer_port(leader, Some(ADMIN_CERT)).await);
    let learner = AddLearnerRequest {
        id: 4,
        addr: secure.cluster.peer_addr(4),
        client_addr,
    };
    let added = cluster.add_learner(learner).await;
    let members = added.expect("add node 4").into_inner().members;
    assert!(members.iter().any(|m| m.id == 4), "{members:?}");
    // The leader's appends reach it through its own TLS client and the
    // new node's Raft check.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if secure.status(4).await.is_some_and(|s| s.last_applied > 0) {
            break;
        }
        assert!(
            Instant::now() < until,
            "node 4 got nothing:\n{}",
            secure.cluster.logs(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// `--join` asks through raftlock_client with the node's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_its_certificate() {
    let _serial = serial().await;
    let mut secure = Secure::start().await;
    secure.wait_for_leader().await;
    secure.cluster.add_node(4, true).expect("node 4");
    secure.cluster.start(4).expect("start node 4");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = secure.status(1).await;
        let members = status.map(|s| s.members).unwrap_or_default();
        if members.iter().any(|m| m.id == 4 && m.voter) {
            break;
        }
        assert!(
            Instant::now() < until,
            "node 4 did not join:\n{}",
            secure.cluster.logs(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects to `addr` over TLS trusting `ca`, presenting `identity` (a
/// certificate and its key) if given, and calls AddLearner (for id 0)
/// bearing `token`: the gRPC status a server sent, or the error that kept
/// the call from being answered (with its whole source chain).
async fn add_learner_as(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    token: &str,
) -> Result<Code, String> {
    let channel = tls_channel(addr, ca, identity).await?;
    let learner = AddLearnerRequest {
        id: 0,
        ..Default::default()
    };
    let mut cluster = ClusterClient::new(channel);
    let call = cluster.add_learner(with_token(learner, token));
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Err(_) => Err("no answer".into()),
        Ok(Ok(_)) => Ok(Code::Ok),
        // A status the server sent has no source; a failed handshake
        // surfaces as a status whose source is the transport's error.
        Ok(Err(status)) if std::error::Error::source(&status).is_none() => Ok(status.code()),
        Ok(Err(status)) => Err(format!("{status:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_requires_a_certificate_and_membership_an_admins() {
    let _serial = serial().await;
    let secure = Secure::start().await;
    let leader = secure.wait_for_leader().await;
    let creds = secure.creds.to_string_lossy().into_owned();
    let bob = secure.add_principal("bob", "lock", &[]);
    secure.sighup_all();
    secure.wait_for_token(&bob, Code::Ok).await;
    secure.raftlock(&["certs", "client", "bob", "--dir", &creds]);
    secure.raftlock(&["certs", "client", "mallory", "--dir", &creds]);

    // No certificate: the peer port's handshake fails, admin's token or
    // not (the client sees the connection refused or closed: no gRPC
    // answer). The same call with admin's certificate is answered, and so
    // is the one without a certificate on the client port (where a token
    // is enough to be heard), so the helper does tell them apart.
    let (cert, key) = (
        secure.creds.join(format!("{ADMIN_CERT}.pem")),
        secure.creds.join(format!("{ADMIN_CERT}-key.pem")),
    );
    for id in secure.cluster.ids() {
        let peer = secure.cluster.peer_addr(id);
        let ca = secure.ca();
        let refused = add_learner_as(&peer, &ca, None, &secure.admin).await;
        assert!(
            refused.is_err(),
            "node {id}'s peer port answered a caller without a certificate: {refused:?}"
        );
        let with_cert = add_learner_as(&peer, &ca, Some((&cert, &key)), &secure.admin).await;
        assert_eq!(with_cert, Ok(Code::InvalidArgument), "node {id}");
        let client_port = secure.cluster.endpoint(id);
        let answered = add_learner_as(&client_port, &ca, None, &secure.admin).await;
        assert!(answered.is_ok(), "{answered:?}");
    }

    // The CLI with only admin's token: refused before anything is sent,
    // saying what to give (exit 2), and not showing the token.
    let home = tempfile::TempDir::new().unwrap();
    let token_file = home.path().join("admin.token");
    write_private(&token_file, &secure.admin);
    let out = Command::new(BIN)
        .args(["--endpoints", &secure.cluster.endpoints().join(",")])
        .args(["cluster", "add", "9", "127.0.0.1:1"])
        .env("RAFTLOCK_CA", secure.ca())
        .env("RAFTLOCK_AUTH_TOKEN_FILE", &token_file)
        .env("RAFTLOCK_CONFIG_DIR", home.path().join("no-profile"))
        .env_remove("RAFTLOCK_CERT")
        .env_remove("RAFTLOCK_KEY")
        .env_remove("RAFTLOCK_INSECURE")
        .output()
        .expect("run raftlock cluster add");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("membership changes need an admin's client certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains(&secure.admin));

    // admin's client certificate, no token: past the check, to the
    // request's own merits (id 0 is no node id).
    let mut as_admin = ClusterClient::new(secure.peer_port(leader, Some(ADMIN_CERT)).await);
    let learner = || AddLearnerRequest {
        id: 0,
        addr: "127.0.0.1:1".into(),
        client_addr: String::new(),
    };
    assert_eq!(
        code(as_admin.add_learner(learner()).await),
        Code::InvalidArgument
    );
    // A lock principal's certificate, even beside admin's token: refused,
    // naming who and what was lacking.
    let mut as_bob = ClusterClient::new(secure.peer_port(leader, Some("client-bob")).await);
    let refused = as_bob
        .add_learner(with_token(learner(), &secure.admin))
        .await
        .expect_err("bob may not change the membership");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        refused.message(),
        "principal \"bob\" (role lock) may not call AddLearner: it needs role admin"
    );
    // A certificate from the CA for no principal in the auth file.
    let mut as_mallory = ClusterClient::new(secure.peer_port(leader, Some("client-mallory")).await);
    let refused = as_mallory
        .add_learner(learner())
        .await
        .expect_err("mallory is nobody");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("names no principal"),
        "{refused:?}"
    );

    // Nothing changed.
    let leader = secure.wait_for_leader().await;
    let status = secure.status(leader).await;
    let members = status.expect("the leader's status").members;
    assert_eq!(members.len(), 3, "{members:?}");
}

/// Writes `text` to a new file at `path` readable by its owner only.
fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create a private file");
    file.write_all(text.as_bytes()).expect("write it");
}
