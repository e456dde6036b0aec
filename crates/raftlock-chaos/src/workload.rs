//! The workload, in Jepsen's lock-set shape: writers loop acquire
//! (exclusive), read the fenced register, sleep 0-50 ms, write it back
//! incremented, release; readers loop acquire (shared, on the same names),
//! read the register, sleep 0-50 ms, read it again, release.
//!
//! Each client runs on its own thread with its own single-threaded tokio
//! runtime, so pausing a client (blocking that thread) freezes its
//! keepalive too, exactly like a GC pause or SIGSTOP of a real process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use raftlock_client::{
    Client, ClientOptions, Error, LockMode, Session, SessionOptions, Transport, Wait,
};
use rand::{Rng, SeedableRng};

use crate::history::{Access, History, LockEvent, LockOp, Outcome};
use crate::register::FencedRegister;

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// How many of the clients are readers (shared locks); the rest write.
    pub readers: usize,
    pub locks: Vec<String>,
    pub ttl: Duration,
    pub endpoints: Vec<String>,
    pub seed: u64,
    pub transport: Transport,
}

/// One client's controls, shared with the nemesis.
#[derive(Default)]
struct Worker {
    holding: AtomicBool,
    pause: Mutex<Option<Duration>>,
}

pub struct Workload {
    stop: Arc<AtomicBool>,
    workers: Vec<Arc<Worker>>,
    threads: Vec<JoinHandle<()>>,
}

/// Each session incarnation is a distinct client in the history.
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

impl Workload {
    pub fn start(
        config: WorkloadConfig,
        history: Arc<History>,
        register: Arc<FencedRegister>,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for n in 0..config.clients {
            let worker = Arc::new(Worker::default());
            workers.push(worker.clone());
            let (config, history, register, stop) = (
                config.clone(),
                history.clone(),
                register.clone(),
                stop.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("chaos-client-{n}"))
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("client runtime");
                        runtime.block_on(run_client(n, config, history, register, stop, worker));
                    })
                    .expect("spawn a client thread"),
            );
        }
        Workload {
            stop,
            workers,
            threads,
        }
    }

    /// Freezes one client that holds a lock (if any does) for `pause`,
    /// between its read and its write (a reader: between its two reads).
    /// Returns which.
    pub fn pause_a_holder(&self, rng: &mut impl Rng, pause: Duration) -> Option<usize> {
        let holding: Vec<usize> = (0..self.workers.len())
            .filter(|i| self.workers[*i].holding.load(Ordering::SeqCst))
            .collect();
        let chosen = *holding.get(rng.gen_range(0..holding.len().max(1)))?;
        *self.workers[chosen]
            .pause
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(pause);
        Some(chosen)
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Held {
    client: u64,
    session: Session,
}

async fn run_client(
    n: usize,
    config: WorkloadConfig,
    history: Arc<History>,
    register: Arc<FencedRegister>,
    stop: Arc<AtomicBool>,
    worker: Arc<Worker>,
) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(config.seed ^ (n as u64).wrapping_mul(0x9e37_79b9));
    let options = ClientOptions {
        retry_for: Duration::from_secs(10),
        rpc_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        transport: config.transport.clone(),
    };
    let client = Client::with_options(config.endpoints.clone(), options).expect("endpoints");
    let reader = n < config.readers;
    let mode = if reader {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    };
    let mut current: Option<Held> = None;
    while !stop.load(Ordering::SeqCst) {
        let Some(held) = current.as_ref() else {
            current = open(&client, &config, n).await;
            continue;
        };
        let id = held.client;
        let lock = config.locks[rng.gen_range(0..config.locks.len())].clone();
        let record = |op, invoked, completed, outcome| {
            history.record(LockEvent {
                client: id,
                lock: lock.clone(),
                op,
                shared: reader,
                invoked,
                completed,
                outcome,
            })
        };

        let invoked = history.now();
        let grant = held
            .session
            .lock_with(&lock, Wait::For(Duration::from_secs(3)), mode)
            .await;
        let granted_at = history.now();
        let token = match grant {
            Ok(grant) => {
                record(
                    LockOp::Acquire,
                    invoked,
                    Some(granted_at),
                    Outcome::Ok(Some(grant.token)),
                );
                grant.token
            }
            Err(Error::NotAcquired { .. }) => {
                record(LockOp::Acquire, invoked, Some(granted_at), Outcome::Failed);
                continue;
            }
            Err(_) => {
                // It may have been granted; if so the session's end frees it.
                record(LockOp::Acquire, invoked, None, Outcome::Unknown);
                record(LockOp::Expired, granted_at, None, Outcome::Unknown);
                abandon(current.take());
                continue;
            }
        };

        worker.holding.store(true, Ordering::SeqCst);
        if reader {
            read_twice(&register, &worker, id, &lock, token, &mut rng).await;
        } else {
            increment(&register, &worker, id, &lock, token, &mut rng).await;
        }
        worker.holding.store(false, Ordering::SeqCst);

        let invoked = history.now();
        match held.session.release(&lock).await {
            Ok(()) => record(
                LockOp::Release,
                invoked,
                Some(history.now()),
                Outcome::Ok(None),
            ),
            Err(Error::SessionLost(_) | Error::NotHeld { .. } | Error::NotHolder { .. }) => {
                // The session expired while we held the lock.
                record(
                    LockOp::Expired,
                    granted_at,
                    Some(history.now()),
                    Outcome::Ok(None),
                );
                current = None;
            }
            Err(_) => {
                record(LockOp::Release, invoked, None, Outcome::Unknown);
                abandon(current.take());
            }
        }
    }
    if let Some(held) = current {
        let _ = held.session.close().await;
    }
}

