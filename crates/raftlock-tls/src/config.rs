//! tonic's server and client TLS configurations, built from PEM files that
//! are read and checked here, before any socket is opened: tonic itself
//! would only parse them when the first connection is made, and skip a CA
//! certificate it cannot use without a word.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TonicIdentity, ServerTlsConfig};

use crate::error::{Error, Result};
use crate::pem::{check_key_matches, load_certs, load_key, load_trust_anchors};

/// Longest a TLS handshake may take before the connection is dropped, so
/// that connections that never finish theirs cannot pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a server asks its clients for a certificate it must verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    /// A client without a certificate from the CA is refused (the peer
    /// listener: only nodes talk there).
    Required,
    /// A client may come without a certificate; one that sends a
    /// certificate must send one from the CA.
    Optional,
}

/// A server configuration presenting `cert_pem`/`key_pem` and verifying
/// client certificates against the CA in `ca_pem`.
pub fn server_tls(
    cert_pem: &Path,
    key_pem: &Path,
    ca_pem: &Path,
    client_certs: ClientCerts,
) -> Result<ServerTlsConfig> {
    crate::install_crypto_provider();
    let identity = load_identity(cert_pem, key_pem)?;
    let ca = load_trust_anchors(ca_pem)?;
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(ca.pem))
        .client_auth_optional(client_certs == ClientCerts::Optional)
        .timeout(HANDSHAKE_TIMEOUT))
}

/// A client configuration that trusts the CA in `ca_pem`, presents the
/// certificate and key in `cert_and_key` if given, and checks that the
/// server's certificate names `domain` (by default, the host of the URI
/// dialled: `127.0.0.1` and `localhost` are in every node certificate).
pub fn client_tls(
    ca_pem: &Path,
    cert_and_key: Option<(&Path, &Path)>,
    domain: Option<&str>,
) -> Result<ClientTlsConfig> {
    crate::install_crypto_provider();
    let ca = load_trust_anchors(ca_pem)?;
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some((cert_pem, key_pem)) = cert_and_key {
        config = config.identity(load_identity(cert_pem, key_pem)?);
    }
    if let Some(domain) = domain {
        ServerName::try_from(domain)
            .map_err(|_| Error::Invalid(format!("{domain:?} is not a host name or IP address")))?;
        config = config.domain_name(domain);
    }
    Ok(config)
}

fn load_identity(cert_pem: &Path, key_pem: &Path) -> Result<TonicIdentity> {
    let certs = load_certs(cert_pem)?;
    let key = load_key(key_pem)?;
    check_key_matches(&certs, cert_pem, &key, key_pem)?;
    Ok(TonicIdentity::from_pem(certs.pem, key.pem))
}
