//! Fork detection: which process a Rust object (runtime, client, session)
//! belongs to, and leaking instead of dropping it in a forked child.
//!
//! A tokio runtime does not survive `fork()`: the child has only the thread
//! that forked, so the runtime's workers, and any lock they held at that
//! moment, are gone. Touching the parent's runtime (even dropping something
//! that wakes one of its tasks) can then hang the child. So every such object
//! is wrapped in a [`ForkLocal`], which remembers the process that made it:
//! in any other process it is not handed out and, when dropped, leaked.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Bumped in every child right after `fork()`, by a `pthread_atfork` handler.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add, nothing else.
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Registers the `fork()` handler (once per process image).
pub fn install() {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// Identifies the current process: changes in a child after every fork,
/// even one whose pid happens to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    generation: u64,
    pid: u32,
}

impl Process {
    pub fn current() -> Process {
        install();
        Process {
            generation: GENERATION.load(Ordering::SeqCst),
            pid: std::process::id(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A number that differs between a process and its forked children.
    pub fn token(&self) -> u64 {
        (self.generation << 32) ^ u64::from(self.pid)
    }
}

/// A value that belongs to the process that created it.
pub struct ForkLocal<T> {
    owner: Process,
    value: ManuallyDrop<T>,
}

impl<T> ForkLocal<T> {
    pub fn new(value: T) -> ForkLocal<T> {
        ForkLocal {
            owner: Process::current(),
            value: ManuallyDrop::new(value),
        }
    }

    /// The process that created the value.
    pub fn owner(&self) -> Process {
        self.owner
    }

    pub fn is_current(&self) -> bool {
        self.owner == Process::current()
    }

    /// The value, unless this is a forked child of its owner.
    pub fn get(&self) -> Option<&T> {
        self.is_current().then_some(&*self.value)
    }
}

impl<T> Drop for ForkLocal<T> {
    fn drop(&mut self) {
        if self.is_current() {
            // SAFETY: dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
        // In a forked child the value (and what it points to) is leaked:
        // its drop could wait for threads that do not exist here.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn drops_normally_in_its_own_process() {
        let drops = Arc::new(AtomicUsize::new(0));
        let local = ForkLocal::new(Counted(drops.clone()));
        assert!(local.get().is_some());
        drop(local);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    /// Forks for real: the child must see a different process, refuse to
    /// hand out the value and leak it instead of dropping it.
    #[test]
    fn a_forked_child_neither_gets_nor_drops_the_value() {
        let drops = Arc::new(AtomicUsize::new(0));
        let local = ForkLocal::new(Counted(drops.clone()));
        let parent = Process::current();
        // SAFETY: the child only reads atomics, calls getpid and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = Process::current() != parent
                && Process::current().token() != parent.token()
                && local.get().is_none()
                && !local.is_current();
            drop(local);
            let ok = ok && drops.load(Ordering::SeqCst) == 0;
            // SAFETY: leave the child without running the test harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child did not exit normally");
        assert_eq!(libc::WEXITSTATUS(status), 0, "child saw the parent's value");
        assert_eq!(Process::current(), parent);
        assert!(local.get().is_some());
    }
}
