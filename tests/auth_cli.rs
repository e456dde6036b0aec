//! `raftlock auth` as a user runs it, on a real file: a token is printed
//! once and alone on stdout, the file is mode 0600 and holds only hashes,
//! duplicates and unknown names are refused without touching the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use raftlock_node::auth::{token, AuthFile};

const BIN: &str = env!("CARGO_BIN_EXE_raftlock");

fn auth(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("auth")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run raftlock")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one token a successful `add` or `rotate` printed.
fn printed_token(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", stderr(output));
    let text = stdout(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is more than the token: {text:?}");
    let token = lines[0];
    assert!(
        token.starts_with("rlt_") && token.len() == 4 + 43,
        "{token:?}"
    );
    token.to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn add_twice_then_list_rotate_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let f = file.to_str().unwrap();

    let alice = printed_token(&auth(
        dir.path(),
        &[
            "add", "alice", "--role", "lock", "--prefix", "alice/", "--prefix", "shared/",
            "--file", f,
        ],
    ));
    assert_eq!(mode(&file), 0o600);
    let bob = printed_token(&auth(
        dir.path(),
        &["add", "bob", "--role", "read", "--client-cert", "--file", f],
    ));
    assert_ne!(alice, bob);
    assert_eq!(mode(&file), 0o600);

    // Only hashes are stored, and they are the tokens' hashes.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&alice) && !text.contains(&bob), "{text}");
    let loaded = AuthFile::load(&file).unwrap();
    assert_eq!(
        loaded.principal("alice").unwrap().token_sha256,
        token::hash_hex(&alice)
    );
    assert_eq!(
        loaded.principal("bob").unwrap().token_sha256,
        token::hash_hex(&bob)
    );
    assert!(loaded.principal("bob").unwrap().client_cert);

    // A second `add` of a name is refused and changes nothing.
    let again = auth(
        dir.path(),
        &["add", "alice", "--role", "admin", "--file", f],
    );
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(stdout(&again), "");
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    let list = auth(dir.path(), &["list", "--file", f]);
    assert!(list.status.success(), "{}", stderr(&list));
    let listed = stdout(&list);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{listed}");
    assert_eq!(rows[1], ["alice", "lock", "alice/,shared/", "no"]);
    assert_eq!(rows[2], ["bob", "read", "(any)", "yes"]);
    for secret in [
        &alice,
        &bob,
        &token::hash_hex(&alice),
        &token::hash_hex(&bob),
    ] {
        assert!(!listed.contains(secret.as_str()), "{listed}");
    }

    let rotated = printed_token(&auth(dir.path(), &["rotate", "alice", "--file", f]));
    assert_ne!(rotated, alice);
    let loaded = AuthFile::load(&file).unwrap();
    assert_eq!(
        loaded.principal("alice").unwrap().token_sha256,
        token::hash_hex(&rotated)
    );
    assert_eq!(
        loaded.principal("bob").unwrap().token_sha256,
        token::hash_hex(&bob)
    );

    let removed = auth(dir.path(), &["remove", "bob", "--file", f]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert_eq!(stdout(&removed), "");
    assert!(AuthFile::load(&file).unwrap().principal("bob").is_none());
    for args in [["remove", "bob"], ["rotate", "bob"]] {
        let unknown = auth(dir.path(), &[args[0], args[1], "--file", f]);
        assert_eq!(unknown.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&unknown), "");
    }
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn the_default_file_is_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    printed_token(&auth(dir.path(), &["add", "ops", "--role", "admin"]));
    let file = dir.path().join("raftlock-auth.toml");
    assert_eq!(mode(&file), 0o600);
    assert!(AuthFile::load(&file).unwrap().principal("ops").is_some());
}

#[test]
fn bad_values_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let f = file.to_str().unwrap();
    for args in [
        vec!["add", "x", "--role", "root", "--file", f],
        vec!["add", "a b", "--role", "read", "--file", f],
        vec!["add", "x", "--role", "lock", "--prefix", "", "--file", f],
    ] {
        let output = auth(dir.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
        assert!(!file.exists(), "{args:?}");
    }
}

#[test]
fn a_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let f = file.to_str().unwrap();
    printed_token(&auth(
        dir.path(),
        &["add", "alice", "--role", "read", "--file", f],
    ));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        vec!["list"],
        vec!["add", "bob", "--role", "read"],
        vec!["rotate", "alice"],
    ] {
        let mut args = args;
        args.extend(["--file", f]);
        let output = auth(dir.path(), &args);
        assert!(!output.status.success(), "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
        assert!(stderr(&output).contains("chmod 600"), "{}", stderr(&output));
    }
}
