//! The identity parser against well-formed, malformed and hostile
//! certificates: every bad input is an error, none a panic.

use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};

use super::*;

/// A self-signed certificate with these SANs (URIs, or DNS names when
/// prefixed with "dns:").
fn cert_with(names: &[&str]) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.strip_prefix("dns:") {
            Some(dns) => SanType::DnsName(dns.try_into().unwrap()),
            None => SanType::URI((*name).try_into().unwrap()),
        })
        .collect();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn reads_a_node_and_a_client_identity() {
    let node = cert_with(&["dns:localhost", "raftlock://node/7"]);
    assert_eq!(peer_identity(&node).unwrap(), Identity::Node(7));
    let client = cert_with(&["raftlock://client/ci-runner_1.x"]);
    assert_eq!(
        peer_identity(&client).unwrap(),
        Identity::Client("ci-runner_1.x".into())
    );
    // Other schemes beside ours are not counted.
    let mixed = cert_with(&["spiffe://example/x", "raftlock://node/18446744073709551615"]);
    assert_eq!(peer_identity(&mixed).unwrap(), Identity::Node(u64::MAX));
}

#[test]
fn identity_uris_round_trip() {
    for identity in [Identity::Node(1), Identity::Client("a.b".into())] {
        let der = cert_with(&[&identity.uri()]);
        assert_eq!(peer_identity(&der).unwrap(), identity);
    }
}

#[test]
fn a_certificate_without_our_uri_is_refused() {
    for names in [&[][..], &["dns:localhost"], &["spiffe://example/node/1"]] {
        let error = peer_identity(&cert_with(names)).unwrap_err();
        assert!(error.to_string().contains("no raftlock:// URI"), "{error}");
    }
}

#[test]
fn several_raftlock_uris_are_refused() {
    let twice = ["raftlock://node/1", "raftlock://client/admin"];
    let other_case = ["raftlock://client/ci", "RAFTLOCK://node/1"];
    for names in [&twice[..], &other_case[..]] {
        let error = peer_identity(&cert_with(names)).unwrap_err();
        assert!(error.to_string().contains("several"), "{error}");
    }
}

#[test]
fn malformed_raftlock_uris_are_refused() {
    for uri in [
        "raftlock://node/",
        "raftlock://node/abc",
        "raftlock://node/0",
        "raftlock://node/+5",
        "raftlock://node/-5",
        "raftlock://node/18446744073709551616",
        "raftlock://node/1/extra",
        "raftlock://client/",
        "raftlock://client/a/b",
        "raftlock://client/.hidden",
        "raftlock://client/a%2Fb",
        "raftlock://admin/x",
        "raftlock:node/1",
        "RAFTLOCK://node/1",
    ] {
        let result = peer_identity(&cert_with(&[uri]));
        assert!(
            matches!(result, Err(Error::NotRaftlock(_))),
            "{uri}: {result:?}"
        );
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let valid = cert_with(&["raftlock://node/3"]);
    assert!(peer_identity(&[]).is_err());
    assert!(peer_identity(b"-----BEGIN CERTIFICATE-----").is_err());
    assert!(peer_identity(&[0x30, 0x82, 0xff, 0xff]).is_err());
    assert!(peer_identity(&valid[..valid.len() / 2]).is_err());
    let mut trailing = valid.clone();
    trailing.push(0);
    assert!(peer_identity(&trailing).is_err());
    // Every single-byte corruption of a valid certificate: some still
    // parse (a changed signature bit), none may panic.
    for i in 0..valid.len() {
        let mut corrupt = valid.clone();
        corrupt[i] ^= 0xff;
        let _ = peer_identity(&corrupt);
    }
    for _ in 0..2000 {
        let len = rand::random::<usize>() % 600;
        let noise: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        let _ = peer_identity(&noise);
    }
}

#[test]
fn client_names_are_checked() {
    for good in ["a", "ci-runner_1.x", "9lives", &"x".repeat(64)] {
        assert!(check_client_name(good).is_ok(), "{good}");
    }
    for bad in ["", ".hidden", "-dash", "a/b", "a b", "é", &"x".repeat(65)] {
        assert!(check_client_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_node_id(0).is_err());
    assert!(check_node_id(1).is_ok());
}
