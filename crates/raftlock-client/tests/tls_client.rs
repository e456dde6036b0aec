//! The client over real TLS on loopback, against a small Lock server that
//! checks the `authorization` header itself: the token rides on unary
//! calls and on the Watch stream, a refused token or role is an error at
//! once (not retried), and a handshake that fails says what to check.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftlock_client::{Client, ClientOptions, Credentials, Error, Token, Transport, WatchEvent};
use raftlock_proto::v1::lock_server::{Lock, LockServer};
use raftlock_proto::v1::*;
use raftlock_tls::{server_tls, Ca, ClientCerts, CredentialsDir};
use tonic::codegen::tokio_stream::{self, Stream};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const GOOD: &str = "rlt_good_token";

/// Answers GetLock and Watch to the right token only; refuses ListLocks
/// as the auth layer refuses a role; counts the calls it gets.
#[derive(Clone, Default)]
struct Checking {
    calls: Arc<AtomicUsize>,
}

impl Checking {
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let header = request.metadata().get("authorization");
        match header.and_then(|v| v.to_str().ok()) {
            Some(value) if value == format!("Bearer {GOOD}") => Ok(()),
            _ => Err(Status::unauthenticated("missing or unknown token")),
        }
    }
}

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in this test"))
}

type Events = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lock for Checking {
    async fn open_session(
        &self,
        _: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        unused()
    }
    async fn keep_alive(
        &self,
        _: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveResponse>, Status> {
        unused()
    }
    async fn close_session(
        &self,
        _: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        unused()
    }
    async fn acquire(
        &self,
        _: Request<AcquireRequest>,
    ) -> Result<Response<AcquireResponse>, Status> {
        unused()
    }
    async fn release(
        &self,
        _: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        unused()
    }
    async fn get_lock(
        &self,
        request: Request<GetLockRequest>,
    ) -> Result<Response<GetLockResponse>, Status> {
        self.admit(&request)?;
        Ok(Response::new(GetLockResponse { lock: None }))
    }
    async fn list_locks(
        &self,
        request: Request<ListLocksRequest>,
    ) -> Result<Response<ListLocksResponse>, Status> {
        self.admit(&request)?;
        Err(Status::permission_denied(
            "principal \"reader\" (role read) may not call ListLocks: it needs role write",
        ))
    }
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        unused()
    }
    type WatchStream = Events;
    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Events>, Status> {
        self.admit(&request)?;
        let reset = WatchResponse {
            kind: WatchKind::Reset.into(),
            index: 7,
            ..WatchResponse::default()
        };
        let events = tokio_stream::iter([Ok(reset)]).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(events)))
    }
}

use tokio_stream::StreamExt as _;

struct Cluster {
    _tmp: tempfile::TempDir,
    ours: CredentialsDir,
    foreign: CredentialsDir,
    addr: SocketAddr,
    service: Checking,
}

/// A TLS server as node 1 of our CA, and a foreign CA for the client to
/// trust instead.
async fn start() -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let ours = CredentialsDir::new(tmp.path().join("ours"));
    let foreign = CredentialsDir::new(tmp.path().join("foreign"));
    for dir in [&ours, &foreign] {
        Ca::create(dir, 30)
            .unwrap()
            .issue_node(1, &[], 1, dir)
            .unwrap();
    }
    let tls = server_tls(
        &ours.node_cert(1),
        &ours.node_key(1),
        &ours.ca_cert(),
        ClientCerts::Optional,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Checking::default();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(LockServer::new(service.clone()))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    Cluster {
        _tmp: tmp,
        ours,
        foreign,
        addr,
        service,
    }
}

fn client(addr: SocketAddr, ca: &CredentialsDir, token: &str) -> Client {
    let options = ClientOptions {
        retry_for: Duration::from_secs(30),
        transport: Transport::Tls(Credentials {
            ca: ca.ca_cert(),
            token: Some(Token::new(token)),
            identity: None,
        }),
        ..ClientOptions::default()
    };
    Client::with_options([addr.to_string()], options).unwrap()
}

#[tokio::test]
async fn the_token_goes_with_unary_calls_and_the_watch_stream() {
    let c = start().await;
    let client = client(c.addr, &c.ours, GOOD);
    assert_eq!(client.get_lock("a").await.unwrap(), None);
    let mut watch = client.watch("");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap();
    assert_eq!(
        first.unwrap().unwrap(),
        WatchEvent::Reset {
            index: 7,
            resync: false
        }
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthenticated_at_once() {
    let c = start().await;
    let client = client(c.addr, &c.ours, "rlt_wrong");
    let started = Instant::now();
    let error = client.get_lock("a").await.unwrap_err();
    assert!(matches!(error, Error::Unauthenticated(_)), "{error:?}");
    assert!(error.to_string().contains("--auth-token-file"), "{error}");
    assert!(!error.to_string().contains("rlt_wrong"), "{error}");
    // Not retried for the client's 30 s: one call, answered at once.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(c.service.calls.load(Ordering::SeqCst), 1);
    let mut watch = client.watch("");
    let refused = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    assert!(matches!(
        refused.unwrap(),
        Some(Err(Error::Unauthenticated(_)))
    ));
}

#[tokio::test]
async fn a_role_refusal_is_permission_denied() {
    let c = start().await;
    let client = client(c.addr, &c.ours, GOOD);
    let error = client.list_locks("", 10).await.unwrap_err();
    assert!(matches!(error, Error::PermissionDenied(_)), "{error:?}");
    assert!(error.to_string().contains("role read"), "{error}");
}

#[tokio::test]
async fn a_node_of_another_ca_fails_the_handshake_at_once_naming_the_ca() {
    let c = start().await;
    let client = client(c.addr, &c.foreign, GOOD);
    let started = Instant::now();
    let error = client.get_lock("a").await.unwrap_err();
    let Error::Tls(message) = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("--ca"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(c.service.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_tls_client_at_a_plain_text_node_is_told_so() {
    let c = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(LockServer::new(c.service.clone()))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    let error = client(plain, &c.ours, GOOD)
        .get_lock("a")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Tls(m) if m.contains("--insecure")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_ca_file_that_is_not_there_fails_when_the_client_is_made() {
    let options = ClientOptions {
        transport: Transport::Tls(Credentials {
            ca: "/nonexistent/ca.pem".into(),
            token: None,
            identity: None,
        }),
        ..ClientOptions::default()
    };
    let error = Client::with_options(["127.0.0.1:1"], options)
        .err()
        .unwrap();
    assert!(
        matches!(&error, Error::Credentials(m) if m.contains("/nonexistent/ca.pem")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_plain_text_client_that_nobody_answers_is_told_about_tls() {
    let c = start().await;
    let options = ClientOptions {
        retry_for: Duration::from_secs(1),
        transport: Transport::Plain,
        ..ClientOptions::default()
    };
    let client = Client::with_options([c.addr.to_string()], options).unwrap();
    let error = client.get_lock("a").await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable(m) if m.contains("--ca")),
        "{error:?}"
    );
}
