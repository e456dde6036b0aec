//! TLS for raftlock: a private certificate authority and the node and
//! client certificates it issues, the tonic server and client TLS
//! configurations built from them, and the identity (`Node(id)` or
//! `Client(name)`) a peer proves with its certificate.
//!
//! # Why ring
//! The one rustls crypto provider compiled in is *ring*, chosen on purpose
//! over aws-lc-rs: ring builds with nothing but a C compiler (aws-lc-rs
//! needs cmake, and NASM on some targets, and is larger), it links into
//! the statically linked (`+crt-static`) binary the docker images use, and
//! it has everything raftlock needs (ECDSA P-256 keys and signatures,
//! TLS 1.3). rustls and rcgen are used with their default features off
//! and tonic with `tls-ring`, so that nothing pulls in aws-lc-rs (check
//! with `cargo tree -e features -i rustls`). With a single provider rustls
//! could pick it on its own, but [`install_crypto_provider`] makes the
//! choice explicit, and the config builders call it.
//!
//! # Layout
//! - [`CredentialsDir`]: where each file of a credentials directory lives.
//! - [`Ca`]: create or load the CA, issue node and client certificates.
//! - [`server_tls`] / [`client_tls`]: checked tonic TLS configurations.
//! - [`peer_identity`] / [`request_identity`]: who is at the other end.

mod ca;
mod config;
mod error;
mod files;
mod identity;
mod layout;
mod pem;

pub use ca::{Ca, CertFiles, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS};
pub use config::{client_tls, server_tls, ClientCerts, HANDSHAKE_TIMEOUT};
pub use error::Error;
pub use identity::{peer_identity, request_identity, Identity};
pub use layout::{CredentialsDir, DEFAULT_DIR};

/// Makes ring the process-wide rustls crypto provider. Idempotent, and
/// harmless when a provider is already installed (the first one stays).
pub fn install_crypto_provider() {
    // An Err only says some provider is already the default: nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_the_provider_twice_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().unwrap();
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            let suites = p.cipher_suites.iter().map(|s| s.suite());
            suites.collect::<Vec<_>>()
        };
        assert_eq!(names(provider), names(&ring));
    }
}
