//! Connections to a node as the wire fuzzer makes them: plain TCP, or TLS
//! trusting the cluster CA, with or without a node's certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Any byte stream to a node.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Stream = Box<dyn Io>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach one port of a node.
#[derive(Clone)]
pub struct Dialer {
    pub addr: String,
    /// `None`: plain text.
    tls: Option<TlsConnector>,
}

impl Dialer {
    pub fn plain(addr: &str) -> Dialer {
        Dialer {
            addr: addr.to_string(),
            tls: None,
        }
    }

    /// TLS trusting the CA at `ca`, presenting `identity` (certificate and
    /// key PEM files) if given.
    pub fn tls(addr: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> anyhow::Result<Dialer> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).context("the CA file")? {
            roots.add(cert.context("a CA certificate")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .context("the certificate file")?
                    .collect::<Result<Vec<_>, _>>()?;
                let key = PrivateKeyDer::from_pem_file(key).context("the key file")?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Dialer {
            addr: addr.to_string(),
            tls: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TCP connection, without TLS even on a TLS port (for raw bytes at
    /// the handshake).
    pub async fn tcp(&self) -> anyhow::Result<TcpStream> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .context("connect timed out")??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// A connection that speaks to the server's HTTP/2 layer: TLS first if
    /// the port is a TLS one.
    pub async fn stream(&self) -> anyhow::Result<Stream> {
        let tcp = self.tcp().await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name = ServerName::try_from("localhost")?;
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .context("TLS handshake timed out")??;
                Ok(Box::new(tls))
            }
        }
    }
}
