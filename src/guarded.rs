//! The command `raftlock lock` runs, kept from outliving the lock holder.
//!
//! ```text
//! raftlock lock ── guard (our child, leader of a new process group)
//!                    └─ the command (same group) ── anything it starts (same group)
//! ```
//!
//! The guard is forked between fork and exec of our own child: it gets
//! `PR_SET_PDEATHSIG`, checks that its parent is still us (we may have died
//! between fork and prctl), then forks the command and waits for it. If
//! `raftlock lock` dies, even by SIGKILL, the guard kills the whole group
//! at once, so nothing in it goes on writing without the lock. Signals for
//! the command go to the group, never to the guard, which ignores them and
//! exits with the command's status (128+N if it died of signal N).
//!
//! If our stdin is a terminal whose foreground group is ours, the
//! command's group gets the terminal (it can read it; Ctrl-C and Ctrl-\ reach it directly, as
//! they would without us), and Ctrl-Z stops our group too, so the shell's
//! job control works as usual.
//!
//! What escapes: a process that leaves the group on purpose (`setsid`,
//! `setpgid`, a daemon). Between fork and exec only async-signal-safe
//! calls are made (no allocation, no locks).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::process::{Child, Command};

use crate::exit;

/// The guard learns of our death by this signal; nothing else sends it.
const PARENT_DIED: libc::c_int = libc::SIGUSR1;

/// Signals the guard ignores: they are for the command (sent to the group
/// by us or by the terminal), or would stop the guard.
const GUARD_IGNORES: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGPIPE,
];

/// `raftlock lock`'s pid, as the guard saw it before it could be orphaned.
static GUARD_PARENT: AtomicI32 = AtomicI32::new(0);

/// The command, running in its own process group under its guard.
pub struct Guarded {
    child: Child,
    /// The group's id: the guard's pid.
    pgid: i32,
    /// The terminal (our stdin) we handed to the group, to take back when it is done.
    terminal: Option<RawFd>,
}

impl Guarded {
    /// Starts `command` (already given its args and env) under a guard.
    pub fn spawn(mut command: Command) -> io::Result<Guarded> {
        // SAFETY: getpid and getpgrp have no preconditions.
        let (parent, parent_pgid) = unsafe { (libc::getpid(), libc::getpgrp()) };
        let terminal = foreground_terminal();
        command.process_group(0).kill_on_drop(false);
        // SAFETY: the closure runs in the forked child and makes only
        // async-signal-safe calls (see `become_guard`).
        unsafe {
            command.pre_exec(move || become_guard(parent, parent_pgid, terminal));
        }
        // This runs on the thread that drives `block_on` (the main thread),
        // which lives as long as we do: PR_SET_PDEATHSIG fires when the
        // forking *thread* exits, so a short-lived thread would be wrong.
        let child = command.spawn()?;
        let pgid = child.id().expect("a child just spawned has a pid") as i32;
        Ok(Guarded {
            child,
            pgid,
            terminal,
        })
    }