/// A new session for client `n`, as a new client of the history; `None`
/// (after a pause) if the cluster did not open one.
async fn open(client: &Client, config: &WorkloadConfig, n: usize) -> Option<Held> {
    let opened = client
        .open_session(SessionOptions {
            ttl: config.ttl,
            lock_delay: Duration::ZERO,
            label: format!("chaos-{n}"),
        })
        .await;
    match opened {
        Ok(session) => Some(Held {
            client: NEXT_CLIENT.fetch_add(1, Ordering::SeqCst),
            session,
        }),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// The work done under the lock: read the register, maybe pause as the
/// nemesis asked, and write the value plus one with the fencing token.
async fn increment(
    register: &FencedRegister,
    worker: &Worker,
    id: u64,
    lock: &str,
    token: u64,
    rng: &mut rand::rngs::StdRng,
) {
    let read = register.read(id, lock, token);
    pause_if_asked(worker);
    if let Ok(value) = read {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=50))).await;
        let _ = register.write(id, lock, token, value + 1);
    }
}

/// A reader's hold: read the register, maybe pause as the nemesis asked,
/// wait a little and read it again. The checker expects the same value
/// both times, unless the register refused the second read as stale.
async fn read_twice(
    register: &FencedRegister,
    worker: &Worker,
    id: u64,
    lock: &str,
    token: u64,
    rng: &mut rand::rngs::StdRng,
) {
    let _ = register.read_shared(id, lock, token, Access::ReadStart);
    pause_if_asked(worker);
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=50))).await;
    let _ = register.read_shared(id, lock, token, Access::ReadEnd);
}

/// Freezes this client if the nemesis asked: a process pause, so this
/// thread, and with it the session's keepalive, stops.
fn pause_if_asked(worker: &Worker) {
    let pause = worker
        .pause
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(pause) = pause {
        std::thread::sleep(pause);
    }
}

/// Gives up on a session whose state is unknown: closes it in the
/// background if the cluster answers, else it expires within its TTL.
fn abandon(held: Option<Held>) {
    if let Some(held) = held {
        tokio::spawn(async move {
            let _ = held.session.close().await;
        });
    }
}
