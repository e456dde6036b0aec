//! The gRPC authentication layer: a tower `Layer` in front of the node's
//! services that finds who is calling (a bearer token, or an accepted
//! client certificate), checks the method is within their role, and
//! records them as the request's [`Caller`].
//!
//! ```ignore
//! let store = AuthStore::load(path)?;
//! auth::spawn_reload_on_sighup(store.clone())?;
//! Server::builder()
//!     .layer(AuthLayer::for_clients(store))
//!     .add_service(LockServer::new(api))
//! ```
//!
//! Membership (Cluster) calls go by certificate only: the node a node
//! certificate names, or the principal a client certificate names (role
//! admin needed); a token beside it is not looked at.
//!
//! Refusals are gRPC trailers-only responses made here; the services
//! behind never see the request. UNAUTHENTICATED never says whether a
//! token was missing or wrong; PERMISSION_DENIED says who, with what
//! role, may not call what.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use tonic::Status;
use tower::{Layer, Service};

use super::role::{self, Access, Role};
use super::store::AuthStore;
use super::table::{AuthTable, Principal};
use crate::caller::Caller;

/// Where a request's client-certificate identity comes from: the TLS
/// acceptor records the verified certificate in the request's extensions,
/// and this reads it out, as its URI name (`raftlock://client/<name>`).
/// Kept to a trait so that this layer does not depend on the TLS code.
pub trait ClientCertIdentity: Send + Sync + 'static {
    fn identity(&self, extensions: &http::Extensions) -> Option<String>;
}

impl<F> ClientCertIdentity for F
where
    F: Fn(&http::Extensions) -> Option<String> + Send + Sync + 'static,
{
    fn identity(&self, extensions: &http::Extensions) -> Option<String> {
        self(extensions)
    }
}

/// Where a request's node-certificate identity comes from, like
/// [`ClientCertIdentity`]: the id of the node whose verified certificate
/// the TLS acceptor recorded. A node counts as principal `node-<id>` with
/// role admin (nodes add themselves with `--join`, and the leader asks the
/// members' status before removing one).
pub trait NodeCertIdentity: Send + Sync + 'static {
    fn node_id(&self, extensions: &http::Extensions) -> Option<u64>;
}

impl<F> NodeCertIdentity for F
where
    F: Fn(&http::Extensions) -> Option<u64> + Send + Sync + 'static,
{
    fn node_id(&self, extensions: &http::Extensions) -> Option<u64> {
        self(extensions)
    }
}

/// The principal name a node certificate stands for.
pub fn node_principal(id: u64) -> String {
    format!("node-{id}")
}

/// What becomes of Raft's own RPCs, which tokens never authorise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerRpcs {
    /// A client port: refused.
    Refuse,
    /// A peer port, where node certificates were checked by TLS: passed
    /// on untouched.
    PassThrough,
}

/// Builds [`AuthService`]s; cheap to clone.
#[derive(Clone)]
pub struct AuthLayer {
    store: AuthStore,
    peer_rpcs: PeerRpcs,
    client_certs: Option<Arc<dyn ClientCertIdentity>>,
    node_certs: Option<Arc<dyn NodeCertIdentity>>,
}

impl AuthLayer {
    /// For a port that serves clients: Raft RPCs are refused.
    pub fn for_clients(store: AuthStore) -> AuthLayer {
        AuthLayer {
            store,
            peer_rpcs: PeerRpcs::Refuse,
            client_certs: None,
            node_certs: None,
        }
    }

    /// For a port that also serves the other nodes: Raft RPCs pass
    /// through untouched (node certificates authorise them, not this).
    pub fn for_peers(store: AuthStore) -> AuthLayer {
        AuthLayer {
            peer_rpcs: PeerRpcs::PassThrough,
            ..AuthLayer::for_clients(store)
        }
    }

    /// Also accept client certificates, for principals with
    /// `client_cert = true`, as `identity` reports them.
    pub fn with_client_certs(mut self, identity: impl ClientCertIdentity) -> AuthLayer {
        self.client_certs = Some(Arc::new(identity));
        self
    }

    /// Also accept node certificates, as principal `node-<id>` with role
    /// admin, as `identity` reports them.
    pub fn with_node_certs(mut self, identity: impl NodeCertIdentity) -> AuthLayer {
        self.node_certs = Some(Arc::new(identity));
        self
    }

