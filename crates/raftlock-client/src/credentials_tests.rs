//! Tests of where a client finds its credentials: each case passes its
//! environment as a map, so none of them touches (or races on) the
//! process environment.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// An environment holding exactly `vars`.
fn env_of(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn private_file(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// A profile directory with a CA, and a token if `token` is given.
fn profile(root: &Path, token: Option<&str>) -> PathBuf {
    let dir = root.join("profile");
    std::fs::create_dir_all(&dir).unwrap();
    private_file(&dir.join(PROFILE_CA), "ca", 0o644);
    if let Some(token) = token {
        private_file(&dir.join(PROFILE_TOKEN), token, 0o600);
    }
    dir
}

/// The CA, the token and the identity of a TLS transport (panics if plain).
fn tls(transport: Transport) -> (PathBuf, Option<String>, Option<(PathBuf, PathBuf)>) {
    match transport {
        Transport::Tls(c) => (c.ca, c.token.map(|t| t.expose().to_string()), c.identity),
        other => panic!("expected TLS, got {other:?}"),
    }
}

#[test]
fn nothing_anywhere_is_plain_text() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("no-profile");
    let env = env_of(&[("RAFTLOCK_CONFIG_DIR", &empty)]);
    let got = Transport::resolve(&Given::default(), &env).unwrap();
    assert!(matches!(got, Transport::Plain), "{got:?}");
    let nothing = env_of(&[]);
    assert!(matches!(
        Transport::resolve(&Given::default(), &nothing).unwrap(),
        Transport::Plain
    ));
}

#[test]
fn the_profile_is_used_when_the_environment_says_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = profile(root.path(), Some("rlt_profile"));
    let env = env_of(&[("RAFTLOCK_CONFIG_DIR", &dir)]);
    let (ca, token, identity) = tls(Transport::resolve(&Given::default(), &env).unwrap());
    assert_eq!(ca, dir.join(PROFILE_CA));
    assert_eq!(token.as_deref(), Some("rlt_profile"));
    assert_eq!(identity, None);
    // XDG_CONFIG_HOME/raftlock when RAFTLOCK_CONFIG_DIR is not set.
    let xdg = env_of(&[("XDG_CONFIG_HOME", root.path())]);
    std::fs::rename(&dir, root.path().join("raftlock")).unwrap();
    let (ca, _, _) = tls(Transport::resolve(&Given::default(), &xdg).unwrap());
    assert_eq!(ca, root.path().join("raftlock").join(PROFILE_CA));
}

#[test]
fn a_profile_with_a_ca_but_no_token_is_tls_without_a_token() {
    let root = tempfile::tempdir().unwrap();
    let dir = profile(root.path(), None);
    private_file(&dir.join(PROFILE_CERT), "cert", 0o644);
    private_file(&dir.join(PROFILE_KEY), "key", 0o600);
    let env = env_of(&[("RAFTLOCK_CONFIG_DIR", &dir)]);
    let (_, token, identity) = tls(Transport::resolve(&Given::default(), &env).unwrap());
    assert_eq!(token, None);
    assert_eq!(
        identity,
        Some((dir.join(PROFILE_CERT), dir.join(PROFILE_KEY)))
    );
}

#[test]
fn the_environment_wins_over_the_profile_and_flags_over_both() {
    let root = tempfile::tempdir().unwrap();
    let dir = profile(root.path(), Some("rlt_profile"));
    let env_ca = private_file(&root.path().join("env-ca.pem"), "ca", 0o644);
    let env_token = private_file(&root.path().join("env.token"), "rlt_env", 0o600);
    let env = env_of(&[
        ("RAFTLOCK_CONFIG_DIR", &dir),
        ("RAFTLOCK_CA", &env_ca),
        ("RAFTLOCK_AUTH_TOKEN_FILE", &env_token),
    ]);
    let (ca, token, _) = tls(Transport::resolve(&Given::default(), &env).unwrap());
    assert_eq!((ca, token.as_deref()), (env_ca.clone(), Some("rlt_env")));

    let flag_token = private_file(&root.path().join("flag.token"), "rlt_flag", 0o600);
    let given = Given {
        token_file: Some(flag_token),
        ..Given::default()
    };
    // A token flag alone takes its CA from the profile, not the env's token.
    let (ca, token, _) = tls(Transport::resolve(&given, &env).unwrap());
    assert_eq!(
        (ca, token.as_deref()),
        (dir.join(PROFILE_CA), Some("rlt_flag"))
    );
}

