//! `raftlock dev`: a local cluster of `raftlock server` child processes in
//! the foreground, which restarts a node you killed when you ask it to.
//! Secure by default (TLS and a token, see `dev_credentials`); plain text
//! with `--insecure`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::task::JoinSet;

use super::dev_credentials::DevCredentials;
use super::{datadir, wait_for_stop_signal, TimingArgs};
use crate::exit;

#[derive(Args)]
pub struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// Data directory; each node uses a subdirectory. Reused on restart.
    #[arg(long, default_value = "data/dev")]
    data_dir: PathBuf,
    /// First client port; node N serves clients on PORT + N - 1.
    #[arg(long, default_value_t = 7899)]
    port: u16,
    /// First peer port (Raft and membership changes); node N serves the
    /// other nodes on PEER_PORT + N - 1. Default: PORT + 100 (7999, 8000, ...).
    #[arg(long)]
    peer_port: Option<u16>,
    #[command(flatten)]
    timings: TimingArgs,
    /// Plain text, no authentication. Without it the nodes use TLS and a
    /// token, made on the first start in DATA_DIR/credentials, and the
    /// client profile is written so local commands find them.
    #[arg(long)]
    insecure: bool,
}

/// How long stopping nodes get before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How to start each node, so a killed one can be started again the same way.
struct Launcher {
    exe: PathBuf,
    /// Node id -> the address it serves clients on.
    addrs: BTreeMap<u64, String>,
    command_lines: BTreeMap<u64, Vec<String>>,
}

impl Launcher {
    /// Node N serves clients on `--port` + N - 1 and the other nodes on
    /// `--peer-port` + N - 1, and keeps its data in its own subdirectory;
    /// all share the timings.
    fn new(exe: PathBuf, args: &DevArgs, credentials: Option<&DevCredentials>) -> Launcher {
        let addr = |first: u16, id: u64| format!("127.0.0.1:{}", u64::from(first) + id - 1);
        let ids = 1..=u64::from(args.nodes);
        let addrs: BTreeMap<u64, String> =
            ids.clone().map(|id| (id, addr(args.port, id))).collect();
        let peer_addrs: BTreeMap<u64, String> =
            ids.map(|id| (id, addr(peer_port(args), id))).collect();
        let peers: Vec<String> = addrs
            .iter()
            .map(|(id, a)| format!("{id}={}/{a}", peer_addrs[id]))
            .collect();
        let command_lines = addrs
            .iter()
            .map(|(id, addr)| {
                let security = match credentials {
                    Some(credentials) => credentials.server_args(*id),
                    None => vec!["--insecure".to_string()],
                };
                let mut command_line = vec![
                    "server".to_string(),
                    format!("--id={id}"),
                    format!("--listen={addr}"),
                    format!("--peer-listen={}", peer_addrs[id]),
                    format!("--peers={}", peers.join(",")),
                    format!("--data-dir={}", node_dir(args, *id).display()),
                    format!("--heartbeat-ms={}", args.timings.heartbeat_ms),
                    format!("--election-min-ms={}", args.timings.election_min_ms),
                    format!("--election-max-ms={}", args.timings.election_max_ms),
                    format!("--snapshot-every={}", args.timings.snapshot_every),
                ];
                command_line.extend(security);
                (*id, command_line)
            })
            .collect();
        Launcher {
            exe,
            addrs,
            command_lines,
        }
    }

    fn spawn(&self, id: u64) -> std::io::Result<Child> {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(&self.command_lines[&id])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // A `dev` that is killed outright (SIGKILL, no Ctrl-C handling) must
        // not leave its nodes running, holding their ports and data dirs.
        // The death signal follows the forking thread: this runs on the
        // thread driving `dev` itself, which lives as long as `dev` does.
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // `dev` died before the line above took effect.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("raftlock dev is gone"));
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(prefix_lines(id, stderr));
        }
        Ok(child)
    }
}

/// Runs each node as its own `raftlock server` child process, so you can
/// `kill -9` one and watch the others carry on; `restart N` on stdin starts
/// it again. Their logs are prefixed with the node id. Ctrl-C stops them all.
pub async fn dev(args: DevArgs) -> i32 {
    let launcher = match prepare(&args) {
        Ok(launcher) => launcher,
        Err(code) => return code,
    };
    let mut nodes = Nodes::new(launcher);
    if let Err(code) = nodes.start_all(&args) {
        return code;
    }
    print_banner(&nodes.launcher.addrs, &nodes.launcher.exe, args.insecure);
    match nodes.serve().await {
        Served::AllExited => exit::FAILURE,
        Served::Stopped => nodes.stop().await,
    }
}

