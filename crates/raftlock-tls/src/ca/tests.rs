//! The CA and the certificates it issues: names, usages, validity, file
//! permissions, and refusals that leave nothing half written.

use std::fs;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::peer_identity;

fn der_of(path: &Path) -> Vec<u8> {
    let certs = pem::load_certs(path).unwrap();
    certs.certs[0].to_vec()
}

/// The SANs of a certificate, as "uri:...", "dns:..." or "ip:..." strings.
fn names_of(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => format!("uri:{uri}"),
            GeneralName::DNSName(dns) => format!("dns:{dns}"),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => format!("ip:{}", IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap())),
                _ => format!("ip:{}", IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap())),
            },
            other => format!("other:{other:?}"),
        })
        .collect()
}

/// (server auth, client auth) in the extended key usage.
fn usages_of(der: &[u8]) -> (bool, bool) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    (eku.server_auth, eku.client_auth)
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_ca_is_a_ca_with_private_key_and_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path().join("creds"));
    let ca = Ca::create(&dir, DEFAULT_CA_DAYS).unwrap();
    assert_eq!(ca.files().cert, dir.ca_cert());
    assert_eq!(ca.files().key, dir.ca_key());
    let der = der_of(&dir.ca_cert());
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(cert.is_ca());
    let days = (cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days();
    assert!((3649..=3650).contains(&days), "{days}");
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&dir.ca_key()), 0o600);
        assert_eq!(mode_of(dir.root()), 0o700);
    }
}

#[test]
fn node_certificates_name_the_node_and_its_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path());
    let ca = Ca::create(&dir, 30).unwrap();
    let hosts = ["db1.example", "10.0.0.5", "[::1]", "localhost"].map(String::from);
    let files = ca.issue_node(4, &hosts, 365, &dir).unwrap();
    assert_eq!(
        (files.cert.clone(), files.key.clone()),
        (dir.node_cert(4), dir.node_key(4))
    );
    let der = der_of(&files.cert);
    assert_eq!(peer_identity(&der).unwrap(), Identity::Node(4));
    assert_eq!(
        names_of(&der),
        [
            "uri:raftlock://node/4",
            "dns:localhost",
            "ip:127.0.0.1",
            "dns:db1.example",
            "ip:10.0.0.5",
            "ip:::1"
        ]
    );
    assert_eq!(usages_of(&der), (true, true));
    // Never valid past the CA: a 365-day certificate from a 30-day CA.
    assert_eq!(files.not_after, ca.files().not_after);
    assert!(files.capped_by_ca);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        cert.validity().not_after.to_datetime(),
        ca.files().not_after
    );
    #[cfg(unix)]
    assert_eq!(mode_of(&files.key), 0o600);
}

#[test]
fn client_certificates_name_the_client_for_client_auth_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path());
    let ca = Ca::create(&dir, DEFAULT_CA_DAYS).unwrap();
    let files = ca.issue_client("backup-job", 7, &dir).unwrap();
    assert_eq!(files.cert, dir.client_cert("backup-job"));
    let der = der_of(&files.cert);
    assert_eq!(
        peer_identity(&der).unwrap(),
        Identity::Client("backup-job".into())
    );
    assert_eq!(names_of(&der), ["uri:raftlock://client/backup-job"]);
    assert_eq!(usages_of(&der), (false, true));
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "backup-job");
    let ca_der = der_of(&dir.ca_cert());
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
    let days = (files.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((6..=7).contains(&days), "{days}");
    assert!(!files.capped_by_ca);
    let has_aki = cert.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )
    });
    assert!(has_aki);
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path());
    let ca = Ca::create(&dir, 30).unwrap();
    let first_key = fs::read(dir.ca_key()).unwrap();
    let refused = Ca::create(&dir, 30).err().unwrap();
    assert!(matches!(refused, Error::Exists { .. }), "{refused}");
    assert!(refused.to_string().contains("--force"), "{refused}");
    assert_eq!(fs::read(dir.ca_key()).unwrap(), first_key);

    ca.issue_client("ci", 1, &dir).unwrap();
    // Only the key in place: the refusal names it and writes no cert.
    fs::remove_file(dir.client_cert("ci")).unwrap();
    let refused = ca.issue_client("ci", 1, &dir).unwrap_err();
    assert!(
        refused.to_string().contains("client-ci-key.pem"),
        "{refused}"
    );
    assert!(!dir.client_cert("ci").exists());

    let forced = dir.clone().force(true);
    Ca::create(&forced, 30).unwrap();
    assert_ne!(fs::read(dir.ca_key()).unwrap(), first_key);
    ca.issue_client("ci", 1, &forced).unwrap();
    assert!(dir.client_cert("ci").exists());
}

#[test]
fn bad_requests_are_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path());
    let ca = Ca::create(&dir, 30).unwrap();
    let none: [String; 0] = [];
    let bad_host = ["a b".to_string()];
    let results = [
        ca.issue_node(0, &none, 1, &dir).err(),
        ca.issue_node(1, &bad_host, 1, &dir).err(),
        ca.issue_node(1, &none, 0, &dir).err(),
        ca.issue_node(1, &none, MAX_DAYS + 1, &dir).err(),
        ca.issue_client("../etc", 1, &dir).err(),
    ];
    for result in results {
        assert!(matches!(result, Some(Error::Invalid(_))), "{result:?}");
    }
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 2, "only the CA's two files: {left:?}");
}

#[test]
fn loading_says_which_file_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path());
    let missing = Ca::load(&dir).err().unwrap().to_string();
    assert!(missing.contains("ca.pem: missing"), "{missing}");

    Ca::create(&dir, 30).unwrap();
    let other = CredentialsDir::new(tmp.path().join("other"));
    Ca::create(&other, 30).unwrap();
    fs::copy(other.ca_key(), dir.ca_key()).unwrap();
    let mismatch = Ca::load(&dir).err().unwrap().to_string();
    assert!(
        mismatch.contains("ca-key.pem") && mismatch.contains("does not match"),
        "{mismatch}"
    );

    fs::write(dir.ca_key(), "not a key").unwrap();
    let garbage = Ca::load(&dir).err().unwrap().to_string();
    assert!(
        garbage.contains("ca-key.pem: not a PEM private key"),
        "{garbage}"
    );
}
