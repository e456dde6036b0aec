//! Sessions: the owners of locks, kept alive in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftlock_core::LockMode;
use raftlock_proto::v1::*;
use raftlock_proto::MAX_POLL;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::lock_service;
use crate::mode::to_wire;
use crate::retry::RetryPolicy;
use crate::{Client, Error};

/// A session's default TTL: a dead holder's locks free within seconds,
/// and a pause or a network blip shorter than that loses nothing.
const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Keepalives sent per TTL: two may be lost or slow before it expires.
const KEEPALIVES_PER_TTL: u32 = 3;
/// The pause before retrying a keepalive that failed (the call itself
/// already retried on every node): soon, as the TTL is running.
const KEEPALIVE_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The request number that opts out of the retry window. Numbering starts
/// after it.
const UNNUMBERED: u64 = 0;
/// The `wait_ms` of a try-lock.
const TRY_ONCE_MS: u64 = 0;

#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// The session (and every lock it holds) ends this long after the last
    /// keepalive the leader saw. 1 s ..= 1 h.
    pub ttl: Duration,
    /// After the session expires, its locks are not granted again for this
    /// long: time for a paused holder to notice before anyone else writes.
    pub lock_delay: Duration,
    /// Shown to others, e.g. in "held by ..." errors. Defaults to host and pid.
    pub label: String,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: DEFAULT_TTL,
            lock_delay: Duration::ZERO,
            label: default_label(),
        }
    }
}

fn default_label() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} pid {}", std::process::id())
}

/// How long [`Session::lock`] waits for a held lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Try once (try-lock).
    No,
    For(Duration),
    Forever,
}

/// When a lock wait ends: [`Wait`] with its deadline worked out.
#[derive(Clone, Copy, Debug)]
enum Until {
    Now,
    Deadline(Instant),
    Forever,
}

/// The `wait_ms` of a wait without end (the server long-polls it in
/// [`MAX_POLL`] slices).
const WAIT_FOREVER_MS: u64 = u64::MAX;

/// A granted lock. Pass `token` to anything that checks fencing tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    /// Raft log index of the grant; strictly increasing per lock name.
    pub token: u64,
    /// The session already held the lock before this call.
    pub reentrant: bool,
    /// How the lock is held (as asked: a session holds a name in one mode).
    pub mode: LockMode,
}