    /// Sends `sig` to the command and everything it started.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own process group has no memory effects.
        unsafe {
            libc::kill(-self.pgid, sig);
        }
    }

    /// We were continued (`fg` or `bg` after Ctrl-Z): continue the command,
    /// giving it the terminal back if we are in the foreground again.
    pub fn resume(&self) {
        if let Some(tty) = self.terminal {
            // SAFETY: plain syscalls on our stdin.
            if unsafe { libc::tcgetpgrp(tty) == libc::getpgrp() } {
                set_foreground(tty, self.pgid);
            }
        }
        self.signal(libc::SIGCONT);
    }

    /// Waits for the command; its exit status as a shell reports it.
    pub async fn wait(&mut self) -> io::Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().await?;
        self.take_back_terminal();
        Ok(status
            .code()
            .unwrap_or_else(|| exit::signalled(status.signal().unwrap_or(0))))
    }

    fn take_back_terminal(&mut self) {
        if let Some(tty) = self.terminal.take() {
            // SAFETY: plain syscalls on our stdin.
            if unsafe { libc::tcgetpgrp(tty) } == self.pgid {
                set_foreground(tty, unsafe { libc::getpgrp() });
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.take_back_terminal();
    }
}

/// Our stdin, if it is a terminal and our process group is in its
/// foreground. Not any controlling terminal: `cmd &` in a script shares
/// the script's group but has stdin on /dev/null, and must not take the
/// terminal (and the script's Ctrl-C) from it.
fn foreground_terminal() -> Option<RawFd> {
    let stdin = libc::STDIN_FILENO;
    // SAFETY: plain syscalls on our stdin.
    let ours = unsafe { libc::isatty(stdin) == 1 && libc::tcgetpgrp(stdin) == libc::getpgrp() };
    ours.then_some(stdin)
}

/// tcsetpgrp from a background group: SIGTTOU must not stop us meanwhile.
fn set_foreground(tty: RawFd, pgid: i32) {
    // SAFETY: signal mask and tcsetpgrp calls on this thread only.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        libc::tcsetpgrp(tty, pgid);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

extern "C" fn parent_died(_: libc::c_int) {
    // SAFETY: getppid and kill are async-signal-safe. A PARENT_DIED sent by
    // anyone else while we still have our parent is ignored.
    unsafe {
        if libc::getppid() != GUARD_PARENT.load(Ordering::Relaxed) {
            libc::kill(0, libc::SIGKILL);
        }
    }
}

/// In our forked child, before exec: become the guard, fork the command
/// and return in it (so it execs); the guard itself never returns.
///
/// Async-signal-safe calls only: we are a fork of a multi-threaded process.
fn become_guard(parent: i32, parent_pgid: i32, tty: Option<RawFd>) -> io::Result<()> {
    // SAFETY: every call below is a plain async-signal-safe syscall wrapper
    // on our own process; the sigaction and sigset structs are local.
    unsafe {
        // Nothing may interrupt the set-up; the command gets `old` back.
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);

        GUARD_PARENT.store(parent, Ordering::Relaxed);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = parent_died as *const () as usize;
        libc::sigfillset(&mut action.sa_mask);
        if libc::sigaction(PARENT_DIED, &action, std::ptr::null_mut()) != 0
            || libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DIED) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // We may have been orphaned before prctl: then nobody holds the lock.
        if libc::getppid() != parent {
            libc::_exit(exit::FAILURE);
        }
        if let Some(tty) = tty {
            // SIGTTOU is blocked, so a background group may do this.
            libc::tcsetpgrp(tty, libc::getpid());
        }
        let command = libc::fork();
        if command < 0 {
            return Err(io::Error::last_os_error());
        }
        if command == 0 {
            // The command: exec resets the PARENT_DIED handler; the mask is ours to restore.
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return Ok(());
        }
        // Our copy of spawn's exec-error pipe would keep `raftlock lock`
        // waiting for the command's exec until the command ends.
        close_descriptors_above_stderr();
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        for sig in GUARD_IGNORES {
            libc::sigaction(sig, &ignore, std::ptr::null_mut());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        libc::_exit(guard(command, parent_pgid, tty))
    }
}

/// The guard's life: wait for the command, pass a terminal stop on to our
/// parent's group, and exit with the command's status.
///
/// # Safety
/// Called only in the guard process, after fork.
unsafe fn guard(command: i32, parent_pgid: i32, tty: Option<RawFd>) -> i32 {
    loop {
        let mut status = 0;
        if libc::waitpid(command, &mut status, libc::WUNTRACED) < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return exit::GUARD_FAILED;
        }
        if libc::WIFSTOPPED(status) {
            // Ctrl-Z (or a read from the terminal in the background): stop
            // `raftlock lock`'s job too, so the shell takes the terminal
            // back; our parent continues the command when it is continued.
            if let Some(tty) = tty {
                libc::tcsetpgrp(tty, parent_pgid);
                libc::kill(-parent_pgid, libc::SIGTSTP);
            }
            continue;
        }
        if libc::WIFEXITED(status) {
            return libc::WEXITSTATUS(status);
        }
        if libc::WIFSIGNALED(status) {
            return exit::signalled(libc::WTERMSIG(status));
        }
    }
}

/// Closes every descriptor above stderr (the terminal, if any, is stdin).
///
/// # Safety
/// Called only in the guard process, which needs no other descriptor.
unsafe fn close_descriptors_above_stderr() {
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0) != 0 {
        // Kernels before 5.9: the pipe is close-on-exec and among the first.
        for fd in 3..4096 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                libc::close(fd);
            }
        }
    }
}
