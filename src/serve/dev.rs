//! `raftlock dev`: a local cluster of `raftlock server` child processes in
//! the foreground, which restarts a node you killed when you ask it to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

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
    /// First port; node N listens on port + N - 1.
    #[arg(long, default_value_t = 7899)]
    port: u16,
    #[command(flatten)]
    timings: TimingArgs,
}

/// How to start each node, so a killed one can be started again the same way.
struct Launcher {
    exe: PathBuf,
    command_lines: BTreeMap<u64, Vec<String>>,
}

impl Launcher {
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
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("raftlock dev: cannot find my own binary: {e}");
            return exit::FAILURE;
        }
    };
    let ids: Vec<u64> = (1..=u64::from(args.nodes)).collect();
    let Some(last_port) = args.port.checked_add(args.nodes.saturating_sub(1)) else {
        eprintln!(
            "raftlock dev: --port {} leaves no room for {} nodes",
            args.port, args.nodes
        );
        return exit::USAGE;
    };
    // Before starting anything: a node started by hand (or a dev cluster
    // in another shell) on one of these directories would leave this one
    // a node short.
    for id in &ids {
        if let Err(message) = datadir::check_free(&node_dir(&args, *id)) {
            eprintln!("raftlock dev: {message}");
            return exit::FAILURE;
        }
    }
    let addrs: BTreeMap<u64, String> = ids
        .iter()
        .map(|id| (*id, format!("127.0.0.1:{}", u64::from(args.port) + id - 1)))
        .collect();
    let peers: Vec<String> = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect();
    let launcher = Launcher {
        exe,
        command_lines: addrs
            .iter()
            .map(|(id, addr)| {
                let command_line = vec![
                    "server".to_string(),
                    format!("--id={id}"),
                    format!("--listen={addr}"),
                    format!("--peers={}", peers.join(",")),
                    format!("--data-dir={}", node_dir(&args, *id).display()),
                    format!("--heartbeat-ms={}", args.timings.heartbeat_ms),
                    format!("--election-min-ms={}", args.timings.election_min_ms),
                    format!("--election-max-ms={}", args.timings.election_max_ms),
                    format!("--snapshot-every={}", args.timings.snapshot_every),
                ];
                (*id, command_line)
            })
            .collect(),
    };
    println!(
        "raftlock dev cluster: {} nodes on ports {}-{last_port}, data in {}",
        args.nodes,
        args.port,
        args.data_dir.display()
    );
    let mut running: BTreeMap<u64, u32> = BTreeMap::new();
    let mut exits = tokio::task::JoinSet::new();
    for (id, addr) in &addrs {
        match launcher.spawn(*id) {
            Ok(child) => {
                let pid = child.id().unwrap_or(0);
                println!("  node {id}  {addr}  pid {pid}");
                running.insert(*id, pid);
                exits.spawn(wait(*id, child));
            }
            Err(e) => {
                eprintln!("raftlock dev: starting node {id}: {e}");
                return exit::FAILURE;
            }
        }
    }
    print_banner(&addrs, &launcher.exe);

    let mut commands = Some(stdin_lines());
    loop {
        tokio::select! {
            _ = wait_for_stop_signal() => break,
            Some(Ok((id, status))) = exits.join_next() => {
                running.remove(&id);
                println!(
                    "node {id} exited ({status}); {} still running. \
                     Type `restart {id}` (or just Enter) to start it again.",
                    running.len()
                );
                if running.is_empty() {
                    return exit::FAILURE;
                }
            }
            line = recv(&mut commands), if commands.is_some() => match line {
                Some(line) => {
                    for id in to_restart(&line, &ids, &running) {
                        match launcher.spawn(id) {
                            Ok(child) => {
                                let pid = child.id().unwrap_or(0);
                                println!("node {id} restarted, pid {pid}");
                                running.insert(id, pid);
                                exits.spawn(wait(id, child));
                            }
                            Err(e) => println!("node {id} did not start: {e}"),
                        }
                    }
                }
                None => commands = None,
            },
        }
    }
    println!("stopping the dev cluster");
    for pid in running.values() {
        // SAFETY: kill(2) on our own children; no memory is touched.
        unsafe {
            libc::kill(*pid as i32, libc::SIGTERM);
        }
    }
    let all_stopped = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while exits.join_next().await.is_some() {}
    });
    if all_stopped.await.is_err() {
        // Dropping the join set drops the children, which kills them.
        eprintln!("raftlock dev: some nodes did not stop in 10 s; killing them");
        return exit::FAILURE;
    }
    exit::OK
}

fn node_dir(args: &DevArgs, id: u64) -> PathBuf {
    args.data_dir.join(format!("node{id}"))
}

fn print_banner(addrs: &BTreeMap<u64, String>, exe: &std::path::Path) {
    let endpoints: Vec<&str> = addrs.values().map(String::as_str).collect();
    println!();
    println!("Try it from another shell:");
    println!("  export RAFTLOCK_ENDPOINTS={}", endpoints.join(","));
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
