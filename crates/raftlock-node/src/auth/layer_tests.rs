//! The layer as a tower service in front of a dummy inner service, with
//! real `http::Request`s: who gets through, with which `Caller`, and what
//! the refused get back.

use std::convert::Infallible;
use std::path::Path;

use http::header::AUTHORIZATION;
use tonic::Code;
use tower::ServiceExt;

use super::*;
use crate::auth::file::{AuthFile, PrincipalEntry};
use crate::auth::token;

const ALICE: &str = "rlt_alice-token";
const BOB: &str = "rlt_bob-token";
const OPS: &str = "rlt_ops-token";
const CAROL: &str = "rlt_carol-token";

fn entry(name: &str, role: &str, token: &str) -> PrincipalEntry {
    PrincipalEntry {
        name: name.into(),
        role: role.into(),
        token_sha256: token::hash_hex(token),
        prefixes: None,
        client_cert: false,
    }
}

fn write_file(path: &Path, alice_token: &str) {
    let mut alice = entry("alice", "lock", alice_token);
    alice.prefixes = Some(vec!["alice/".into(), "shared/".into()]);
    let mut carol = entry("carol", "lock", CAROL);
    carol.client_cert = true;
    let file = AuthFile {
        principals: vec![
            alice,
            entry("bob", "read", BOB),
            entry("ops", "admin", OPS),
            carol,
        ],
    };
    file.save(path).unwrap();
}

/// A store on a file in a directory that lives as long as the store.
fn store() -> (AuthStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    write_file(&path, ALICE);
    (AuthStore::load(&path).unwrap(), dir)
}

/// What the inner service saw, returned in its response's extensions.
#[derive(Clone, Debug)]
struct Seen {
    caller: Option<Caller>,
    authorization: bool,
}

/// A client certificate's identity, as a TLS acceptor would record it.
#[derive(Clone)]
struct PeerCert(String);

async fn call(
    layer: &AuthLayer,
    path: &str,
    authorization: Option<&str>,
    cert: Option<&str>,
) -> http::Response<String> {
    let inner = tower::service_fn(|request: http::Request<()>| async move {
        let mut response = http::Response::new("from the service".to_string());
        response.extensions_mut().insert(Seen {
            caller: request.extensions().get::<Caller>().cloned(),
            authorization: request.headers().contains_key(AUTHORIZATION),
        });
        Ok::<_, Infallible>(response)
    });
    let mut request = http::Request::builder().method("POST").uri(path);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    if let Some(cert) = cert {
        request = request.extension(PeerCert(cert.into()));
    }
    let service = layer.layer(inner);
    service.oneshot(request.body(()).unwrap()).await.unwrap()
}

async fn call_with(layer: &AuthLayer, path: &str, token: &str) -> http::Response<String> {
    call(layer, path, Some(&format!("Bearer {token}")), None).await
}

/// What the inner service saw, or a panic naming the refusal.
fn admitted(response: &http::Response<String>) -> Seen {
    match response.extensions().get::<Seen>() {
        Some(seen) => seen.clone(),
        None => panic!("refused: {:?}", refusal(response)),
    }
}

/// The gRPC status the layer answered with, read from the headers as a
/// client reads it; the inner service must not have been called.
fn refusal(response: &http::Response<String>) -> tonic::Status {
    assert!(response.extensions().get::<Seen>().is_none(), "admitted");
    tonic::Status::from_header_map(response.headers()).expect("a grpc-status header")
}

fn cert_reader() -> impl ClientCertIdentity {
    |extensions: &http::Extensions| extensions.get::<PeerCert>().map(|c| c.0.clone())
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_unauthenticated_without_saying_which() {
    let (store, _dir) = store();
    let layer = AuthLayer::for_clients(store);
    let acquire = "/raftlock.v1.Lock/Acquire";
    let answers = [
        call(&layer, acquire, None, None).await,
        call_with(&layer, acquire, "rlt_not-a-token").await,
        call_with(&layer, acquire, &token::hash_hex(ALICE)).await,
        call(&layer, acquire, Some(&format!("Basic {ALICE}")), None).await,
        call(&layer, acquire, Some(ALICE), None).await,
        call(&layer, acquire, Some("Bearer "), None).await,
    ];
    for response in &answers {
        let status = refusal(response);
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "missing or unknown token");
    }
}

#[tokio::test]
async fn a_refusal_is_a_trailers_only_grpc_response() {
    let (store, _dir) = store();
    let response = call(
        &AuthLayer::for_clients(store),
        "/raftlock.v1.Lock/Status",
        None,
        None,
    )
    .await;
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "16");
    assert!(response.body().is_empty());
}

