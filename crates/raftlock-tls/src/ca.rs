//! The cluster's private certificate authority: create it, load it, and
//! issue node and client certificates with it. Every key is ECDSA P-256;
//! every certificate gets a random serial and is backdated a little so
//! that a node whose clock is slightly behind accepts a fresh one.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::DnsName;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::files::{self, CERT_MODE, KEY_MODE};
use crate::identity::{check_client_name, check_node_id, Identity};
use crate::layout::CredentialsDir;
use crate::pem;

/// How long a new CA is valid: 10 years.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// How long a new node or client certificate is valid: 1 year.
pub const DEFAULT_LEAF_DAYS: u32 = 365;
/// Longest validity accepted (100 years): keeps dates far from `time`'s limits.
const MAX_DAYS: u32 = 36_500;
/// How far before "now" a certificate's validity starts, for clock skew.
const BACKDATE: Duration = Duration::hours(1);
/// Hosts every node certificate names, so that local tools and tests can
/// always reach a node by either.
const ALWAYS_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// The files a certificate and its key were written to, and when the
/// certificate expires.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub not_after: OffsetDateTime,
    /// Whether `not_after` is the CA's own end, sooner than the days asked.
    pub capped_by_ca: bool,
}

/// A loaded CA, able to issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    files: CertFiles,
}

impl Ca {
    /// Makes a new CA valid for `days`, written to `ca.pem` and
    /// `ca-key.pem` in `dir` (created if needed).
    pub fn create(dir: &CredentialsDir, days: u32) -> Result<Ca> {
        let (not_before, not_after, _) = validity(days, None)?;
        let mut params = CertificateParams::default();
        // A name of its own, so that a certificate from another raftlock CA
        // is refused as from an unknown issuer, not as a bad signature.
        let tag: u32 = rand::random();
        params.distinguished_name = common_name(&format!("raftlock CA {tag:08x}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
        files::check_absent(&[&cert_path, &key_path], dir.replaces_files())?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        write_pair(
            dir,
            &cert_path,
            &cert.pem(),
            &key_path,
            &key.serialize_pem(),
        )?;
        // Signing from what was written keeps one path for new and old CAs.
        Ca::load(dir)
    }

    /// The CA in `dir`'s `ca.pem` and `ca-key.pem`.
    pub fn load(dir: &CredentialsDir) -> Result<Ca> {
        let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
        let certs = pem::load_certs(&cert_path)?;
        let key = pem::load_key(&key_path)?;
        pem::check_key_matches(&certs, &cert_path, &key, &key_path)?;
        let ca_cert = &certs.certs[0];
        let not_after = not_after(ca_cert).map_err(|p| Error::file(&cert_path, p))?;
        let key_text = std::str::from_utf8(&key.pem)
            .map_err(|_| Error::file(&key_path, "not a PEM private key: not text"))?;
        let signing_key = KeyPair::from_pem(key_text)
            .map_err(|e| Error::file(&key_path, format!("cannot sign with this key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(ca_cert, signing_key)
            .map_err(|e| Error::file(&cert_path, format!("not a usable CA certificate: {e}")))?;
        Ok(Ca {
            issuer,
            files: CertFiles {
                cert: cert_path,
                key: key_path,
                not_after,
                capped_by_ca: false,
            },
        })
    }

    /// Where the CA's certificate and key are, and when it expires.
    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// Issues node `id`'s certificate, for use as both TLS server and TLS
    /// client, naming `localhost`, `127.0.0.1` and each of `hosts` (an IP
    /// address if it parses as one, else a DNS name). Valid for `days`, or
    /// until the CA expires if that is sooner.
    pub fn issue_node(
        &self,
        id: u64,
        hosts: &[String],
        days: u32,
        dir: &CredentialsDir,
    ) -> Result<CertFiles> {
        check_node_id(id)?;
        let mut names = vec![uri_name(&Identity::Node(id))?];
        for host in ALWAYS_HOSTS
            .iter()
            .copied()
            .chain(hosts.iter().map(String::as_str))
        {
            let name = host_name(host)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let leaf = Leaf {
            common_name: format!("raftlock node {id}"),
            names,
            usages: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        self.issue(leaf, days, dir, &dir.node_cert(id), &dir.node_key(id))
    }

    /// Issues client `name`'s certificate (CN=`name`), for use as a TLS
    /// client only.
    pub fn issue_client(&self, name: &str, days: u32, dir: &CredentialsDir) -> Result<CertFiles> {
        check_client_name(name)?;
        let leaf = Leaf {
            common_name: name.to_string(),
            names: vec![uri_name(&Identity::Client(name.to_string()))?],
            usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        self.issue(
            leaf,
            days,
            dir,
            &dir.client_cert(name),
            &dir.client_key(name),
        )
    }

    fn issue(
        &self,
        leaf: Leaf,
        days: u32,
        dir: &CredentialsDir,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<CertFiles> {
        let (not_before, not_after, capped_by_ca) = validity(days, Some(self.files.not_after))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&leaf.common_name);
        params.subject_alt_names = leaf.names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = leaf.usages;
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        files::check_absent(&[cert_path, key_path], dir.replaces_files())?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        write_pair(dir, cert_path, &cert.pem(), key_path, &key.serialize_pem())?;
        Ok(CertFiles {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            not_after,
            capped_by_ca,
        })
    }
}

/// What differs between a node's and a client's certificate.
struct Leaf {
    common_name: String,
    names: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
}

/// Writes the key first: a cert without its key is useless, and the key
/// is the file whose permissions matter.
fn write_pair(
    dir: &CredentialsDir,
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> Result<()> {
    files::create_dir(dir.root())?;
    let replace = dir.replaces_files();
    files::write(key_path, key_pem.as_bytes(), KEY_MODE, replace)?;
    files::write(cert_path, cert_pem.as_bytes(), CERT_MODE, replace)
}

/// From a little before now to `days` later, but not past `cap`; and
/// whether `cap` cut it short.
fn validity(
    days: u32,
    cap: Option<OffsetDateTime>,
) -> Result<(OffsetDateTime, OffsetDateTime, bool)> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::Invalid(format!(
            "--days {days}: give 1 to {MAX_DAYS} days"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let end = now + Duration::days(i64::from(days));
    Ok(match cap {
        Some(cap) if cap < end => (now - BACKDATE, cap, true),
        _ => (now - BACKDATE, end, false),
    })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn uri_name(identity: &Identity) -> Result<SanType> {
    let uri = identity
        .uri()
        .try_into()
        .map_err(|e| Error::Invalid(format!("{identity}: cannot be put in a certificate: {e}")))?;
    Ok(SanType::URI(uri))
}

/// `host` as an IP address SAN if it is one (brackets allowed around an
/// IPv6 address), else as a DNS name SAN.
fn host_name(host: &str) -> Result<SanType> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = || {
        Error::Invalid(format!(
            "--host {host:?} is neither an IP address nor a DNS name"
        ))
    };
    DnsName::try_from(host).map_err(|_| bad())?;
    Ok(SanType::DnsName(host.try_into().map_err(|_| bad())?))
}

/// 16 random bytes, positive and without a leading zero byte, as RFC 5280
/// wants (at most 20 octets, positive).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn not_after(cert: &[u8]) -> Result<OffsetDateTime, String> {
    let (_, parsed) =
        X509Certificate::from_der(cert).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(parsed.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests;
