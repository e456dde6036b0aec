//! TLS as a node uses it: the identity a verified certificate proves on an
//! incoming connection, and the endpoints this node dials other nodes at,
//! presenting its node certificate.

use std::net::SocketAddr;
use std::time::Duration;

use raftlock_tls::Identity;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::Endpoint;

use crate::config::NodeTls;

/// The raftlock identity of the certificate the peer presented in the TLS
/// handshake (which verified it against the CA), if it presented one that
/// names exactly one. Reads a request's extensions, so it serves both the
/// auth layer (http requests) and the services (tonic requests).
pub fn cert_identity(extensions: &http::Extensions) -> Option<Identity> {
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    raftlock_tls::peer_identity(leaf).ok()
}

/// The host part of `HOST:PORT` (an IP address without its brackets): the
/// name the other node's certificate must carry.
pub fn host_of(addr: &str) -> String {
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return socket.ip().to_string();
    }
    match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_matches(['[', ']']).to_string(),
        None => addr.to_string(),
    }
}

/// An endpoint for the node at `target` (a socket address or `HOST:PORT`),
/// over TLS with this node's certificate when `tls` is given, checking the
/// other node's certificate names `host`.
pub fn endpoint(
    target: &str,
    host: &str,
    tls: Option<&NodeTls>,
    connect_timeout: Duration,
) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{target}"))
        .map_err(|e| format!("{target}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    let Some(tls) = tls else {
        return Ok(endpoint);
    };
    let config = raftlock_tls::client_tls(&tls.ca, Some((&tls.cert, &tls.key)), Some(host))
        .map_err(|e| format!("TLS to {target}: {e}"))?;
    endpoint
        .tls_config(config)
        .map_err(|e| format!("TLS to {target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_names_and_addresses() {
        assert_eq!(host_of("node1:7999"), "node1");
        assert_eq!(host_of("127.0.0.1:8000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8000"), "::1");
    }
}
