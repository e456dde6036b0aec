//! Loading PEM certificates and keys, checked the way a TLS handshake
//! would check them, so that a bad file is reported by name at startup
//! instead of as a failed handshake later.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::files;

/// A file's bytes as read, and the certificates they hold.
pub(crate) struct CertsFile {
    pub(crate) pem: Vec<u8>,
    pub(crate) certs: Vec<CertificateDer<'static>>,
}

/// A file's bytes as read, and the private key they hold.
pub(crate) struct KeyFile {
    pub(crate) pem: Vec<u8>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// The certificates in a PEM file: at least one, each a parseable X.509
/// certificate that is valid now.
pub(crate) fn load_certs(path: &Path) -> Result<CertsFile> {
    let pem = files::read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::file(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::file(path, "not PEM: no CERTIFICATE block"));
    }
    for cert in &certs {
        check_certificate(cert).map_err(|problem| Error::file(path, problem))?;
    }
    Ok(CertsFile { pem, certs })
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1), of a kind the
/// crypto provider can sign with.
pub(crate) fn load_key(path: &Path) -> Result<KeyFile> {
    let pem = files::read(path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| Error::file(path, format!("not a PEM private key: {e}")))?;
    Ok(KeyFile { pem, key })
}

/// The CA certificates in a PEM file, as trust anchors.
pub(crate) fn load_trust_anchors(path: &Path) -> Result<CertsFile> {
    let file = load_certs(path)?;
    let mut roots = RootCertStore::empty();
    for cert in &file.certs {
        roots
            .add(cert.clone())
            .map_err(|e| Error::file(path, format!("not usable as a CA: {e}")))?;
    }
    Ok(file)
}

/// Fails unless the first certificate of `certs` is for `key`.
pub(crate) fn check_key_matches(
    certs: &CertsFile,
    cert_path: &Path,
    key: &KeyFile,
    key_path: &Path,
) -> Result<()> {
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key.key)
        .map_err(|e| Error::file(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(certs.certs.clone(), Arc::clone(&signing_key));
    match certified.keys_match() {
        Ok(()) => Ok(()),
        // ring can always derive the public key; if a key could not, the
        // handshake is the only check left.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(Error::file(
            key_path,
            format!(
                "key does not match the certificate in {}",
                cert_path.display()
            ),
        )),
        Err(e) => Err(Error::file(cert_path, format!("bad certificate: {e}"))),
    }
}

/// Why `cert` would be refused, if it would: it must parse as X.509 and be
/// within its validity period.
fn check_certificate(cert: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) =
        X509Certificate::from_der(cert).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let validity = parsed.validity();
    if !validity.is_valid() {
        return Err(format!(
            "certificate for {} is valid only from {} to {}",
            parsed.subject(),
            validity.not_before,
            validity.not_after
        ));
    }
    Ok(())
}
