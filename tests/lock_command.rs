//! `raftlock lock NAME -- CMD` as a user runs it, with real processes
//! against a loopback cluster: the command never outlives the lock holder
//! (SIGKILL included), signals reach the command's whole process group and
//! its status becomes ours, and bad arguments are refused before any
//! network call.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{serial, Cluster};

/// `raftlock lock --endpoints CLUSTER NAME ARGS -- sh -c SCRIPT` as admin,
/// with every signal at its default disposition whatever ours are (a test
/// run under `nohup` or `&` inherits ignored SIGINT/SIGHUP).
fn lock_command(cluster: &Cluster, name: &str, args: &[&str], script: &str) -> Command {
    let mut command = Command::new(support::BIN);
    command
        .args(["lock", "--endpoints", &cluster.endpoints().join(","), name])
        .envs(cluster.cli_env())
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null());
    default_signals(&mut command);
    command
}

fn default_signals(command: &mut Command) {
    // SAFETY: signal(2) and setrlimit(2) are plain syscalls; the closure
    // runs after fork. No core files from the SIGQUIT case.
    unsafe {
        command.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            Ok(())
        });
    }
}

/// Whether `pid` still runs (a zombie nobody reaped counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => {
            !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// Waits until `path` holds a pid (written by the command).
fn read_pid(path: &Path, within: Duration) -> i32 {
    let until = Instant::now() + within;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < until, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_holder_stops_the_command_and_its_children_before_anyone_else_gets_the_lock()
{
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let dir = cluster.dir().to_path_buf();
    let (shell, writer, beats) = (dir.join("shell"), dir.join("writer"), dir.join("beats"));
    // A shell that starts a writer in the background (a grandchild of
    // `raftlock lock`) and waits, as a real job script would.
    let script = format!(
        "echo $$ > {shell}; \
         (while true; do echo beat >> {beats}; sleep 0.05; done) & echo $! > {writer}; \
         wait; echo finished >> {beats}",
        shell = shell.display(),
        writer = writer.display(),
        beats = beats.display(),
    );
    let mut holder = lock_command(&cluster, "results.h5", &["--ttl", "10"], &script)
        .spawn()
        .unwrap();
    let shell_pid = read_pid(&shell, Duration::from_secs(20));
    let writer_pid = read_pid(&writer, Duration::from_secs(5));

    holder.kill().unwrap();
    holder.wait().unwrap();
    let killed = Instant::now();
    while (alive(shell_pid) || alive(writer_pid)) && killed.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(shell_pid) && !alive(writer_pid),
        "the command (pid {shell_pid}) or its child (pid {writer_pid}) outlived `raftlock lock` by 3 s"
    );

    // The next holder finds the writer silent: nothing was appended from
    // the moment it got the lock until its own command finished.
    let second = dir.join("second");
    let status = lock_command(
        &cluster,
        "results.h5",
        &["--timeout", "30"],
        &format!(
            "wc -l < {beats} > {second}; sleep 0.5; wc -l < {beats} >> {second}",
            beats = beats.display(),
            second = second.display()
        ),
    )
    .status()
    .unwrap();
    assert_eq!(status.code(), Some(0));
    let counts = std::fs::read_to_string(&second).unwrap();
    let counts: Vec<&str> = counts.lines().map(str::trim).collect();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(
        counts[0], counts[1],
        "the first command kept writing under the second holder's lock"
    );
    assert!(!std::fs::read_to_string(&beats)
        .unwrap()
        .contains("finished"));
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT to `raftlock lock` reach the whole
/// group at once (the shell's foreground `sleep` too, so the shell's trap
/// runs now, not in 60 s), and the command's status is ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_commands_group_and_its_status_is_ours() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let dir = cluster.dir().to_path_buf();
    let client = cluster.client();
    for (sig, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        let started = dir.join(format!("started-{name}"));
        // `started` is written by the shell's child, so the signal cannot
        // come between the shell's check for it and the fork of `sleep`.
        let script = format!(
            "trap 'echo trapped; exit 3' {name}; sh -c 'touch {started}; exec sleep 60'",
            started = started.display()
        );
        let mut holder = lock_command(&cluster, "signalled", &[], &script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while !started.exists() {
            assert!(Instant::now() < until, "the command never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&holder, sig);
        let status = wait_exit(&mut holder, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("SIG{name}: still running 5 s later"));
        let out = std::io::read_to_string(holder.stdout.take().unwrap()).unwrap();
        assert_eq!(out.trim(), "trapped", "SIG{name}");
        assert_eq!(
            status.code(),
            Some(3),
            "SIG{name}: the command's own status"
        );
        // Released on the way out, not left to expire.
        assert!(client.get_lock("signalled").await.unwrap().is_none());
    }
}

/// A lock lost while the command is stopped (Ctrl-Z outlasting the TTL)
/// still stops the command now, not after `--grace`: SIGTERM to a stopped
/// process waits until it is continued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_command_is_stopped_for_good_when_the_lock_is_lost() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let shell = cluster.dir().join("shell");
    let script = format!("echo $$ > {}; sleep 60", shell.display());
    let mut holder = lock_command(
        &cluster,
        "stopped",
        &["--ttl", "2", "--grace", "30"],
        &script,
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let shell_pid = read_pid(&shell, Duration::from_secs(20));
    let stat = std::fs::read_to_string(format!("/proc/{shell_pid}/stat")).unwrap();
    let pgid: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the command's group and on our cluster's nodes.
    unsafe {
        libc::kill(-pgid, libc::SIGSTOP);
    }
    // The cluster stops answering: the session is lost after the TTL.
    for id in 1..=3 {
        cluster.signal(id, libc::SIGSTOP);
    }
    let status = wait_exit(&mut holder, Duration::from_secs(10));
    for id in 1..=3 {
        cluster.signal(id, libc::SIGCONT);
    }
    let status = status.expect("the stopped command was left for --grace");
    assert_eq!(status.code(), Some(76));
    assert!(!alive(shell_pid));
}

/// While waiting, a signal leaves the queue and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_waiting_leaves_the_queue() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let holder = client
        .open_session(raftlock_client::SessionOptions::default())
        .await
        .unwrap();
    holder
        .lock("busy", raftlock_client::Wait::No)
        .await
        .unwrap();
    let ran = cluster.dir().join("ran");
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let mut waiter = lock_command(&cluster, "busy", &[], &format!("touch {}", ran.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while client
            .get_lock("busy")
            .await
            .unwrap()
            .unwrap()
            .waiters
            .is_empty()
        {
            assert!(Instant::now() < until, "never queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal(&waiter, sig);
        let status = wait_exit(&mut waiter, Duration::from_secs(5)).expect("exits at once");
        assert_eq!(status.code(), Some(128 + sig));
        assert!(client
            .get_lock("busy")
            .await
            .unwrap()
            .unwrap()
            .waiters
            .is_empty());
    }
    assert!(!ran.exists());
}

/// A signal ignored when `raftlock lock` starts (`nohup`, `cmd &` in a
/// script) stays ignored, by it and by the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_ignored_at_start_stays_ignored() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let started = cluster.dir().join("started");
    let mut holder = lock_command(
        &cluster,
        "nohup",
        &[],
        &format!("touch {}; sleep 60", started.display()),
    );
    // SAFETY: signal(2) is async-signal-safe; runs after the reset above.
    unsafe {
        holder.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut holder = holder.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < until, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&holder, libc::SIGHUP);
    assert!(wait_exit(&mut holder, Duration::from_secs(1)).is_none());
    signal(&holder, libc::SIGTERM);
    let status = wait_exit(&mut holder, Duration::from_secs(5)).expect("SIGTERM stops it");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_run_exits_as_a_shell_would() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints().join(",");
    let not_executable = cluster.dir().join("data.txt");
    std::fs::write(&not_executable, "not a program").unwrap();
    for (program, code) in [
        ("/no/such/program", 127),
        (not_executable.to_str().unwrap(), 126),
    ] {
        let out = Command::new(support::BIN)
            .args(["lock", "--endpoints", &endpoints, "runs", "--", program])
            .envs(cluster.cli_env())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{program}");
    }
    assert!(cluster.client().get_lock("runs").await.unwrap().is_none());
}

/// Bad durations are usage errors (exit 2) in the flag's unit, before any
/// network call: the endpoint here answers nothing.
#[test]
fn bad_durations_are_refused_at_once_in_seconds() {
    for (args, message) in [
        (&["--ttl", "0"][..], "must be 1 to 3600 seconds"),
        (&["--ttl", "-1"][..], "must be 1 to 3600 seconds"),
        (&["--ttl", "3601"][..], "must be 1 to 3600 seconds"),
        (&["--lock-delay", "61"][..], "must be 0 to 60 seconds"),
        (&["--timeout", "-1"][..], "must be 0 to 31536000 seconds"),
        (&["--grace", "soon"][..], "not a number of seconds"),
    ] {
        let started = Instant::now();
        let out = Command::new(support::BIN)
            .args(["lock", "--endpoints", "127.0.0.1:9", "x"])
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(
            !err.contains("'-- "),
            "{args:?}: clap's tip is wrong here: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{args:?}");
    }
    let help = Command::new(support::BIN)
        .args(["lock", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("1 to 3600"), "{help}");
    assert!(help.contains("0 to 60"), "{help}");
}

/// `--endpoints` belongs to the client commands, not to the nodes.
#[test]
fn endpoints_is_a_client_commands_flag() {
    let help = |args: &[&str]| {
        let out = Command::new(support::BIN).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for command in ["server", "dev"] {
        assert!(
            !help(&[command, "--help"]).contains("--endpoints"),
            "{command}"
        );
    }
    for command in ["lock", "status", "locks", "cluster"] {
        assert!(
            help(&[command, "--help"]).contains("--endpoints"),
            "{command}"
        );
    }
    let out = Command::new(support::BIN)
        .args(["--endpoints", "127.0.0.1:9", "server", "--id", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
