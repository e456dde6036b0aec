//! `raftlock status` and `raftlock locks` as a user runs them against real
//! nodes: what they say through one follower, with a node down, when
//! nothing answers, and with hostile lock names; and the client's refusal
//! of malformed endpoints.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use raftlock_client::{Client, Error, SessionOptions, Wait};
use support::{serial, Cluster, BIN};

fn raftlock(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RAFTLOCK_ENDPOINTS")
        .output()
        .expect("run raftlock")
}

/// `raftlock ARGS` with the credentials to reach `cluster` as admin.
fn raftlock_at(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RAFTLOCK_ENDPOINTS")
        .envs(cluster.cli_env())
        .output()
        .expect("run raftlock")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback port nothing listens on.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_through_one_follower_names_the_leader() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    let out = raftlock_at(
        &cluster,
        &["status", "--endpoints", &cluster.endpoint(follower)],
    );
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains(&format!("leader: node {leader}\n")),
        "{stdout}{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    // Every member was asked, not only the one endpoint given.
    assert_eq!(stdout.matches(" yes\n").count(), 3, "{stdout}");
    // The quotas as the leader's table has them, one line each.
    assert!(
        stdout.contains(&format!("quotas (node {leader}'s table): used / limit\n")),
        "{stdout}"
    );
    let sessions = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("sessions "))
        .unwrap_or_else(|| panic!("no sessions quota: {stdout}"));
    let columns: Vec<&str> = sessions.split_whitespace().collect();
    // No session is open; the limit is the default.
    assert_eq!(columns, ["sessions", "0", "/", "100000", "--max-sessions"]);
    assert_eq!(stdout.matches(" --max-").count(), 8, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_a_node_down_shows_it_unreachable_without_made_up_numbers() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(victim);

    let endpoints = cluster.endpoints().join(",");
    let out = raftlock_at(&cluster, &["status", "--endpoints", &endpoints]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a majority answers: {stdout}{stderr}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{victim} ")))
        .unwrap_or_else(|| panic!("no row for node {victim}: {stdout}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    // ID ADDRESS PEER-ADDRESS ROLE TERM APPLIED LAG SNAPSHOT UPTIME VERSION REACHABLE
    assert_eq!(
        &columns[1..3],
        &[cluster.endpoint(victim), cluster.peer_addr(victim)],
        "{stdout}"
    );
    assert_eq!(
        &columns[3..],
        &["unreachable", "-", "-", "-", "-", "-", "-", "no"],
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "node {victim} does not answer at {}: connection refused",
            cluster.endpoint(victim)
        )),
        "{stdout}"
    );

    let out = raftlock_at(&cluster, &["status", "--json", "--endpoints", &endpoints]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let member = report["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == victim)
        .unwrap();
    assert_eq!(member["reachable"], false);
    assert_eq!(member["addr"], cluster.endpoint(victim).as_str());
    assert_eq!(member["peer_addr"], cluster.peer_addr(victim).as_str());
    assert!(member["term"].is_null(), "{member}");
    assert_eq!(report["leader"], leader);
    assert_eq!(report["quorum"], true);
    // The quotas come from the leader's table.
    assert_eq!(report["quotas_from"], leader);
    let quotas = report["quotas"].as_array().unwrap();
    assert_eq!(quotas.len(), 8, "{quotas:?}");
    let locks = quotas.iter().find(|q| q["quota"] == "locks").unwrap();
    assert_eq!(locks["flag"], "--max-locks");
    assert_eq!(locks["used"], 0);
}

#[test]
fn status_when_nothing_answers_says_so_and_fails() {
    let dead = dead_endpoint();
    let started = Instant::now();
    let out = raftlock(&["status", "--endpoints", &dead]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(69), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "no table when nobody answered: {stdout}");
    assert!(
        stderr.contains(&format!(
            "no raftlock node answers at {dead} (connection refused)"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_call_to_a_dead_cluster_says_so_after_one_round() {
    let dead = [dead_endpoint(), dead_endpoint()];
    let mut child = Command::new(BIN)
        .args(["locks", "--endpoints", &dead.join(",")])
        .env_remove("RAFTLOCK_ENDPOINTS")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let first = received.recv_timeout(Duration::from_secs(5));
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("a line on stderr within 5 s");
    let want = format!(
        "no raftlock node answers at {}, {} (connection refused); retrying for",
        dead[0], dead[1]
    );
    assert!(first.contains(&want), "{first}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn malformed_endpoints_are_refused_at_once() {
    for bad in [
        "127.0.0.1",
        "",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "no such:1",
    ] {
        match Client::new([bad]) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("endpoint"), "{why}"),
            Err(e) => panic!("{bad:?}: {e}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
    let out = raftlock(&["status", "--endpoints", "127.0.0.1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no port"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locks_table_escapes_control_characters() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let session = cluster
        .client()
        .open_session(SessionOptions {
            label: "evil\nlabel".into(),
            ..SessionOptions::default()
        })
        .await
        .unwrap();
    let name = "results.h5\nFAKE-ROW\u{1b}[2J";
    session.lock(name, Wait::No).await.unwrap();

    let endpoints = cluster.endpoints().join(",");
    let out = raftlock_at(&cluster, &["locks", "--endpoints", &endpoints]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "header and one row: {stdout}");
    assert!(
        lines[1].starts_with("results.h5\\nFAKE-ROW\\u{1b}[2J "),
        "{stdout}"
    );
    assert!(lines[1].contains("evil\\nlabel"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");

    // JSON keeps the exact name.
    let out = raftlock_at(&cluster, &["locks", "--json", "--endpoints", &endpoints]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], name);
    session.close().await.unwrap();
}

#[test]
fn cluster_add_refuses_a_malformed_address_at_once() {
    let dead = dead_endpoint();
    let started = Instant::now();
    let out = raftlock(&["cluster", "add", "4", "node4", "--endpoints", &dead]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"node4\" has no port"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "asked the cluster first"
    );
}

/// An environment variable given to a command.
type EnvVar<'a> = (&'a str, &'a std::path::Path);

/// `raftlock status` with these arguments and environment variables (and
/// no other RAFTLOCK_* credentials or profile).
fn status_with(args: &[&str], env: &[EnvVar]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("status")
        .args(args)
        .env_remove("RAFTLOCK_ENDPOINTS");
    for name in [
        "RAFTLOCK_CA",
        "RAFTLOCK_AUTH_TOKEN_FILE",
        "RAFTLOCK_CERT",
        "RAFTLOCK_KEY",
        "RAFTLOCK_INSECURE",
    ] {
        command.env_remove(name);
    }
    command.env("RAFTLOCK_CONFIG_DIR", empty.path());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run raftlock")
}

#[test]
fn credentials_that_cannot_be_used_are_a_usage_error_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "rlt_secret_value").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (ca_arg, token_arg) = (ca.to_str().unwrap(), token.to_str().unwrap());
    let dead = dead_endpoint();
    let cases: [(Vec<&str>, Vec<EnvVar>, &str); 5] = [
        // A token file others can read: named, with the fix, never shown.
        (
            vec!["--ca", ca_arg, "--auth-token-file", token_arg],
            vec![],
            "chmod 600",
        ),
        // The same through the environment.
        (
            vec![],
            vec![("RAFTLOCK_CA", &ca), ("RAFTLOCK_AUTH_TOKEN_FILE", &token)],
            "chmod 600",
        ),
        // Plain text and credentials at once.
        (vec!["--insecure", "--ca", ca_arg], vec![], "--insecure"),
        // A CA file that is no certificate.
        (vec!["--ca", ca_arg], vec![], ca_arg),
        // Half a client certificate.
        (vec!["--ca", ca_arg, "--cert", ca_arg], vec![], "--key"),
    ];
    for (args, env, says) in cases {
        let mut args = args;
        args.extend(["--endpoints", &dead]);
        let started = Instant::now();
        let out = status_with(&args, &env);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("rlt_secret_value"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
    }
}

#[test]
fn a_profile_with_a_token_others_can_read_is_refused_and_raftlock_insecure_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "rlt_secret_value").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let dead = dead_endpoint();
    let out = status_with(
        &["--endpoints", &dead],
        &[("RAFTLOCK_CONFIG_DIR", dir.path())],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    // RAFTLOCK_INSECURE=1: plain text, the profile is not read; nothing
    // answers at the dead endpoint, which is a different failure.
    let insecure = std::path::Path::new("1");
    let out = status_with(
        &["--endpoints", &dead],
        &[
            ("RAFTLOCK_CONFIG_DIR", dir.path()),
            ("RAFTLOCK_INSECURE", insecure),
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
}
