//! `raftlock lock NAME -- CMD`: runs CMD while holding NAME (exclusively,
//! shared with other readers, or as one of a semaphore's holders).

use std::time::Duration;

use clap::Args;
use raftlock_client::{Client, Error, Grant, LockMode, Session, SessionOptions, Wait};
use tokio::process::Command;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::exit;
use crate::guarded::Guarded;

#[derive(Args)]
#[command(after_help = "\
Exit status: the command's own (128+N if it died of signal N), or
  75  the lock was not acquired in time (or at once, with --no-wait); nothing ran
  76  the lock was lost while the command ran; it was sent SIGTERM, then SIGKILL
  77  the cluster refused this client: unknown token, a role or lock name not
      allowed, or a failed TLS handshake (wrong CA); nothing ran
  69  the cluster could not be reached, or another error (such as the name
      being in use in another mode, or as a semaphore with another limit)
  2   bad arguments (see above), or credentials that cannot be used (a
      missing CA file, a token file others can read); nothing ran
  126 the command could not be run (e.g. not executable); 127: not found

Signals to raftlock lock while the command runs: SIGINT, SIGTERM, SIGHUP
and SIGQUIT go to the command's process group; the lock is kept until the
command exits, and its status is ours. SIGKILL kills the command's process
group at once. While waiting for the lock, any of those four leaves the
queue and exits 128+N with nothing run. A signal ignored when raftlock
lock starts (nohup, & in a script) stays ignored.

By default the lock is exclusive. With --shared, any number of shared
holders run together and none with an exclusive one; with --limit N, at
most N commands hold the name at once (a semaphore: every user of the name
must give the same N). One queue serves all, first come, first served.

The command sees RAFTLOCK_NAME (the lock) and RAFTLOCK_TOKEN (the fencing
token: pass it to anything that can refuse writes with an older token).")]
pub struct LockArgs {
    /// The lock's name (any text up to 512 bytes; ':' is fine).
    name: String,
    /// Session TTL in seconds, 1 to 3600: if this process dies, the lock is freed this long after.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = crate::args::ttl, allow_negative_numbers = true)]
    ttl: Duration,
    /// Give up if the lock is not free within this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::args::wait, allow_negative_numbers = true, conflicts_with = "no_wait")]
    timeout: Option<Duration>,
    /// Do not wait: fail at once if the lock is held.
    #[arg(long)]
    no_wait: bool,
    /// If this session expires, keep its locks from others for this many seconds, 0 to 60.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = crate::args::lock_delay, allow_negative_numbers = true)]
    lock_delay: Duration,
    /// After SIGTERM on a lost lock, wait this many seconds before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = crate::args::wait, allow_negative_numbers = true)]
    grace: Duration,
    /// Hold the lock shared: together with other --shared holders, never with an exclusive one.
    #[arg(long, conflicts_with = "limit")]
    shared: bool,
    /// Hold one of N slots of a semaphore, 1 to 65536: at most N holders at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    limit: Option<u32>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl LockArgs {
    /// The mode the flags ask for.
    fn mode(&self) -> LockMode {
        match (self.shared, self.limit) {
            (_, Some(limit)) => LockMode::Semaphore { limit },
            (true, None) => LockMode::Shared,
            (false, None) => LockMode::Exclusive,
        }
    }
}

/// The signals we pass on to the command; see `after_help`.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Runs the command under the lock: opens a session, waits for the lock,
/// runs the command until it exits or the lock is lost, and releases.
/// Returns the exit status (see `after_help`).
pub async fn run(client: Client, args: LockArgs) -> i32 {
    // Before any network call: a signal now must not kill us mid-queue.
    let mut signals = Signals::new();
    let session = match open_session(&client, &args, &mut signals).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let grant = match acquire(&session, &args, &mut signals).await {
        Ok(grant) => grant,
        Err(code) => return code,
    };
    tracing::info!(name = %grant.name, token = grant.token, mode = %grant.mode, "lock acquired");
    let running = match start(&session, &args, grant.token).await {
        Ok(running) => running,
        Err(code) => return code,
    };
    let code = supervise(running, &session, &args, &mut signals).await;
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

/// The session the lock is taken for, unless a signal comes first.
/// `Err` is the exit status, the reason already said.
async fn open_session(
    client: &Client,
    args: &LockArgs,
    signals: &mut Signals,
) -> Result<Session, i32> {
    let options = SessionOptions {
        ttl: args.ttl,
        lock_delay: args.lock_delay,
        ..SessionOptions::default()
    };
    tokio::select! {
        opened = client.open_session(options) => opened.map_err(|e| exit::unavailable(&e)),
        sig = signals.recv() => {
            eprintln!("raftlock: interrupted while connecting; nothing ran");
            Err(exit::signalled(sig))
        }
    }
}

/// Waits for the lock as the flags say. Not granted, or interrupted, it
/// ends the session (leaving the queue rather than be granted a lock
/// nobody will use until the session expires); `Err` is the exit status.
async fn acquire(session: &Session, args: &LockArgs, signals: &mut Signals) -> Result<Grant, i32> {
    let wait = match (args.no_wait, args.timeout) {
        (true, _) => Wait::No,
        (false, Some(t)) => Wait::For(t),
        (false, None) => Wait::Forever,
    };
    let (message, code) = tokio::select! {
        waited = session.lock_with(&args.name, wait, args.mode()) => match waited {
            Ok(grant) => return Ok(grant),
            Err(e @ Error::NotAcquired { .. }) => (e.to_string(), exit::NOT_ACQUIRED),
            Err(e) => (e.to_string(), exit::code(&e)),
        },
        sig = signals.recv() => (
            format!("interrupted while waiting for {:?}; nothing ran", args.name),
            exit::signalled(sig),
        ),
    };
    let _ = session.close().await;
    eprintln!("raftlock: {message}");
    Err(code)
}

/// The command, running under its guard, and the watch for our own
/// SIGCONT (we were stopped with the command, Ctrl-Z, and continued).
struct Running {
    child: Guarded,
    continued: Signal,
}

/// Starts the command with the lock's name and fencing token in its
/// environment. If it cannot start, ends the session; `Err` is the exit
/// status, as a shell reports a command it cannot run.
async fn start(session: &Session, args: &LockArgs, token: u64) -> Result<Running, i32> {
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("RAFTLOCK_NAME", &args.name)
        .env("RAFTLOCK_TOKEN", token.to_string());
    // Before the command runs: it may be stopped (and we with it) at once.
    let continued = signal(SignalKind::from_raw(libc::SIGCONT)).expect("SIGCONT handler");
    match Guarded::spawn(command) {
        Ok(child) => Ok(Running { child, continued }),
        Err(e) => {
            let _ = session.close().await;
            eprintln!("raftlock: cannot run {:?}: {e}", args.command[0]);
            Err(match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_RUN,
            })
        }
    }
}

