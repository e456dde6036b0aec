//! `server_tls` and `client_tls` refuse bad credentials up front, with an
//! error that names the file and says what is wrong with it.

use std::fs;
use std::path::Path;

use raftlock_tls::{client_tls, server_tls, Ca, ClientCerts, CredentialsDir, Error};

fn with_node_1() -> (tempfile::TempDir, CredentialsDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CredentialsDir::new(tmp.path());
    let ca = Ca::create(&dir, 30).unwrap();
    ca.issue_node(1, &[], 1, &dir).unwrap();
    ca.issue_node(2, &[], 1, &dir).unwrap();
    (tmp, dir)
}

fn server_error(cert: &Path, key: &Path, ca: &Path) -> String {
    match server_tls(cert, key, ca, ClientCerts::Required) {
        Ok(_) => panic!("accepted {cert:?}, {key:?}, {ca:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_credentials_make_both_configs() {
    let (_tmp, dir) = with_node_1();
    let (cert, key, ca) = (dir.node_cert(1), dir.node_key(1), dir.ca_cert());
    server_tls(&cert, &key, &ca, ClientCerts::Optional).unwrap();
    client_tls(&ca, Some((&cert, &key)), Some("localhost")).unwrap();
    client_tls(&ca, None, None).unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let (_tmp, dir) = with_node_1();
    let nowhere = dir.root().join("nowhere.pem");
    for error in [
        server_error(&nowhere, &dir.node_key(1), &dir.ca_cert()),
        server_error(&dir.node_cert(1), &nowhere, &dir.ca_cert()),
        server_error(&dir.node_cert(1), &dir.node_key(1), &nowhere),
    ] {
        assert!(error.ends_with("nowhere.pem: missing"), "{error}");
    }
    let error = client_tls(&nowhere, None, None).unwrap_err().to_string();
    assert!(error.ends_with("nowhere.pem: missing"), "{error}");
}

#[test]
fn a_file_that_is_not_pem_is_named() {
    let (_tmp, dir) = with_node_1();
    let junk = dir.root().join("junk.pem");
    fs::write(&junk, "hello\n").unwrap();
    let error = server_error(&junk, &dir.node_key(1), &dir.ca_cert());
    assert!(error.contains("junk.pem: not PEM"), "{error}");
    let error = server_error(&dir.node_cert(1), &junk, &dir.ca_cert());
    assert!(error.contains("junk.pem: not a PEM private key"), "{error}");
    let error = server_error(&dir.node_cert(1), &dir.node_key(1), &junk);
    assert!(error.contains("junk.pem: not PEM"), "{error}");
    // A key where the CA's certificate should be.
    let error = client_tls(&dir.node_key(1), None, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("node-1-key.pem: not PEM"), "{error}");
    // PEM armour around bytes that are not a certificate.
    let fake = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    fs::write(&junk, fake).unwrap();
    let error = client_tls(&junk, None, None).unwrap_err().to_string();
    assert!(
        error.contains("junk.pem: not an X.509 certificate"),
        "{error}"
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_named() {
    let (_tmp, dir) = with_node_1();
    let error = server_error(&dir.node_cert(1), &dir.node_key(2), &dir.ca_cert());
    assert!(
        error.contains("node-2-key.pem: key does not match the certificate in")
            && error.contains("node-1.pem"),
        "{error}"
    );
    let mismatched = client_tls(
        &dir.ca_cert(),
        Some((&dir.node_cert(2), &dir.node_key(1))),
        None,
    );
    assert!(mismatched.is_err());
}

#[test]
fn an_expired_certificate_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let old = tmp.path().join("old.pem");
    fs::write(&old, params.self_signed(&key).unwrap().pem()).unwrap();
    let error = client_tls(&old, None, None).unwrap_err().to_string();
    assert!(
        error.contains("old.pem: certificate for") && error.contains("valid only from"),
        "{error}"
    );
}

#[test]
fn a_bad_domain_is_refused() {
    let (_tmp, dir) = with_node_1();
    let result = client_tls(&dir.ca_cert(), None, Some("not a host"));
    assert!(matches!(result, Err(Error::Invalid(_))), "{result:?}");
}
