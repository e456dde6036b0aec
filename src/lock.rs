//! `raftlock lock NAME -- CMD`: runs CMD while holding NAME.

use std::time::Duration;

use clap::Args;
use raftlock_client::{Client, Error, SessionOptions, Wait};
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

use crate::exit;

#[derive(Args)]
#[command(after_help = "\
Exit status: the command's own (128+N if it died of signal N), or
  75  the lock was not acquired in time (or at once, with --no-wait); nothing ran
  76  the lock was lost while the command ran; it was sent SIGTERM, then SIGKILL
  69  the cluster could not be reached, or another error

The command sees RAFTLOCK_NAME (the lock) and RAFTLOCK_TOKEN (the fencing
token: pass it to anything that can refuse writes with an older token).")]
pub struct LockArgs {
    /// The lock's name (any text up to 512 bytes; ':' is fine).
    name: String,
    /// Session TTL in seconds: if this process dies, the lock is freed this long after.
    #[arg(long, default_value = "10", value_parser = crate::parse_duration_secs)]
    ttl: Duration,
    /// Give up if the lock is not free within this many seconds.
    #[arg(long, value_parser = crate::parse_duration_secs, conflicts_with = "no_wait")]
    timeout: Option<Duration>,
    /// Do not wait: fail at once if the lock is held.
    #[arg(long)]
    no_wait: bool,
    /// If this session expires, keep its locks from others for this many seconds.
    #[arg(long, default_value = "0", value_parser = crate::parse_duration_secs)]
    lock_delay: Duration,
    /// After SIGTERM on a lost lock, wait this many seconds before SIGKILL.
    #[arg(long, default_value = "10", value_parser = crate::parse_duration_secs)]
    grace: Duration,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(endpoints: &[String], args: LockArgs) -> i32 {
    let client = match Client::new(endpoints.iter().cloned()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let options = SessionOptions {
        ttl: args.ttl,
        lock_delay: args.lock_delay,
        ..SessionOptions::default()
    };
    let session = match client.open_session(options).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let wait = match (args.no_wait, args.timeout) {
        (true, _) => Wait::No,
        (false, Some(t)) => Wait::For(t),
        (false, None) => Wait::Forever,
    };
    // Interrupted while waiting: leave the queue rather than be granted a
    // lock nobody will use until the session expires.
    let waited = tokio::select! {
        waited = session.lock(&args.name, wait) => Ok(waited),
        _ = interrupt.recv() => Err(128 + libc::SIGINT),
        _ = terminate.recv() => Err(128 + libc::SIGTERM),
    };
    let grant = match waited {
        Ok(Ok(grant)) => grant,
        Ok(Err(e)) => {
            let _ = session.close().await;
            eprintln!("raftlock: {e}");
            return match e {
                Error::NotAcquired { .. } => exit::NOT_ACQUIRED,
                _ => exit::UNAVAILABLE,
            };
        }
        Err(code) => {
            let _ = session.close().await;
            eprintln!(
                "raftlock: interrupted while waiting for {:?}; nothing ran",
                args.name
            );
            return code;
        }
    };
    tracing::info!(name = %grant.name, token = grant.token, "lock acquired");

    let mut child = match Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("RAFTLOCK_NAME", &args.name)
        .env("RAFTLOCK_TOKEN", grant.token.to_string())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let _ = session.close().await;
            eprintln!("raftlock: cannot run {:?}: {e}", args.command[0]);
            return 127;
        }
    };

    let code = loop {
        tokio::select! {
            status = child.wait() => break exit_code(status),
            reason = session.lost() => {
                eprintln!("raftlock: lock {:?} lost ({reason}); stopping the command", args.name);
                stop_child(&mut child, args.grace).await;
                break exit::LOCK_LOST;
            }
            // Pass Ctrl-C / SIGTERM on and keep the lock until the command exits.
            _ = interrupt.recv() => forward(&child, libc::SIGINT),
            _ = terminate.recv() => forward(&child, libc::SIGTERM),
        }
    };
    if code != exit::LOCK_LOST {
        if let Err(e) = session.close().await {
            eprintln!(
                "raftlock: could not release {:?} ({e}); it frees itself when the session expires",
                args.name
            );
        }
    }
    code
}

fn fail(e: &Error) -> i32 {
    eprintln!("raftlock: {e}");
    exit::UNAVAILABLE
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("raftlock: waiting for the command: {e}");
            exit::UNAVAILABLE
        }
    }
}

fn forward(child: &tokio::process::Child, sig: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

async fn stop_child(child: &mut tokio::process::Child, grace: Duration) {
    forward(child, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