/// How to start each node, once the ports fit and no data directory is in
/// use. `Err` is the exit status, the reason already said.
fn prepare(args: &DevArgs) -> Result<Launcher, i32> {
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("raftlock dev: cannot find my own binary: {e}");
        exit::FAILURE
    })?;
    if let Err(message) = check_ports(args) {
        eprintln!("raftlock dev: {message}");
        return Err(exit::USAGE);
    }
    // Before starting anything: a node started by hand (or a dev cluster
    // in another shell) on one of these directories would leave this one
    // a node short.
    for id in 1..=u64::from(args.nodes) {
        if let Err(message) = datadir::check_free(&node_dir(args, id)) {
            eprintln!("raftlock dev: {message}");
            return Err(exit::FAILURE);
        }
    }
    let credentials = match args.insecure {
        true => None,
        false => Some(secure(args)?),
    };
    Ok(Launcher::new(exe, args, credentials.as_ref()))
}

/// The dev cluster's credentials and the client profile; `Err` is the exit
/// status, the reason already said.
fn secure(args: &DevArgs) -> Result<DevCredentials, i32> {
    let fail = |message: String| {
        eprintln!("raftlock dev: {message}");
        exit::FAILURE
    };
    let credentials = DevCredentials::prepare(&args.data_dir, args.nodes.into()).map_err(fail)?;
    credentials.publish_profile().map_err(fail)?;
    Ok(credentials)
}

/// The nodes' processes: how to start each, and which are running.
struct Nodes {
    launcher: Launcher,
    /// Node id -> pid, of the running ones.
    running: BTreeMap<u64, u32>,
    /// Each running node's end: its id and how it exited.
    exits: JoinSet<(u64, String)>,
}

/// Why [`Nodes::serve`] returned.
enum Served {
    /// Ctrl-C or SIGTERM: stop the nodes.
    Stopped,
    /// No node is left running.
    AllExited,
}

impl Nodes {
    fn new(launcher: Launcher) -> Nodes {
        Nodes {
            launcher,
            running: BTreeMap::new(),
            exits: JoinSet::new(),
        }
    }

    /// Starts node `id`; its pid.
    fn start(&mut self, id: u64) -> std::io::Result<u32> {
        let child = self.launcher.spawn(id)?;
        let pid = child.id().unwrap_or(0);
        self.running.insert(id, pid);
        self.exits.spawn(wait(id, child));
        Ok(pid)
    }

    /// Starts every node, saying where each runs. `Err` is the exit status.
    fn start_all(&mut self, args: &DevArgs) -> Result<(), i32> {
        let addrs = self.launcher.addrs.clone();
        let span = args.nodes.saturating_sub(1);
        let last_port = args.port.saturating_add(span);
        let peer = peer_port(args);
        println!(
            "raftlock dev cluster: {} nodes, clients on ports {}-{last_port}, \
             peers on {peer}-{}, data in {}",
            args.nodes,
            args.port,
            peer.saturating_add(span),
            args.data_dir.display()
        );
        for (id, addr) in addrs {
            match self.start(id) {
                Ok(pid) => println!("  node {id}  {addr}  pid {pid}"),
                Err(e) => {
                    eprintln!("raftlock dev: starting node {id}: {e}");
                    return Err(exit::FAILURE);
                }
            }
        }
        Ok(())
    }

    /// Reports nodes that exit and restarts those stdin asks for, until a
    /// stop signal or until none is left.
    async fn serve(&mut self) -> Served {
        let ids: Vec<u64> = self.launcher.addrs.keys().copied().collect();
        let mut commands = Some(stdin_lines());
        loop {
            tokio::select! {
                _ = wait_for_stop_signal() => return Served::Stopped,
                Some(Ok((id, status))) = self.exits.join_next() => {
                    self.running.remove(&id);
                    println!(
                        "node {id} exited ({status}); {} still running. \
                         Type `restart {id}` (or just Enter) to start it again.",
                        self.running.len()
                    );
                    if self.running.is_empty() {
                        return Served::AllExited;
                    }
                }
                line = recv(&mut commands), if commands.is_some() => match line {
                    Some(line) => {
                        for id in to_restart(&line, &ids, &self.running) {
                            match self.start(id) {
                                Ok(pid) => println!("node {id} restarted, pid {pid}"),
                                Err(e) => println!("node {id} did not start: {e}"),
                            }
                        }
                    }
                    None => commands = None,
                },
            }
        }
    }