/// A session: owns locks, keeps itself alive, reports when it is lost.
/// Cloning shares the same session. Dropping the last clone stops the
/// keepalive (the session then expires after its TTL); [`Session::close`]
/// ends it at once.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// No Debug: `secret` must never reach a log or an error message.
struct Inner {
    client: Client,
    id: String,
    /// Proves this client opened the session: sent on every call that
    /// acts as it, shown nowhere.
    secret: String,
    ttl: Duration,
    seq: AtomicU64,
    lost: Arc<watch::Sender<Option<String>>>,
    keepalive: Mutex<Option<JoinHandle<()>>>,
    /// What this session holds, as far as this client knows, and how.
    held: Mutex<HashMap<String, LockMode>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Client {
    /// Opens a session; see [`SessionOptions`] for TTL, lock-delay and label.
    pub async fn open_session(&self, options: SessionOptions) -> Result<Session, Error> {
        let sent = Instant::now();
        let req = OpenSessionRequest {
            ttl_ms: options.ttl.as_millis() as u64,
            lock_delay_ms: options.lock_delay.as_millis() as u64,
            label: options.label,
        };
        let reply = self
            .unary(
                req,
                |c, r| async move { lock_service(c).open_session(r).await },
            )
            .await?;
        let ttl = Duration::from_millis(reply.ttl_ms);
        let (lost, _) = watch::channel(None);
        let lost = Arc::new(lost);
        let task = tokio::spawn(keep_alive(
            self.clone(),
            SessionKey {
                id: reply.session_id.clone(),
                secret: reply.session_secret.clone(),
            },
            ttl,
            sent,
            lost.clone(),
        ));
        Ok(Session {
            inner: Arc::new(Inner {
                client: self.clone(),
                id: reply.session_id,
                secret: reply.session_secret,
                ttl,
                seq: AtomicU64::new(UNNUMBERED),
                lost,
                keepalive: Mutex::new(Some(task)),
                held: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Session {
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Why the session was lost, once it has been.
    pub fn lost_reason(&self) -> Option<String> {
        self.inner.lost.borrow().clone()
    }

    /// Resolves when the session is lost (expired, or unconfirmed for a TTL).
    pub async fn lost(&self) -> String {
        let mut rx = self.inner.lost.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "session dropped".into();
            }
        }
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn check_lost(&self) -> Result<(), Error> {
        match self.lost_reason() {
            Some(reason) => Err(Error::SessionLost(reason)),
            None => Ok(()),
        }
    }

    /// Takes `name` exclusively, waiting as `wait` says. Waiters are served
    /// first come, first served; the grant is pushed by the server, no polling.
    pub async fn lock(&self, name: &str, wait: Wait) -> Result<Grant, Error> {
        self.lock_with(name, wait, LockMode::Exclusive).await
    }

    /// Takes `name` in `mode`: exclusive, shared (with other readers), or
    /// as one of at most `limit` holders of a semaphore. One queue serves
    /// all modes, in arrival order. A name in use in another mode (or
    /// with another limit), or held or awaited by this session in another
    /// mode, is refused with [`Error::ModeConflict`]: release it first.
    pub async fn lock_with(&self, name: &str, wait: Wait, mode: LockMode) -> Result<Grant, Error> {
        let until = match wait {
            Wait::No => Until::Now,
            Wait::For(d) => Until::Deadline(Instant::now() + d),
            Wait::Forever => Until::Forever,
        };
        // If this future is dropped mid-wait, leave the queue (see LeaveQueue).
        let mut leave = LeaveQueue {
            session: Some(self.clone()),
            name: name.to_string(),
            mode,
            held_before: self.holds(name),
        };
        let held_before = leave.held_before;
        let result = self.lock_loop(name, until, mode).await;
        leave.session = None;
        result.map(|grant| {
            self.held().insert(name.to_string(), mode);
            // Retries can make the server call a fresh grant reentrant;
            // what this session held before the call is the truth.
            Grant {
                reentrant: held_before,
                ..grant
            }
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, LockMode>> {
        self.inner.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this session holds `name`, as far as this client knows.
    pub fn holds(&self, name: &str) -> bool {
        self.held().contains_key(name)
    }

    /// How this session holds `name`, as far as this client knows.
    pub fn held_mode(&self, name: &str) -> Option<LockMode> {
        self.held().get(name).copied()
    }

    /// Asks for `name` until it is granted, refused, or the wait is over.
    async fn lock_loop(&self, name: &str, until: Until, mode: LockMode) -> Result<Grant, Error> {
        loop {
            self.check_lost()?;
            let reply = tokio::select! {
                reply = self.acquire(name, until, mode) => reply?,
                reason = self.lost() => return Err(Error::SessionLost(reason)),
            };
            if reply.acquired {
                return Ok(Grant {
                    name: name.to_string(),
                    token: reply.fencing_token,
                    reentrant: reply.reentrant,
                    mode,
                });
            }
            if !reply.queued {
                return Err(Error::NotAcquired {
                    name: name.to_string(),
                    holder: reply.holder.map(|h| h.label),
                });
            }
        }
    }

    /// One Acquire call, retried on other nodes as needed: the answer
    /// comes when the lock is granted or refused, or after one long-poll.
    async fn acquire(
        &self,
        name: &str,
        until: Until,
        mode: LockMode,
    ) -> Result<AcquireResponse, Error> {
        let rpc_timeout = self.inner.client.options().rpc_timeout;
        let mut give_up = self.inner.client.retry_deadline();
        if let Until::Deadline(deadline) = until {
            give_up = give_up.min(deadline + rpc_timeout);
        }
        let policy = RetryPolicy::new(give_up, rpc_timeout + MAX_POLL);
        self.inner
            .client
            .call(policy, |c, mut attempt| {
                let req = self.acquire_request(name, until, mode);
                let poll = Duration::from_millis(req.wait_ms).min(MAX_POLL);
                attempt.timeout = attempt.timeout.min(rpc_timeout + poll);
                let req = attempt.request(req);
                async move { lock_service(c).acquire(req).await }
            })
            .await
    }

    /// What to ask for, made anew for every attempt so a retry after a
    /// failover does not wait past the caller's deadline. Acquire is
    /// idempotent in the table (a holder gets its grant back, a waiter
    /// keeps its place), so each attempt takes a fresh request number and
    /// never hits the retry window's edge.
    fn acquire_request(&self, name: &str, until: Until, mode: LockMode) -> AcquireRequest {
        let (wait_ms, leave_queue_on_timeout) = match until {
            Until::Now => (TRY_ONCE_MS, true),
            Until::Forever => (WAIT_FOREVER_MS, false),
            Until::Deadline(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (left.as_millis() as u64, true)
            }
        };
        let (mode, limit) = to_wire(mode);
        AcquireRequest {
            session_id: self.inner.id.clone(),
            seq: self.next_seq(),
            name: name.to_string(),
            wait_ms,
            leave_queue_on_timeout,
            mode: mode as i32,
            limit,
            session_secret: self.inner.secret.clone(),
        }
    }

    /// Releases `name`, held in any mode. Only a holder may; others get
    /// [`Error::NotHolder`].
    pub async fn release(&self, name: &str) -> Result<(), Error> {
        let req = ReleaseRequest {
            session_id: self.inner.id.clone(),
            seq: self.next_seq(),
            name: name.to_string(),
            session_secret: self.inner.secret.clone(),
        };
        let result = self
            .inner
            .client
            .unary(req, |c, r| async move { lock_service(c).release(r).await })
            .await;
        // Any answer but these says the session does not hold it now (a
        // refusal as not the owner changed nothing: it still does).
        let outcome_unknown = matches!(
            result,
            Err(Error::Unavailable(_)
                | Error::StaleRequest { .. }
                | Error::SessionExists { .. }
                | Error::NotSessionOwner { .. }
                | Error::Other(_))
        );
        if !outcome_unknown {
            self.held().remove(name);
        }
        result.map(|_| ())
    }

    /// Ends the session now, releasing all it holds. Returns those names.
    pub async fn close(&self) -> Result<Vec<String>, Error> {
        if let Some(task) = self
            .inner
            .keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        let req = CloseSessionRequest {
            session_id: self.inner.id.clone(),
            seq: self.next_seq(),
            session_secret: self.inner.secret.clone(),
        };
        let result = self
            .inner
            .client
            .unary(
                req,
                |c, r| async move { lock_service(c).close_session(r).await },
            )
            .await;
        self.inner.lost.send_replace(Some("session closed".into()));
        match result {
            Ok(reply) => Ok(reply.released),
            // Already gone (expired, or a retried close that applied): same end.
            Err(Error::SessionLost(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Armed while [`Session::lock`] waits. A caller that stops waiting by
/// dropping the future (a `select!`, a timeout) would otherwise stay in
/// the queue and later be granted a lock it never releases; this leaves
/// the queue instead, releasing the lock if the grant won the race.
struct LeaveQueue {
    session: Option<Session>,
    name: String,
    /// The mode waited for: a cancel in another mode would be refused.
    mode: LockMode,
    /// The session held the lock before this wait: keep it whatever happens.
    held_before: bool,
}

impl Drop for LeaveQueue {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        let (mode, held_before) = (self.mode, self.held_before);
        runtime.spawn(async move {
            if session.lost_reason().is_some() {
                return;
            }
            // A zero wait that gives up at once: cancels the wait server-side.
            if session.lock_loop(&name, Until::Now, mode).await.is_ok() && !held_before {
                let _ = session.release(&name).await;
            }
        });
    }
}

/// What the keepalive task needs to act as the session.
struct SessionKey {
    id: String,
    secret: String,
}

/// Refreshes the session every TTL / [`KEEPALIVES_PER_TTL`]. The session counts as lost when the
/// leader says it is gone, or the moment a TTL has passed since the last
/// keepalive that was confirmed was sent: past that point the leader may
/// have expired it.
async fn keep_alive(
    client: Client,
    key: SessionKey,
    ttl: Duration,
    opened_at: Instant,
    lost: Arc<watch::Sender<Option<String>>>,
) {
    let mut confirmed_at = opened_at;
    let interval = ttl / KEEPALIVES_PER_TTL;
    let mut next_attempt = opened_at + interval;
    let req = KeepAliveRequest {
        session_id: key.id.clone(),
        session_secret: key.secret.clone(),
    };
    // One slow node must not use up the whole TTL: try others in time.
    let per_attempt = client.options().rpc_timeout.min(interval);
    loop {
        let expires = confirmed_at + ttl;
        tokio::select! {
            _ = tokio::time::sleep_until(next_attempt) => {}
            _ = tokio::time::sleep_until(expires) => {}
        }
        let sent = Instant::now();
        if sent >= expires {
            lost.send_replace(Some(format!(
                "no keepalive confirmed within the {ttl:?} TTL"
            )));
            // The server may still think the session alive, and would keep
            // granting it locks that nobody here will use or release until
            // it expires. We have given up on it: end it now if we can.
            // This task has no request numbers of its own, and a close
            // needs none: closing twice ends the same.
            let close = CloseSessionRequest {
                session_id: key.id,
                seq: UNNUMBERED,
                session_secret: key.secret,
            };
            let _ = client
                .call(
                    RetryPolicy::new(Instant::now() + ttl, per_attempt),
                    |c, attempt| {
                        let r = attempt.request(close.clone());
                        async move { lock_service(c).close_session(r).await }
                    },
                )
                .await;
            return;
        }
        let call = client.call(RetryPolicy::new(expires, per_attempt), |c, attempt| {
            let req = attempt.request(req.clone());
            async move { lock_service(c).keep_alive(req).await }
        });
        match call.await {
            Ok(_) => {
                confirmed_at = sent;
                next_attempt = sent + interval;
            }
            // Not the owner: the cluster will never take this session's
            // keepalives, so it is as good as gone.
            Err(
                Error::SessionLost(reason)
                | Error::NotSessionOwner {
                    message: reason, ..
                },
            ) => {
                lost.send_replace(Some(reason));
                return;
            }
            Err(e) => {
                tracing::debug!(%e, "keepalive failed; retrying");
                next_attempt = Instant::now() + KEEPALIVE_RETRY_PAUSE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlock_proto::v1::LockMode as LockModeWire;

    /// A session that was never opened: enough to build requests.
    fn unopened() -> Session {
        let client = Client::new(["127.0.0.1:1"]).unwrap();
        Session {
            inner: Arc::new(Inner {
                client,
                id: "0".repeat(32),
                secret: "5".repeat(64),
                ttl: DEFAULT_TTL,
                seq: AtomicU64::new(UNNUMBERED),
                lost: Arc::new(watch::channel(None).0),
                keepalive: Mutex::new(None),
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    #[tokio::test]
    async fn each_mode_is_asked_for_with_its_limit() {
        let session = unopened();
        let cases = [
            (LockMode::Exclusive, LockModeWire::Exclusive, 0),
            (LockMode::Shared, LockModeWire::Shared, 0),
            (LockMode::Semaphore { limit: 4 }, LockModeWire::Semaphore, 4),
        ];
        for (mode, wire, limit) in cases {
            let req = session.acquire_request("db", Until::Now, mode);
            assert_eq!((req.mode(), req.limit), (wire, limit), "{mode}");
            assert_eq!((req.wait_ms, req.leave_queue_on_timeout), (0, true));
        }
        // Every attempt is numbered anew.
        let a = session.acquire_request("db", Until::Forever, LockMode::Shared);
        let b = session.acquire_request("db", Until::Forever, LockMode::Shared);
        assert!(b.seq > a.seq);
        // Every call acting as the session carries its secret.
        assert_eq!(a.session_secret, "5".repeat(64));
    }

    #[tokio::test]
    async fn a_lost_session_takes_nothing_in_any_mode() {
        let session = unopened();
        session.inner.lost.send_replace(Some("expired".into()));
        for mode in [LockMode::Shared, LockMode::Semaphore { limit: 2 }] {
            let got = session.lock_with("db", Wait::No, mode).await;
            assert_eq!(got, Err(Error::SessionLost("expired".into())));
            assert!(!session.holds("db"));
            assert_eq!(session.held_mode("db"), None);
        }
    }
}