#[tokio::test]
async fn a_role_too_low_is_denied_naming_principal_role_method_and_need() {
    let (store, _dir) = store();
    let layer = AuthLayer::for_clients(store);
    let status = refusal(&call_with(&layer, "/raftlock.v1.Lock/Acquire", BOB).await);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "principal \"bob\" (role read) may not call Acquire: it needs role lock"
    );
    let with_certs = layer.with_client_certs(cert_reader());
    let remove = "/raftlock.v1.Cluster/RemoveMember";
    let alice = call(&with_certs, remove, None, Some("raftlock://client/alice")).await;
    let status = refusal(&alice);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "principal \"alice\" (role lock) may not call RemoveMember: it needs role admin"
    );
}

#[tokio::test]
async fn the_right_role_reaches_the_service_as_its_caller_without_the_token() {
    let (store, _dir) = store();
    let layer = AuthLayer::for_clients(store);
    let seen = admitted(&call_with(&layer, "/raftlock.v1.Lock/Acquire", ALICE).await);
    assert_eq!(
        seen.caller,
        Some(Caller {
            principal: "alice".into(),
            prefixes: Some(vec!["alice/".into(), "shared/".into()]),
        })
    );
    assert!(!seen.authorization, "the token went on to the service");

    let seen = admitted(
        &call(
            &layer,
            "/raftlock.v1.Lock/Watch",
            Some(&format!("bearer  {BOB} ")),
            None,
        )
        .await,
    );
    assert_eq!(seen.caller.unwrap().principal, "bob");
    // Higher roles include the lower ones.
    for path in [
        "/raftlock.v1.Lock/ListLocks",
        "/raftlock.v1.Lock/OpenSession",
    ] {
        let seen = admitted(&call_with(&layer, path, OPS).await);
        assert_eq!(
            seen.caller.unwrap(),
            Caller {
                principal: "ops".into(),
                prefixes: None
            }
        );
    }
}

#[tokio::test]
async fn raft_rpcs_are_refused_for_clients_and_passed_untouched_for_peers() {
    let (store, _dir) = store();
    let append = "/raftlock.raft.v1.Raft/AppendEntries";
    let clients = AuthLayer::for_clients(store.clone());
    for response in [
        call(&clients, append, None, None).await,
        call_with(&clients, append, OPS).await,
    ] {
        let status = refusal(&response);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().contains("Raft RPC"),
            "{}",
            status.message()
        );
    }
    let peers = AuthLayer::for_peers(store);
    let seen = admitted(&call(&peers, append, None, None).await);
    assert!(seen.caller.is_none());
    let seen = admitted(&call_with(&peers, append, BOB).await);
    assert!(
        seen.caller.is_none() && seen.authorization,
        "not untouched: {seen:?}"
    );
    // The peer layer still checks clients.
    let status = refusal(&call_with(&peers, "/raftlock.v1.Lock/Acquire", BOB).await);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        refusal(&call(&peers, "/raftlock.v1.Lock/Acquire", None, None).await).code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn an_unknown_path_is_refused_whoever_asks() {
    let (store, _dir) = store();
    for layer in [
        AuthLayer::for_clients(store.clone()),
        AuthLayer::for_peers(store),
    ] {
        for path in [
            "/grpc.health.v1.Health/Check",
            "/raftlock.v1.Lock/Acquire/x",
            "/",
            "/raftlock.v1.Lock/Nope",
        ] {
            let status = refusal(&call_with(&layer, path, OPS).await);
            assert_eq!(status.code(), Code::PermissionDenied, "{path}");
            assert!(status.message().starts_with("unknown method"), "{path}");
        }
    }
}