    /// Stops every running node: SIGTERM, then (by dropping them) SIGKILL
    /// for those that take too long. The exit status.
    async fn stop(mut self) -> i32 {
        println!("stopping the dev cluster");
        for pid in self.running.values() {
            // SAFETY: kill(2) on our own children; no memory is touched.
            unsafe {
                libc::kill(*pid as i32, libc::SIGTERM);
            }
        }
        let all_stopped = tokio::time::timeout(STOP_GRACE, async {
            while self.exits.join_next().await.is_some() {}
        });
        if all_stopped.await.is_err() {
            // Dropping the join set drops the children, which kills them.
            eprintln!(
                "raftlock dev: some nodes did not stop in {} s; killing them",
                STOP_GRACE.as_secs()
            );
            return exit::FAILURE;
        }
        exit::OK
    }
}

/// The first peer port: `--peer-port`, else 100 above `--port` (or below,
/// near the top of the range).
fn peer_port(args: &DevArgs) -> u16 {
    args.peer_port.unwrap_or_else(|| {
        args.port
            .checked_add(100)
            .unwrap_or_else(|| args.port.saturating_sub(100))
    })
}

/// Both port ranges fit below 65536 and do not overlap.
fn check_ports(args: &DevArgs) -> Result<(), String> {
    let span = args.nodes.saturating_sub(1);
    let peer = peer_port(args);
    let (Some(last), Some(peer_last)) = (args.port.checked_add(span), peer.checked_add(span))
    else {
        return Err(format!(
            "--port {} / --peer-port {peer} leave no room for {} nodes",
            args.port, args.nodes
        ));
    };
    if args.port <= peer_last && peer <= last {
        return Err(format!(
            "client ports {}-{last} and peer ports {peer}-{peer_last} overlap",
            args.port
        ));
    }
    Ok(())
}

fn node_dir(args: &DevArgs, id: u64) -> PathBuf {
    args.data_dir.join(format!("node{id}"))
}

fn print_banner(addrs: &BTreeMap<u64, String>, exe: &std::path::Path, insecure: bool) {
    let endpoints: Vec<&str> = addrs.values().map(String::as_str).collect();
    println!();
    println!("Try it from another shell:");
    println!("  export RAFTLOCK_ENDPOINTS={}", endpoints.join(","));
    if insecure {
        // A profile from an earlier secure dev cluster would ask for TLS.
        println!("  export RAFTLOCK_INSECURE=1");
    }
    println!("  raftlock status");
    println!("  raftlock lock results.h5 -- sh -c 'echo \"token $RAFTLOCK_TOKEN\"; sleep 5'");
    println!("  raftlock locks");
    println!("  kill -9 <a node's pid>    # the others elect a leader and carry on");
    println!(
        "(raftlock is {}; `cargo run --release -- status` works too.)",
        exe.display()
    );
    println!(
        "Here: `restart N` (or just Enter) starts a killed node again; Ctrl-C stops them all."
    );
    println!("The next `raftlock dev` resumes from the same data.");
}

/// The nodes a line typed on stdin asks to restart: Enter or `restart`
/// means every stopped one; `restart N` (or just `N`) node N. Says why
/// when there is nothing to do.
fn to_restart(line: &str, ids: &[u64], running: &BTreeMap<u64, u32>) -> Vec<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let stopped = || ids.iter().copied().filter(|id| !running.contains_key(id));
    let wanted: Vec<u64> = match words.as_slice() {
        [] | ["restart"] => {
            let all: Vec<u64> = stopped().collect();
            if all.is_empty() {
                println!("every node is running (`restart N` starts node N once it has stopped)");
            }
            return all;
        }
        [id] if id.parse::<u64>().is_ok() => restart_one(id, ids),
        ["restart", id] => restart_one(id, ids),
        _ => {
            println!(
                "commands: `restart N` (or N) restarts node N; Enter restarts every stopped node"
            );
            return Vec::new();
        }
    };
    wanted
        .into_iter()
        .filter(|id| {
            let stopped = !running.contains_key(id);
            if !stopped {
                println!("node {id} is running (pid {})", running[id]);
            }
            stopped
        })
        .collect()
}

fn restart_one(id: &str, ids: &[u64]) -> Vec<u64> {
    match id.parse::<u64>() {
        Ok(id) if ids.contains(&id) => vec![id],
        _ => {
            println!("no node {id:?}: the nodes are 1 to {}", ids.len());
            Vec::new()
        }
    }
}

/// Lines typed on stdin, until it closes.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (send, receive) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if send.send(line).await.is_err() {
                break;
            }
        }
    });
    receive
}

async fn recv(commands: &mut Option<tokio::sync::mpsc::Receiver<String>>) -> Option<String> {
    match commands {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn wait(id: u64, mut child: Child) -> (u64, String) {
    (id, describe(child.wait().await))
}

async fn prefix_lines(id: u64, stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("node{id}| {line}");
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown".into(),
        },
        Err(e) => e.to_string(),
    }
}
