//! `raftlock dev` and `raftlock server` with real processes: a data
//! directory another process uses is refused before anything starts, and
//! a node killed under `dev` is restarted by `dev` and stopped with it;
//! a malformed `--join` address is refused before the node starts.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use raftlock_client::Client;
use support::{serial, BIN};

/// `count` consecutive free loopback ports (dev puts node N on port + N - 1).
/// A dev cluster takes [`DEV_PORTS`].
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > 65_000 {
            continue;
        }
        let all_free =
            (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// Stdout lines of `child`, as they come.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Reads lines until one satisfies `want`; panics with what came instead.
fn expect_line(lines: &Receiver<String>, within: Duration, want: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if want(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no such line within {within:?}; got:\n{}", seen.join("\n"));
}

/// Stops what a test started even when it fails half-way: SIGINT first
/// (so `dev` stops its nodes), then SIGKILL to the process and the nodes
/// it was seen to start.
struct Reaper {
    child: Child,
    pids: Vec<u32>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: signals to processes this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.pids {
            // SAFETY: as above; a pid already gone is harmless.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
/// Ports a 3-node dev cluster takes from its base: 3 client, then 3 peer.
const DEV_PORTS: u16 = 6;

/// `raftlock dev --insecure` on ports from `base` (clients, then peers),
/// its data under `data`, stdout piped.
fn start_dev(data: &std::path::Path, base: u16, stdin: Stdio, stderr: Stdio) -> Reaper {
    start_dev_with(data, base, stdin, stderr, &["--insecure"])
}

/// `raftlock dev ARGS`, its client profile in `data/profile` (never the
/// real home's).
fn start_dev_with(
    data: &std::path::Path,
    base: u16,
    stdin: Stdio,
    stderr: Stdio,
    args: &[&str],
) -> Reaper {
    Reaper {
        child: Command::new(BIN)
            .args(["dev", "--port", &base.to_string()])
            .args(["--peer-port", &(base + 3).to_string()])
            .arg(format!("--data-dir={}", data.display()))
            .args(args)
            .env("RAFTLOCK_CONFIG_DIR", data.join("profile"))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap(),
        pids: Vec::new(),
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A one-node `raftlock server` on `dir`, once its data is open.
async fn server_on(dir: &std::path::Path) -> Reaper {
    let port = free_ports(2);
    let addr = format!("127.0.0.1:{port}");
    let peer_addr = format!("127.0.0.1:{}", port + 1);
    let child = Command::new(BIN)
        .args(["server", "--id", "1", "--listen", &addr])
        .args(["--peer-listen", &peer_addr])
        .arg(format!("--peers=1={peer_addr}/{addr}"))
        .arg("--insecure")
        .arg(format!("--data-dir={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = Client::new([addr.clone()]).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while client
        .node_status(&addr, Duration::from_millis(300))
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "the server never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Reaper {
        child,
        pids: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_and_server_refuse_a_data_dir_in_use_and_name_the_process() {
    let _serial = serial().await;
    let data = tempfile::TempDir::new().unwrap();
    let holder = server_on(&data.path().join("node1")).await;
    let base = free_ports(DEV_PORTS);

    let mut dev = start_dev(data.path(), base, Stdio::null(), Stdio::piped());
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        // SAFETY: SIGINT to our own child, so it stops the nodes it started.
        unsafe { libc::kill(dev.child.id() as i32, libc::SIGINT) };
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut dev.child.stdout.take().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_string(&mut dev.child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = status.unwrap_or_else(|| panic!("dev kept running:\n{stdout}\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    let want = format!(
        "another raftlock process is using {} (pid {})",
        data.path().join("node1").display(),
        holder.child.id()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(!stdout.contains("node 2"), "started nodes anyway: {stdout}");

    // The same check in `raftlock server`, instead of sled's WouldBlock.
    let out = Command::new(BIN)
        .args([
            "server",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--insecure",
        ])
        .arg(format!(
            "--data-dir={}",
            data.path().join("node1").display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&want), "{stderr}");
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_restarts_a_killed_node_and_ctrl_c_stops_every_node() {
    let _serial = serial().await;
    let data = tempfile::TempDir::new().unwrap();
    let base = free_ports(DEV_PORTS);
    let mut dev = start_dev(data.path(), base, Stdio::piped(), Stdio::null());
    let lines = lines_of(&mut dev.child);
    let mut pids = Vec::new();
    for id in 1..=3 {
        let line = expect_line(&lines, Duration::from_secs(10), |l| {
            l.trim_start().starts_with(&format!("node {id} "))
        });
        let pid = line.split_whitespace().last().unwrap().parse::<u32>();
        let pid = pid.unwrap_or_else(|_| panic!("no pid at the end of {line:?}"));
        pids.push(pid);
        dev.pids.push(pid);
    }

    // SAFETY: SIGKILL to a node dev started (a grandchild of this test).
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    expect_line(&lines, Duration::from_secs(10), |l| {
        l.starts_with("node 1 exited (signal 9)") && l.contains("restart 1")
    });
    let mut stdin = dev.child.stdin.take().unwrap();
    writeln!(stdin, "restart 1").unwrap();
    let line = expect_line(&lines, Duration::from_secs(10), |l| {
        l.starts_with("node 1 restarted, pid ")
    });
    let restarted: u32 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(restarted, pids[0]);
    dev.pids.push(restarted);

    let endpoint = format!("127.0.0.1:{base}");
    let client = Client::new([endpoint.clone()]).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .node_status(&endpoint, Duration::from_millis(300))
            .await
        {
            Ok(status) if status.has_leader => break,
            _ => assert!(Instant::now() < until, "node 1 did not rejoin"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SAFETY: SIGINT to our own child, as Ctrl-C would send it.
    unsafe { libc::kill(dev.child.id() as i32, libc::SIGINT) };
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    for pid in [restarted, pids[1], pids[2]] {
        assert!(!alive(pid), "node pid {pid} outlived dev");
    }
}

#[test]
fn server_refuses_a_malformed_join_address_at_once() {
    let data = tempfile::TempDir::new().unwrap();
    let mut server = Reaper {
        child: Command::new(BIN)
            .args(["server", "--id", "4", "--listen", "127.0.0.1:0"])
            .args(["--join", "127.0.0.1:7899,node2", "--insecure"])
            .arg(format!("--data-dir={}", data.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        pids: Vec::new(),
    };
    let until = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match server.child.try_wait().unwrap() {
            Some(status) => break status,
            None if Instant::now() > until => panic!("the server started anyway"),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"node2\" has no port"), "{stderr}");
}

/// Runs `raftlock server ARGS` that must refuse to start; its stderr.
fn refused_server(args: &[&str]) -> String {
    let data = tempfile::TempDir::new().unwrap();
    let out = Command::new(BIN)
        .args(["server", "--id", "1"])
        .args(args)
        .arg(format!("--data-dir={}", data.path().display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn server_refuses_peers_that_disagree_with_its_listeners() {
    let stderr = refused_server(&[
        "--insecure",
        "--listen=127.0.0.1:0",
        "--peer-listen=127.0.0.1:0",
        "--peers=1=127.0.0.1:7899",
    ]);
    assert!(stderr.contains("give ID=PEER_ADDR/CLIENT_ADDR"), "{stderr}");
    let stderr = refused_server(&[
        "--insecure",
        "--listen=127.0.0.1:0",
        "--peers=1=127.0.0.1:7999/127.0.0.1:7899",
    ]);
    assert!(stderr.contains("has no --peer-listen"), "{stderr}");
    let stderr = refused_server(&[
        "--insecure",
        "--listen=127.0.0.1:0",
        "--peer-listen=127.0.0.1:0",
        "--advertise=127.0.0.1:7899",
        "--join=127.0.0.1:7999",
    ]);
    assert!(stderr.contains("--advertise"), "{stderr}");
}

#[test]
fn server_needs_credentials_or_insecure() {
    let stderr = refused_server(&["--listen=127.0.0.1:0"]);
    assert!(stderr.contains("or --insecure"), "{stderr}");
    assert!(stderr.contains("raftlock certs init"), "{stderr}");
    assert!(
        stderr.contains("raftlock auth add admin --role admin"),
        "{stderr}"
    );
    let stderr = refused_server(&["--listen=127.0.0.1:0", "--tls-ca=ca.pem"]);
    assert!(
        stderr.contains("missing --tls-cert, --tls-key, --auth-file"),
        "{stderr}"
    );
    let stderr = refused_server(&["--insecure", "--auth-file=auth.toml"]);
    assert!(
        stderr.contains("--insecure cannot go with --auth-file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_do_not_outlive_a_killed_dev() {
    let _serial = serial().await;
    let data = tempfile::TempDir::new().unwrap();
    let base = free_ports(DEV_PORTS);
    let mut dev = start_dev(data.path(), base, Stdio::null(), Stdio::null());
    let lines = lines_of(&mut dev.child);
    for id in 1..=3 {
        let line = expect_line(&lines, Duration::from_secs(10), |l| {
            l.trim_start().starts_with(&format!("node {id} "))
        });
        let pid = line.split_whitespace().last().unwrap().parse::<u32>();
        dev.pids
            .push(pid.unwrap_or_else(|_| panic!("no pid at the end of {line:?}")));
    }

    // Once the cluster is quiet (a node logging into the closed pipe to a
    // dead dev may die of that alone), kill dev with no chance to clean up:
    // the nodes must notice on their own.
    let endpoint = format!("127.0.0.1:{base}");
    let client = Client::new([endpoint.clone()]).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !client
        .node_status(&endpoint, Duration::from_millis(300))
        .await
        .is_ok_and(|s| s.has_leader)
    {
        assert!(Instant::now() < until, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while dev.pids.iter().any(|pid| alive(*pid)) {
        assert!(Instant::now() < until, "nodes outlived a killed dev");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `dev` has printed its three nodes.
fn wait_for_nodes(dev: &mut Reaper) -> Receiver<String> {
    let lines = lines_of(&mut dev.child);
    for id in 1..=3 {
        let line = expect_line(&lines, Duration::from_secs(10), |l| {
            l.trim_start().starts_with(&format!("node {id} "))
        });
        if let Some(Ok(pid)) = line.split_whitespace().last().map(str::parse) {
            dev.pids.push(pid);
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_is_tls_with_a_token_from_its_profile() {
    use raftlock_proto::v1::{lock_client::LockClient, StatusRequest};
    let _serial = serial().await;
    let data = tempfile::TempDir::new().unwrap();
    let base = free_ports(DEV_PORTS);
    let mut dev = start_dev_with(data.path(), base, Stdio::null(), Stdio::null(), &[]);
    wait_for_nodes(&mut dev);
    let profile = data.path().join("profile");
    let token = std::fs::read_to_string(profile.join("token")).unwrap();
    assert!(profile.join(".written-by-raftlock-dev").exists());
    let creds = data.path().join("credentials");
    assert_eq!(
        token.trim(),
        std::fs::read_to_string(creds.join("admin.token"))
            .unwrap()
            .trim()
    );

    let endpoint = format!("127.0.0.1:{base}");
    let until = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        match support::tls_channel(&endpoint, &profile.join("ca.pem"), None).await {
            Ok(channel) => break channel,
            Err(e) => assert!(Instant::now() < until, "no TLS connection: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut client = LockClient::new(channel);
    loop {
        let status = client
            .status(support::with_token(StatusRequest {}, token.trim()))
            .await;
        match status {
            Ok(status) if status.get_ref().has_leader => break,
            _ => assert!(Instant::now() < until, "no leader: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = client.status(StatusRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // Plain text to the TLS port gets no answer.
    let plain = async {
        let mut plain = LockClient::connect(format!("http://{endpoint}")).await?;
        plain.status(StatusRequest {}).await.map_err(Into::into)
    };
    let plain: Result<_, Box<dyn std::error::Error>> =
        tokio::time::timeout(Duration::from_secs(5), plain)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
    assert!(plain.is_err(), "plain text answered: {plain:?}");
}

#[test]
fn dev_leaves_a_profile_it_did_not_write_alone() {
    let data = tempfile::TempDir::new().unwrap();
    let profile = data.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(profile.join("ca.pem"), "someone else's CA").unwrap();
    let base = free_ports(DEV_PORTS);
    let mut dev = start_dev_with(data.path(), base, Stdio::null(), Stdio::null(), &[]);
    let lines = lines_of(&mut dev.child);
    let line = expect_line(&lines, Duration::from_secs(10), |l| {
        l.starts_with("credentials in ")
    });
    assert!(line.contains("RAFTLOCK_CA="), "{line}");
    assert!(line.contains("RAFTLOCK_AUTH_TOKEN_FILE="), "{line}");
    assert!(
        line.contains("RAFTLOCK_CERT=") && line.contains("RAFTLOCK_KEY="),
        "{line}"
    );
    let ca = std::fs::read_to_string(profile.join("ca.pem")).unwrap();
    assert_eq!(ca, "someone else's CA");
    assert!(!profile.join("token").exists());
}

// `raftlock status` and `raftlock lock` against the secure dev cluster with nothing but the profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_work_against_dev_with_only_the_profile() {
    let _serial = serial().await;
    let data = tempfile::TempDir::new().unwrap();
    let base = free_ports(DEV_PORTS);
    let mut dev = start_dev_with(data.path(), base, Stdio::null(), Stdio::null(), &[]);
    wait_for_nodes(&mut dev);
    let endpoints: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("RAFTLOCK_CONFIG_DIR", data.path().join("profile"))
            .env("RAFTLOCK_ENDPOINTS", endpoints.join(","))
            .env_remove("RAFTLOCK_CA")
            .env_remove("RAFTLOCK_AUTH_TOKEN_FILE")
            .env_remove("RAFTLOCK_CERT")
            .env_remove("RAFTLOCK_KEY")
            .env_remove("RAFTLOCK_INSECURE")
            .output()
            .unwrap()
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cli(&["status"]);
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(Instant::now() < until, "status failed: {stderr}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = cli(&["lock", "dev-test", "--", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Membership changes need admin's client certificate, which the
    // profile holds (its key private): the peer port lets the CLI in, and
    // the node itself answers that 99 is no member.
    let profile = data.path().join("profile");
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(profile.join(name)).unwrap();
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode("client-key.pem"), 0o600);
    assert!(profile.join("client.pem").exists());
    let out = cli(&["cluster", "remove", "99"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node 99 is not a member"), "{stderr}");
    // Without the certificate the CLI says what is missing.
    std::fs::remove_file(profile.join("client.pem")).unwrap();
    let out = cli(&["cluster", "remove", "99"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin's client certificate"), "{stderr}");
}
