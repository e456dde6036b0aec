//! The tokio runtime behind the bindings, one per process: made on first
//! use, and made anew in a forked child (the parent's is leaked there, see
//! [`crate::fork`]). Also [`wait_for`], which runs a future on it while the
//! calling (Python) thread waits, and gives up when Python has a signal to
//! deliver (Ctrl-C) or an asyncio caller cancels the wait.
//!
//! Fork safety shapes both. tokio here uses parking_lot, whose global table
//! of parked threads is inherited by a forked child with entries for parent
//! threads that no longer exist; once glibc reuses their stacks (and frees
//! their thread-locals), the child's next table walk can crash. So at a fork
//! no thread of ours may be parked in that table: the runtime has a single
//! worker, which idles in epoll, not on a condvar; blocking-pool threads
//! exit after 100 ms idle; and callers wait on a std channel (a futex),
//! never in tokio's `block_on`.

use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};
use tokio::sync::{oneshot, watch};

use crate::fork::Process;

/// How often a wait stops to let Python check for signals.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

struct Slot {
    owner: Process,
    runtime: Runtime,
}

/// The current process's runtime. Lock-free, so that a fork at any moment
/// cannot leave a lock held in the child; slots are never freed.
static RUNTIME: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());

/// This process's runtime: one worker thread that runs the keepalives and
/// the calls.
pub fn runtime() -> std::io::Result<&'static Runtime> {
    loop {
        let current = RUNTIME.load(Ordering::Acquire);
        // SAFETY: slots are leaked, never freed, so the pointer stays valid.
        if let Some(slot) = unsafe { current.as_ref() } {
            if slot.owner == Process::current() {
                return Ok(&slot.runtime);
            }
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_keep_alive(Duration::from_millis(100))
            .thread_name("raftlock-client")
            .enable_all()
            .build()?;
        let fresh = Box::into_raw(Box::new(Slot {
            owner: Process::current(),
            runtime,
        }));
        match RUNTIME.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            // Another thread got there first: use theirs.
            // SAFETY: `fresh` was never shared; its runtime has no tasks yet.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

/// Why [`wait_for`] stopped waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped<E> {
    /// `check` returned this error (e.g. KeyboardInterrupt).
    Interrupted(E),
    /// The cancel flag was set.
    Cancelled,
}

/// What became of a future whose wait was stopped.
pub enum Leftover<F: Future> {
    /// Not finished: handed back undropped, so the caller drops it on its
    /// own thread, outside the runtime (the Rust client's drop-time
    /// cleanup, which it would spawn and not await, stays off).
    Pending(Pin<Box<F>>),
    /// It finished as the stop was requested.
    Finished(F::Output),
}

/// What the task sends back to the waiting thread.
enum Back<F: Future> {
    Done(F::Output),
    Stopped(Pin<Box<F>>),
}

/// Runs `fut` on `rt` while this thread waits (on a std channel), calling
/// `check` every [`CHECK_EVERY`] and watching `cancel`. On a stop, returns
/// why, and the future or its output.
#[allow(clippy::type_complexity)]
pub fn wait_for<F, E>(
    rt: &Runtime,
    fut: Pin<Box<F>>,
    mut check: impl FnMut() -> Result<(), E>,
    cancel: Option<watch::Receiver<bool>>,
) -> Result<F::Output, (Stopped<E>, Leftover<F>)>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (back_tx, back_rx) = sync_channel::<Back<F>>(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    rt.spawn(async move {
        let mut fut = fut;
        let finished = {
            let stop = async {
                if stop_rx.await.is_err() {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                out = fut.as_mut() => Some(out),
                _ = stop => None,
                _ = cancelled(cancel) => None,
            }
        };
        let _ = back_tx.send(match finished {
            Some(out) => Back::Done(out),
            None => Back::Stopped(fut),
        });
    });
    let mut stop_tx = Some(stop_tx);
    let mut interrupted = None;
    loop {
        match back_rx.recv_timeout(CHECK_EVERY) {
            Ok(Back::Done(out)) => {
                return match interrupted {
                    None => Ok(out),
                    Some(e) => Err((Stopped::Interrupted(e), Leftover::Finished(out))),
                }
            }
            Ok(Back::Stopped(fut)) => {
                let why = interrupted.map_or(Stopped::Cancelled, Stopped::Interrupted);
                return Err((why, Leftover::Pending(fut)));
            }
            Err(RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = check() {
                        interrupted = Some(e);
                        if let Some(stop) = stop_tx.take() {
                            let _ = stop.send(());
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the raftlock runtime dropped a call (did it panic?)")
            }
        }
    }
}

/// Resolves once the flag is true; never, if there is no flag or its
/// sender went away without setting it.
async fn cancelled(cancel: Option<watch::Receiver<bool>>) {
    if let Some(mut rx) = cancel {
        if rx.wait_for(|c| *c).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    use std::time::Instant;

    fn never() -> Pin<Box<std::future::Pending<()>>> {
        Box::pin(std::future::pending())
    }

    #[test]
    fn one_runtime_per_process() {
        let a = runtime().unwrap() as *const Runtime;
        let b = runtime().unwrap() as *const Runtime;
        assert_eq!(a, b);
    }

    #[test]
    fn a_finished_future_is_returned() {
        let rt = runtime().unwrap();
        let out = wait_for(rt, Box::pin(async { 7 }), || Ok::<(), ()>(()), None);
        assert!(matches!(out, Ok(7)));
    }

    #[test]
    fn check_interrupts_a_wait_that_never_ends() {
        let rt = runtime().unwrap();
        let mut calls = 0;
        let started = Instant::now();
        let out = wait_for(
            rt,
            never(),
            || {
                calls += 1;
                if calls == 3 {
                    Err("interrupted")
                } else {
                    Ok(())
                }
            },
            None,
        );
        assert!(matches!(
            out,
            Err((Stopped::Interrupted("interrupted"), Leftover::Pending(_)))
        ));
        assert!(started.elapsed() >= CHECK_EVERY * 3);
    }

    #[test]
    fn cancel_from_another_thread_stops_the_wait() {
        let rt = runtime().unwrap();
        let (tx, rx) = watch::channel(false);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send_replace(true);
            // Keep the sender alive until the wait saw it.
            std::thread::sleep(Duration::from_millis(200));
        });
        let out = wait_for(rt, never(), || Ok::<(), ()>(()), Some(rx));
        assert!(matches!(
            out,
            Err((Stopped::Cancelled, Leftover::Pending(_)))
        ));
        canceller.join().unwrap();
    }

    #[test]
    fn a_dropped_cancel_sender_does_not_cancel() {
        let rt = runtime().unwrap();
        let (tx, rx) = watch::channel(false);
        drop(tx);
        let fut = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            "done"
        });
        let out = wait_for(rt, fut, || Ok::<(), ()>(()), Some(rx));
        assert!(matches!(out, Ok("done")));
    }

    /// Records whether it was dropped inside a runtime.
    struct DropProbe(Arc<AtomicBool>, Arc<AtomicUsize>);

    impl Future for DropProbe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            std::task::Poll::Pending
        }
    }

    impl Drop for DropProbe {
        fn drop(&mut self) {
            let inside = tokio::runtime::Handle::try_current().is_ok();
            self.0.store(inside, Ordering::SeqCst);
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stopped_future_comes_back_to_be_dropped_outside_the_runtime() {
        let rt = runtime().unwrap();
        let inside = Arc::new(AtomicBool::new(true));
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Box::pin(DropProbe(inside.clone(), drops.clone()));
        let out = wait_for(rt, probe, || Err(()), None);
        let Err((Stopped::Interrupted(()), Leftover::Pending(fut))) = out else {
            panic!("the wait was not interrupted");
        };
        assert_eq!(drops.load(Ordering::SeqCst), 0, "dropped on the runtime");
        drop(fut);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(!inside.load(Ordering::SeqCst), "dropped inside the runtime");
    }

    /// The crash this module's design avoids: a child forked while threads
    /// wait and the runtime idles must be able to start its own runtime and
    /// threads and use them, again and again.
    #[test]
    fn forked_children_get_a_working_runtime_while_the_parent_waits() {
        let rt = runtime().unwrap();
        let parent_rt = rt as *const Runtime;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    let fut = Box::pin(async { tokio::time::sleep(Duration::from_secs(2)).await });
                    let _ = wait_for(runtime().unwrap(), fut, || Ok::<(), ()>(()), None);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..5 {
            // SAFETY: the child uses a runtime of its own and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = std::panic::catch_unwind(|| {
                    let rt = runtime().unwrap();
                    assert_ne!(rt as *const Runtime, parent_rt);
                    let threads: Vec<_> = (0..8)
                        .map(|i| {
                            std::thread::spawn(move || {
                                let fut = Box::pin(async move {
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    i
                                });
                                wait_for(runtime().unwrap(), fut, || Ok::<(), ()>(()), None).ok()
                            })
                        })
                        .collect();
                    threads
                        .into_iter()
                        .enumerate()
                        .all(|(i, t)| t.join().unwrap() == Some(i))
                });
                // SAFETY: leave the child without running the test harness.
                unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status), "child died: status {status}");
            assert_eq!(libc::WEXITSTATUS(status), 0, "child failed");
        }
        for w in waiters {
            w.join().unwrap();
        }
    }
}
