//! Real TLS connections on loopback: a tonic server built with
//! `server_tls` answers every call with the identity it sees for the
//! caller, and clients built with `client_tls` connect with node, client,
//! foreign or no certificates, or without TLS at all.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use raftlock_proto::raft::raft_client::RaftClient;
use raftlock_proto::raft::raft_server::{Raft, RaftServer};
use raftlock_proto::raft::RaftMessage;
use raftlock_tls::{
    client_tls, request_identity, server_tls, Ca, ClientCerts, CredentialsDir, Identity,
};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{ClientTlsConfig, Endpoint, Server};
use tonic::{Request, Response, Status};

/// Every call answers with who the caller is, as text.
struct WhoAmI;

fn caller<T>(request: &Request<T>) -> Result<Response<RaftMessage>, Status> {
    let who = match request_identity(request) {
        Ok(Some(Identity::Node(id))) => format!("node:{id}"),
        Ok(Some(Identity::Client(name))) => format!("client:{name}"),
        Ok(None) => "none".to_string(),
        Err(e) => format!("error:{e}"),
    };
    Ok(Response::new(RaftMessage {
        data: who.into_bytes().into(),
    }))
}

#[tonic::async_trait]
impl Raft for WhoAmI {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        caller(&request)
    }
    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        caller(&request)
    }
    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        caller(&request)
    }
    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        caller(&request)
    }
}

/// Two CAs in two directories: ours (nodes 1 and 2, client "ops") and a
/// foreign one (node 2 and client "ops" again, same names, other CA).
struct Creds {
    _tmp: tempfile::TempDir,
    ours: CredentialsDir,
    foreign: CredentialsDir,
}

fn creds() -> Creds {
    let tmp = tempfile::tempdir().unwrap();
    let ours = CredentialsDir::new(tmp.path().join("ours"));
    let foreign = CredentialsDir::new(tmp.path().join("foreign"));
    for dir in [&ours, &foreign] {
        let ca = Ca::create(dir, 30).unwrap();
        ca.issue_node(1, &[], 1, dir).unwrap();
        ca.issue_node(2, &[], 1, dir).unwrap();
        ca.issue_client("ops", 1, dir).unwrap();
    }
    Creds {
        _tmp: tmp,
        ours,
        foreign,
    }
}

/// Starts the server as node 1 of `dir` on a loopback port.
async fn serve(dir: &CredentialsDir, client_certs: ClientCerts) -> SocketAddr {
    serve_as(dir, &dir.node_cert(1), &dir.node_key(1), client_certs).await
}

/// Starts the server with this certificate and key on a loopback port.
async fn serve_as(
    dir: &CredentialsDir,
    cert: &Path,
    key: &Path,
    client_certs: ClientCerts,
) -> SocketAddr {
    let tls = server_tls(cert, key, &dir.ca_cert(), client_certs).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(RaftServer::new(WhoAmI))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    addr
}

/// What the server says the caller is, or why the call failed.
async fn who_am_i(url: String, tls: Option<ClientTlsConfig>) -> Result<String, String> {
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let reply = RaftClient::new(channel)
        .vote(RaftMessage::default())
        .await
        .map_err(|status| format!("{status:?}"))?;
    Ok(String::from_utf8_lossy(&reply.into_inner().data).into_owned())
}

/// The call failed, and its error mentions `reason` (as rustls words it).
fn assert_refused(result: &Result<String, String>, reason: &str) {
    match result {
        Ok(who) => panic!("answered {who:?}, expected a refusal ({reason})"),
        Err(e) => assert!(e.contains(reason), "refused, but not for {reason}: {e}"),
    }
}

fn as_node(
    dir: &CredentialsDir,
    ca: &CredentialsDir,
    id: u64,
    domain: Option<&str>,
) -> ClientTlsConfig {
    let pair = (dir.node_cert(id), dir.node_key(id));
    client_tls(&ca.ca_cert(), Some((&pair.0, &pair.1)), domain).unwrap()
}

fn as_client(dir: &CredentialsDir, ca: &CredentialsDir, name: &str) -> ClientTlsConfig {
    let pair = (dir.client_cert(name), dir.client_key(name));
    client_tls(&ca.ca_cert(), Some((&pair.0, &pair.1)), None).unwrap()
}

#[tokio::test]
async fn a_node_certificate_is_seen_as_that_node() {
    let c = creds();
    let addr = serve(&c.ours, ClientCerts::Required).await;
    let url = format!("https://{addr}");
    let tls = as_node(&c.ours, &c.ours, 2, None);
    assert_eq!(who_am_i(url, Some(tls)).await.unwrap(), "node:2");
}