#[tokio::test]
async fn a_client_certificate_counts_only_when_accepted_and_allowed() {
    let (store, _dir) = store();
    let acquire = "/raftlock.v1.Lock/Acquire";
    let with_certs = AuthLayer::for_clients(store.clone()).with_client_certs(cert_reader());
    let seen = admitted(&call(&with_certs, acquire, None, Some("raftlock://client/carol")).await);
    assert_eq!(seen.caller.unwrap().principal, "carol");
    // A wrong token does not spoil an accepted certificate; a right token
    // wins over it.
    let wrong = call(
        &with_certs,
        acquire,
        Some("Bearer rlt_wrong"),
        Some("raftlock://client/carol"),
    )
    .await;
    assert_eq!(admitted(&wrong).caller.unwrap().principal, "carol");
    let both = call(
        &with_certs,
        acquire,
        Some(&format!("Bearer {ALICE}")),
        Some("raftlock://client/carol"),
    )
    .await;
    assert_eq!(admitted(&both).caller.unwrap().principal, "alice");
    // bob has no client_cert = true; a node's certificate is no client's.
    for cert in ["raftlock://client/bob", "raftlock://node/carol", "carol"] {
        let status =
            refusal(&call(&with_certs, "/raftlock.v1.Lock/Status", None, Some(cert)).await);
        assert_eq!(status.code(), Code::Unauthenticated, "{cert}");
    }
    // Without a certificate reader the certificate is not looked at.
    let tokens_only = AuthLayer::for_clients(store);
    let status = refusal(&call(&tokens_only, acquire, None, Some("raftlock://client/carol")).await);
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// A node certificate's id, as the node's TLS reader would report it from
/// a `raftlock://node/<id>` certificate.
fn node_reader() -> impl NodeCertIdentity {
    |extensions: &http::Extensions| {
        let cert = extensions.get::<PeerCert>()?;
        cert.0.strip_prefix("raftlock://node/")?.parse().ok()
    }
}

#[tokio::test]
async fn a_node_certificate_is_principal_node_id_with_role_admin() {
    let (store, _dir) = store();
    let remove = "/raftlock.v1.Cluster/RemoveMember";
    let layer = AuthLayer::for_peers(store.clone()).with_node_certs(node_reader());
    let seen = admitted(&call(&layer, remove, None, Some("raftlock://node/3")).await);
    let caller = seen.caller.unwrap();
    assert_eq!(caller.principal, "node-3");
    assert_eq!(caller.prefixes, None);
    // Membership calls go by the certificate: a token beside it is not
    // looked at (bob only reads).
    let bob = format!("Bearer {BOB}");
    let bob = call(&layer, remove, Some(&bob), Some("raftlock://node/3")).await;
    assert_eq!(admitted(&bob).caller.unwrap().principal, "node-3");
    // Elsewhere a token still names its own principal, with its own role.
    let bob = format!("Bearer {BOB}");
    let acquire = "/raftlock.v1.Lock/Acquire";
    let bob = call(&layer, acquire, Some(&bob), Some("raftlock://node/3")).await;
    let status = refusal(&bob);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with("principal \"bob\""),
        "{status:?}"
    );
    // A client certificate is no node's; without the reader, nothing is.
    let client = call(&layer, remove, None, Some("raftlock://client/carol")).await;
    assert_eq!(refusal(&client).code(), Code::Unauthenticated);
    let without = AuthLayer::for_peers(store);
    let status = refusal(&call(&without, remove, None, Some("raftlock://node/3")).await);
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn membership_calls_need_a_certificate_and_a_token_is_not_enough() {
    let (store, _dir) = store();
    let add = "/raftlock.v1.Cluster/AddLearner";
    let layer = AuthLayer::for_peers(store)
        .with_client_certs(cert_reader())
        .with_node_certs(node_reader());
    // The admin's token alone: refused, saying what is needed, not the token.
    let status = refusal(&call_with(&layer, add, OPS).await);
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status
            .message()
            .starts_with("AddLearner needs a certificate")
            && status.message().contains("a token alone is not enough"),
        "{status:?}"
    );
    assert!(!status.message().contains(OPS));
    assert_eq!(
        refusal(&call(&layer, add, None, None).await).code(),
        Code::Unauthenticated
    );
    // ops's certificate, though ops has no `client_cert = true`: the
    // certificate is required here, so it is the credential.
    let ops = admitted(&call(&layer, add, None, Some("raftlock://client/ops")).await);
    assert_eq!(ops.caller.unwrap().principal, "ops");
    // A certificate for a lock principal, beside the admin's token: the
    // certificate decides.
    let admin_token = format!("Bearer {OPS}");
    let alice = call(
        &layer,
        add,
        Some(&admin_token),
        Some("raftlock://client/alice"),
    )
    .await;
    let status = refusal(&alice);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "principal \"alice\" (role lock) may not call AddLearner: it needs role admin"
    );
    // A certificate for nobody in the auth file.
    let nobody = refusal(&call(&layer, add, None, Some("raftlock://client/mallory")).await);
    assert_eq!(nobody.code(), Code::Unauthenticated);
    assert!(
        nobody.message().contains("names no principal"),
        "{nobody:?}"
    );
}

#[tokio::test]
async fn a_reload_rotates_tokens_in_a_running_layer() {
    let (store, dir) = store();
    let layer = AuthLayer::for_clients(store.clone());
    let status = "/raftlock.v1.Lock/Status";
    admitted(&call_with(&layer, status, ALICE).await);
    write_file(&dir.path().join("auth.toml"), "rlt_alice-new");
    store.reload().unwrap();
    assert_eq!(
        refusal(&call_with(&layer, status, ALICE).await).code(),
        Code::Unauthenticated
    );
    admitted(&call_with(&layer, status, "rlt_alice-new").await);
}