/// Waits for the command, passing our signals on to it, and stops it if
/// the lock is lost. Its exit status, or [`exit::LOCK_LOST`].
async fn supervise(
    mut running: Running,
    session: &Session,
    args: &LockArgs,
    signals: &mut Signals,
) -> i32 {
    let child = &mut running.child;
    loop {
        tokio::select! {
            status = child.wait() => return exit_code(status),
            reason = session.lost() => {
                eprintln!("raftlock: lock {:?} lost ({reason}); stopping the command", args.name);
                stop_child(child, args.grace).await;
                return exit::LOCK_LOST;
            }
            // Pass it on and keep the lock until the command exits.
            sig = signals.recv() => child.signal(sig),
            _ = running.continued.recv() => child.resume(),
        }
    }
}

/// The signals we act on, minus those ignored when we started: nohup's
/// SIGHUP, or SIGINT for `cmd &` in a script, stay ignored (for the
/// command too, which inherits the disposition).
struct Signals {
    /// One per [`FORWARDED`] signal, `None` if it was ignored.
    watched: [Option<Signal>; 4],
}

impl Signals {
    fn new() -> Signals {
        let watch = |sig: libc::c_int| {
            (!ignored(sig)).then(|| signal(SignalKind::from_raw(sig)).expect("signal handler"))
        };
        Signals {
            watched: FORWARDED.map(watch),
        }
    }

    /// The next watched signal to arrive.
    async fn recv(&mut self) -> libc::c_int {
        let [int, term, hup, quit] = &mut self.watched;
        tokio::select! {
            _ = next(int) => FORWARDED[0],
            _ = next(term) => FORWARDED[1],
            _ = next(hup) => FORWARDED[2],
            _ = next(quit) => FORWARDED[3],
        }
    }
}

async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Whether `sig` was ignored when we started (before we install handlers).
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the disposition.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

fn exit_code(status: std::io::Result<i32>) -> i32 {
    status.unwrap_or_else(|e| {
        eprintln!("raftlock: waiting for the command: {e}");
        exit::UNAVAILABLE
    })
}

async fn stop_child(child: &mut Guarded, grace: Duration) {
    child.signal(libc::SIGTERM);
    // A stopped command (Ctrl-Z outlasted the TTL) would only see it when continued.
    child.signal(libc::SIGCONT);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        child.signal(libc::SIGKILL);
        let _ = child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        lock: LockArgs,
    }

    fn mode(flags: &[&str]) -> Result<LockMode, clap::error::ErrorKind> {
        let args = ["raftlock"]
            .iter()
            .chain(flags)
            .chain(&["NAME", "--", "true"]);
        Cli::try_parse_from(args)
            .map(|cli| cli.lock.mode())
            .map_err(|e| e.kind())
    }

    #[test]
    fn the_flags_choose_the_mode() {
        assert_eq!(mode(&[]), Ok(LockMode::Exclusive));
        assert_eq!(mode(&["--shared"]), Ok(LockMode::Shared));
        assert_eq!(
            mode(&["--limit", "3"]),
            Ok(LockMode::Semaphore { limit: 3 })
        );
        assert_eq!(
            mode(&["--limit", "65536"]),
            Ok(LockMode::Semaphore { limit: 65_536 })
        );
    }

    #[test]
    fn shared_and_a_limit_conflict_and_a_limit_is_in_range() {
        use clap::error::ErrorKind;
        assert_eq!(
            mode(&["--shared", "--limit", "2"]),
            Err(ErrorKind::ArgumentConflict)
        );
        for bad in ["0", "65537", "two"] {
            assert_eq!(
                mode(&["--limit", bad]),
                Err(ErrorKind::ValueValidation),
                "{bad}"
            );
        }
        assert!(mode(&["--limit", "-1"]).is_err());
    }
}