    /// Lets `request` through (with its [`Caller`] recorded and its token
    /// removed) or says why not.
    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let path = request.uri().path();
        let Some(method) = role::method(path) else {
            return Err(Status::permission_denied(format!(
                "unknown method {path:?}"
            )));
        };
        let table = self.store.table();
        let (principal, needed) = match method.access {
            Access::Peer if self.peer_rpcs == PeerRpcs::PassThrough => return Ok(()),
            Access::Peer => {
                return Err(Status::permission_denied(format!(
                    "{path} is a Raft RPC between nodes, not served to clients"
                )))
            }
            Access::Principal(needed) => {
                let Some(principal) = self.authenticate(&table, request) else {
                    tracing::debug!(path, "refused: missing or unknown token");
                    return Err(Status::unauthenticated("missing or unknown token"));
                };
                (principal, needed)
            }
            Access::Certificate(needed) => {
                let principal = self.certified(&table, request).map_err(|message| {
                    tracing::debug!(path, "refused: {message}");
                    Status::unauthenticated(format!(
                        "{} needs a certificate: {message}",
                        method.name
                    ))
                })?;
                (principal, needed)
            }
        };
        if !principal.role.allows(needed) {
            let message = format!(
                "principal {:?} (role {}) may not call {}: it needs role {needed}",
                principal.name, principal.role, method.name
            );
            tracing::debug!(path, "refused: {message}");
            return Err(Status::permission_denied(message));
        }
        // The services have no use for the token: it goes no further.
        request.headers_mut().remove(AUTHORIZATION);
        request.extensions_mut().insert(Caller {
            principal: principal.name.clone(),
            prefixes: principal.prefixes.clone(),
        });
        Ok(())
    }

    /// The principal whose token the request bears, else the node its
    /// node certificate names, else the one its client certificate stands
    /// for (if that principal has `client_cert = true`).
    fn authenticate<B>(
        &self,
        table: &AuthTable,
        request: &http::Request<B>,
    ) -> Option<Arc<Principal>> {
        if let Some(principal) = bearer_token(request.headers()).and_then(|t| table.by_token(t)) {
            return Some(principal.clone());
        }
        let node = self.node_certs.as_ref();
        if let Some(id) = node.and_then(|n| n.node_id(request.extensions())) {
            return Some(Arc::new(node_principal_of(id)));
        }
        let identity = self.client_certs.as_ref()?.identity(request.extensions())?;
        table.by_client_cert(&identity).cloned()
    }

    /// The principal the request's certificate proves, ignoring any token:
    /// the node its node certificate names, else the principal its client
    /// certificate names. Here the certificate is the credential itself,
    /// so a principal need not have `client_cert = true` (which only lets
    /// a certificate stand in for a token); it must be in the auth file.
    /// `Err` says, without naming any secret, what was missing.
    fn certified<B>(
        &self,
        table: &AuthTable,
        request: &http::Request<B>,
    ) -> Result<Arc<Principal>, String> {
        let node = self.node_certs.as_ref();
        if let Some(id) = node.and_then(|n| n.node_id(request.extensions())) {
            return Ok(Arc::new(node_principal_of(id)));
        }
        let identity = self
            .client_certs
            .as_ref()
            .and_then(|c| c.identity(request.extensions()));
        let Some(identity) = identity else {
            return Err("a node certificate, or the client certificate of an admin \
                 principal (raftlock certs client NAME); a token alone is not enough"
                .into());
        };
        table.by_cert_identity(&identity).cloned().ok_or_else(|| {
            format!("the client certificate {identity} names no principal in the auth file")
        })
    }
}

/// Principal `node-<id>`, role admin: what a node certificate stands for.
fn node_principal_of(id: u64) -> Principal {
    Principal {
        name: node_principal(id),
        role: Role::Admin,
        prefixes: None,
        client_cert: false,
    }
}

/// The token of an `authorization: Bearer <token>` header (the scheme is
/// case-insensitive, as HTTP has it).
fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.clone(),
        }
    }
}

/// The layer's service: admits a request to `inner`, or answers it with a
/// gRPC error itself.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match self.auth.admit(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