#[test]
fn raftlock_insecure_means_plain_text_whatever_else_is_set() {
    let root = tempfile::tempdir().unwrap();
    let dir = profile(root.path(), Some("rlt_profile"));
    for yes in ["1", "true", "YES", "on"] {
        let env = env_of(&[
            ("RAFTLOCK_CONFIG_DIR", &dir),
            ("RAFTLOCK_CA", &dir.join(PROFILE_CA)),
            ("RAFTLOCK_INSECURE", Path::new(yes)),
        ]);
        let got = Transport::resolve(&Given::default(), &env).unwrap();
        assert!(matches!(got, Transport::Plain), "{yes}: {got:?}");
    }
    let off = env_of(&[
        ("RAFTLOCK_CONFIG_DIR", &dir),
        ("RAFTLOCK_INSECURE", Path::new("0")),
    ]);
    tls(Transport::resolve(&Given::default(), &off).unwrap());
    let odd = env_of(&[("RAFTLOCK_INSECURE", Path::new("maybe"))]);
    let error = Transport::resolve(&Given::default(), &odd).unwrap_err();
    assert!(error.to_string().contains("RAFTLOCK_INSECURE"), "{error}");
}

#[test]
fn insecure_with_credentials_given_is_refused() {
    let given = Given {
        insecure: true,
        ca: Some("ca.pem".into()),
        ..Given::default()
    };
    let error = Transport::resolve(&given, &env_of(&[])).unwrap_err();
    assert!(matches!(error, Error::Credentials(_)), "{error:?}");
    let plain = Given {
        insecure: true,
        ..Given::default()
    };
    assert!(matches!(
        Transport::resolve(&plain, &env_of(&[])).unwrap(),
        Transport::Plain
    ));
}

#[test]
fn a_token_file_others_can_read_is_refused_naming_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let ca = private_file(&root.path().join("ca.pem"), "ca", 0o644);
    let open = private_file(&root.path().join("token"), "rlt_secret", 0o644);
    let given = Given {
        ca: Some(ca),
        token_file: Some(open.clone()),
        ..Given::default()
    };
    let error = Transport::resolve(&given, &env_of(&[])).unwrap_err();
    let Error::Credentials(message) = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("chmod 600"), "{message}");
    assert!(message.contains(&open.display().to_string()), "{message}");
    assert!(!message.contains("rlt_secret"), "{message}");
    // The same in a profile.
    let dir = profile(root.path(), Some("rlt_secret"));
    std::fs::set_permissions(dir.join(PROFILE_TOKEN), Permissions::from_mode(0o640)).unwrap();
    let env = env_of(&[("RAFTLOCK_CONFIG_DIR", &dir)]);
    assert!(matches!(
        Transport::resolve(&Given::default(), &env),
        Err(Error::Credentials(_))
    ));
}

#[test]
fn a_token_without_any_ca_or_half_a_certificate_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let token = private_file(&root.path().join("token"), "rlt_x", 0o600);
    let given = Given {
        token_file: Some(token),
        ..Given::default()
    };
    let env = env_of(&[("RAFTLOCK_CONFIG_DIR", &root.path().join("none"))]);
    let error = Transport::resolve(&given, &env).unwrap_err();
    assert!(error.to_string().contains("--ca"), "{error}");
    let half = Given {
        ca: Some("ca.pem".into()),
        cert: Some("client.pem".into()),
        ..Given::default()
    };
    let error = Transport::resolve(&half, &env).unwrap_err();
    assert!(error.to_string().contains("--key"), "{error}");
}