#[tokio::test]
async fn a_client_certificate_is_seen_as_that_client() {
    let c = creds();
    for mode in [ClientCerts::Required, ClientCerts::Optional] {
        let addr = serve(&c.ours, mode).await;
        let tls = as_client(&c.ours, &c.ours, "ops");
        let who = who_am_i(format!("https://{addr}"), Some(tls)).await;
        assert_eq!(who.unwrap(), "client:ops", "{mode:?}");
    }
}

#[tokio::test]
async fn the_server_name_check_passes_for_loopback_names_only() {
    let c = creds();
    let addr = serve(&c.ours, ClientCerts::Required).await;
    let port = addr.port();
    // The URI's host is the name checked: 127.0.0.1 ...
    let by_ip = as_node(&c.ours, &c.ours, 2, None);
    let who = who_am_i(format!("https://127.0.0.1:{port}"), Some(by_ip)).await;
    assert_eq!(who.unwrap(), "node:2");
    // ... localhost (pinned to 127.0.0.1 here, where the server listens) ...
    let by_name = as_node(&c.ours, &c.ours, 2, Some("localhost"));
    let who = who_am_i(format!("https://127.0.0.1:{port}"), Some(by_name)).await;
    assert_eq!(who.unwrap(), "node:2");
    // ... and a name the certificate does not carry fails the check.
    let wrong = as_node(&c.ours, &c.ours, 2, Some("db9.example"));
    let refused = who_am_i(format!("https://127.0.0.1:{port}"), Some(wrong)).await;
    assert_refused(&refused, "NotValidForName");
}

#[tokio::test]
async fn certificates_of_another_ca_are_refused_both_ways() {
    let c = creds();
    let addr = serve(&c.ours, ClientCerts::Required).await;
    let url = format!("https://{addr}");
    // A client that trusts only the other CA does not accept our server.
    let trusts_foreign = as_node(&c.ours, &c.foreign, 2, None);
    let refused = who_am_i(url.clone(), Some(trusts_foreign)).await;
    assert_refused(&refused, "UnknownIssuer");
    // Our server does not accept a node or client certificate from the
    // other CA, even with the same names, in either mode.
    for mode in [ClientCerts::Required, ClientCerts::Optional] {
        let addr = serve(&c.ours, mode).await;
        let url = format!("https://{addr}");
        let foreign_node = as_node(&c.foreign, &c.ours, 2, None);
        let refused = who_am_i(url.clone(), Some(foreign_node)).await;
        assert_refused(&refused, "UnknownCA");
        let foreign_client = as_client(&c.foreign, &c.ours, "ops");
        let refused = who_am_i(url, Some(foreign_client)).await;
        assert_refused(&refused, "UnknownCA");
    }
}

#[tokio::test]
async fn a_client_certificate_cannot_serve() {
    let c = creds();
    let (cert, key) = (c.ours.client_cert("ops"), c.ours.client_key("ops"));
    let addr = serve_as(&c.ours, &cert, &key, ClientCerts::Required).await;
    let tls = as_node(&c.ours, &c.ours, 2, Some("localhost"));
    // Its extended key usage is client authentication only.
    let refused = who_am_i(format!("https://{addr}"), Some(tls)).await;
    assert_refused(&refused, "InvalidPurpose");
}

#[tokio::test]
async fn without_a_client_certificate_only_the_optional_server_answers() {
    let c = creds();
    let anonymous = || client_tls(&c.ours.ca_cert(), None, None).unwrap();
    let required = serve(&c.ours, ClientCerts::Required).await;
    let refused = who_am_i(format!("https://{required}"), Some(anonymous())).await;
    assert_refused(&refused, "CertificateRequired");
    let optional = serve(&c.ours, ClientCerts::Optional).await;
    let who = who_am_i(format!("https://{optional}"), Some(anonymous())).await;
    assert_eq!(who.unwrap(), "none");
}

#[tokio::test]
async fn a_plain_text_client_is_refused() {
    let c = creds();
    for mode in [ClientCerts::Required, ClientCerts::Optional] {
        let addr = serve(&c.ours, mode).await;
        let refused = who_am_i(format!("http://{addr}"), None).await;
        assert_refused(&refused, "transport error");
    }
}

#[tokio::test]
async fn a_plain_text_server_sees_no_identity() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(RaftServer::new(WhoAmI))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    let who = who_am_i(format!("http://{addr}"), None).await;
    assert_eq!(who.unwrap(), "none");
}

#[tokio::test]
async fn a_connection_that_never_starts_its_handshake_is_dropped() {
    use tokio::io::AsyncReadExt;
    let c = creds();
    let addr = serve(&c.ours, ClientCerts::Required).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let limit = raftlock_tls::HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(limit, silent.read(&mut byte)).await;
    let waited = started.elapsed();
    // Closed (end of file or reset) by the server, not still waiting.
    assert!(
        !matches!(read, Err(_) | Ok(Ok(1..))),
        "{read:?} after {waited:?}"
    );
    assert!(
        waited >= raftlock_tls::HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "{waited:?}"
    );
}
