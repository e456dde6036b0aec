//! Client ids (`host__pid`) to raftlock sessions.
//!
//! Each client id that locks becomes an owner. Each lock it takes or waits
//! for is a raftlock session of its own, labelled with the client id and
//! opened by its LOCK: so giving up a wait or releasing is one awaited
//! CloseSession, which can never race a later LOCK of the same name (a
//! wait abandoned inside a shared session is cancelled in the background).
//! A LOCK that cannot be granted at once leaves a task waiting in
//! raftlock's FIFO queue; the client's next LOCK poll collects the grant.
//! Clients of this protocol say nothing while they hold, so an owner is
//! ended (its sessions closed, which grants each of its locks to the next
//! waiter in the same log entry) only after the client TTL passes without
//! a message from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raftlock_client::{Client, Error, Session, SessionOptions, Wait};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::protocol::Target;

/// How long a LOCK waits for its grant before answering WAIT: well under
/// the 2.2 s after which pypet's client stops waiting for an answer and
/// asks again on a new socket.
pub const HOLD: Duration = Duration::from_secs(1);
/// The longest session TTL the cluster accepts.
const MAX_SESSION_TTL: Duration = Duration::from_secs(3600);
/// Pause before a waiting task retries after the cluster was unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct Config {
    /// An owner that sends nothing for this long is ended.
    pub client_ttl: Duration,
    /// At most this many owners at once.
    pub max_clients: usize,
}

impl Config {
    /// The raftlock session's own TTL: how long a client's locks outlive a
    /// gateway that died. The cluster caps it at an hour.
    fn session_ttl(&self) -> Duration {
        self.client_ttl
            .clamp(Duration::from_secs(1), MAX_SESSION_TTL)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LockOutcome {
    Granted(u64),
    /// Queued (or the cluster is unreachable): poll again.
    Waiting,
    /// The client asked again for a lock it holds.
    AlreadyHeld,
    Refused(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum UnlockOutcome {
    Released,
    Refused(String),
}

/// All owners of one gateway. Cheap to clone.
#[derive(Clone)]
pub struct Owners {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    config: Config,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    owners: HashMap<String, Entry>,
    /// Owners ended for silence, and when: to say so if they come back.
    ended: HashMap<String, Instant>,
}

struct Entry {
    owner: Arc<Owner>,
    last_seen: Instant,
}

struct Owner {
    id: String,
    /// One request of this client at a time.
    ops: tokio::sync::Mutex<()>,
    claims: Mutex<HashMap<String, Claim>>,
}

enum Claim {
    /// A task waits in the queue; `state` follows it.
    Pending {
        waiter: AbortOnDrop,
        state: watch::Receiver<WaitState>,
    },
    /// Granted, and the client was told GO.
    Held(Held),
}

#[derive(Clone)]
enum WaitState {
    Opening,
    Queued(Session),
    Granted(Held),
    Refused(String),
}

impl WaitState {
    fn settled(&self) -> bool {
        matches!(self, WaitState::Granted(_) | WaitState::Refused(_))
    }

    fn session(&self) -> Option<&Session> {
        match self {
            WaitState::Queued(session) => Some(session),
            WaitState::Granted(held) => Some(&held.session),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct Held {
    session: Session,
    token: u64,
}

/// Stops the waiting task when its claim is dropped. Dropping the task's
/// `Session::lock` future leaves raftlock's queue (or releases a grant
/// that won the race).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Owner {
    fn claims(&self) -> MutexGuard<'_, HashMap<String, Claim>> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Owners {
    pub fn new(client: Client, config: Config) -> Owners {
        Owners {
            shared: Arc::new(Shared {
                client,
                config,
                table: Mutex::new(Table::default()),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.shared.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's owner, made if `create`; either way it was seen now.
    fn owner(&self, id: &str, create: bool) -> Result<Option<Arc<Owner>>, String> {
        let mut table = self.table();
        let now = Instant::now();
        if let Some(entry) = table.owners.get_mut(id) {
            entry.last_seen = now;
            return Ok(Some(entry.owner.clone()));
        }
        if !create {
            return Ok(None);
        }
        let max = self.shared.config.max_clients;
        if table.owners.len() >= max {
            return Err(format!(
                "The gateway already serves {max} clients (its --max-clients)"
            ));
        }
        table.ended.remove(id);
        let owner = Arc::new(Owner {
            id: id.to_string(),
            ops: tokio::sync::Mutex::new(()),
            claims: Mutex::new(HashMap::new()),
        });
        let entry = Entry {
            owner: owner.clone(),
            last_seen: now,
        };
        table.owners.insert(id.to_string(), entry);
        Ok(Some(owner))
    }

    /// Marks the client as heard from now (also after a slow request).
    pub fn touch(&self, id: &str) {
        if let Some(entry) = self.table().owners.get_mut(id) {
            entry.last_seen = Instant::now();
        }
    }

    /// A LOCK: granted, queued (answer WAIT, poll again), or refused.
    pub async fn lock(&self, target: &Target) -> LockOutcome {
        let owner = match self.owner(&target.client, true) {
            Ok(Some(owner)) => owner,
            Ok(None) => unreachable!("owner() creates when asked to"),
            Err(refusal) => return LockOutcome::Refused(refusal),
        };
        let outcome = self.lock_as(&owner, &target.name).await;
        self.touch(&target.client);
        outcome
    }

    async fn lock_as(&self, owner: &Arc<Owner>, name: &str) -> LockOutcome {
        let _one_at_a_time = owner.ops.lock().await;
        let mut state = {
            let mut claims = owner.claims();
            if let Some(Claim::Held(held)) = claims.get(name) {
                if held.session.lost_reason().is_none() {
                    return LockOutcome::AlreadyHeld;
                }
                // Lost with its session: asking again is a fresh request.
                claims.remove(name);
            }
            match claims.get(name) {
                Some(Claim::Pending { state, .. }) => state.clone(),
                _ => {
                    let (tx, rx) = watch::channel(WaitState::Opening);
                    let task = tokio::spawn(wait_for_grant(
                        self.shared.clone(),
                        owner.id.clone(),
                        name.to_string(),
                        tx,
                    ));
                    let claim = Claim::Pending {
                        waiter: AbortOnDrop(task),
                        state: rx.clone(),
                    };
                    claims.insert(name.to_string(), claim);
                    rx
                }
            }
        };
        let settled = match timeout(HOLD, state.wait_for(WaitState::settled)).await {
            Ok(Ok(settled)) => settled.clone(),
            Ok(Err(_)) => WaitState::Refused("the wait for the lock ended".to_string()),
            Err(_) => return LockOutcome::Waiting,
        };
        let mut claims = owner.claims();
        match settled {
            WaitState::Granted(held) => {
                let token = held.token;
                claims.insert(name.to_string(), Claim::Held(held));
                LockOutcome::Granted(token)
            }
            WaitState::Refused(why) => {
                claims.remove(name);
                LockOutcome::Refused(why)
            }
            WaitState::Opening | WaitState::Queued(_) => LockOutcome::Waiting,
        }
    }

    /// An UNLOCK: released, or why not, in words for the client.
    pub async fn unlock(&self, target: &Target) -> UnlockOutcome {
        let name = &target.name;
        let owner = match self.owner(&target.client, false) {
            Ok(Some(owner)) => owner,
            _ => return UnlockOutcome::Refused(self.not_yours(target).await),
        };
        let _one_at_a_time = owner.ops.lock().await;
        let claim = owner.claims().remove(name);
        let held = match claim {
            Some(Claim::Held(held)) => held,
            Some(Claim::Pending { waiter, state }) => {
                let state = state.borrow().clone();
                if let WaitState::Granted(held) = state {
                    // Granted while the client was between polls.
                    held
                } else {
                    // Still queued: stop waiting and leave the queue.
                    drop(waiter);
                    if let Some(session) = state.session() {
                        let _ = session.close().await;
                    }
                    drop(_one_at_a_time);
                    return UnlockOutcome::Refused(format!(
                        "{}; `{}` was waiting for it and has left the queue",
                        self.not_yours(target).await,
                        target.client
                    ));
                }
            }
            None => {
                drop(_one_at_a_time);
                return UnlockOutcome::Refused(self.not_yours(target).await);
            }
        };
        let lost = |reason: &str| {
            UnlockOutcome::Refused(format!(
                "Lock `{name}` was lost before this release: {reason} ({})",
                target.who()
            ))
        };
        if let Some(reason) = held.session.lost_reason() {
            return lost(&reason);
        }
        // Release first, then close the emptied session. A release retried
        // across a leader change gets its first answer from the session's
        // retry memory; a close does not (closing drops that memory), so a
        // close whose reply was lost would look like a lost lock.
        let result = held.session.release(name).await;
        self.touch(&target.client);
        if let Err(e @ (Error::Unavailable(_) | Error::Other(_))) = &result {
            // Not known to have applied: keep the claim for a retry.
            let refusal = UnlockOutcome::Refused(format!(
                "Lock `{name}` could not be released ({e}); it is still held, try again ({})",
                target.who()
            ));
            owner.claims().insert(name.clone(), Claim::Held(held));
            return refusal;
        }
        // The claim is gone either way: end its session, which holds
        // nothing it should keep (if the close fails, it expires).
        let session = held.session.clone();
        tokio::spawn(async move {
            let _ = session.close().await;
        });
        match result {
            Ok(()) => {
                tracing::info!(client = %target.client, lock = %name, token = held.token, "released");
                UnlockOutcome::Released
            }
            Err(Error::NotHeld { .. }) => lost("the cluster no longer counted it as held"),
            Err(Error::SessionLost(reason)) => lost(&reason),
            Err(e) => UnlockOutcome::Refused(format!(
                "Lock `{name}` could not be released: {e} ({})",
                target.who()
            )),
        }
    }

    /// Why `target`'s client may not release the lock, which it does not
    /// hold here: it was ended for silence, someone else holds the lock,
    /// or nobody does.
    async fn not_yours(&self, target: &Target) -> String {
        let (name, who) = (&target.name, target.who());
        let ended = self.table().ended.get(&target.client).copied();
        if let Some(at) = ended {
            return format!(
                "Lock `{name}` is not held: client `{}` sent nothing for {:?} (the gateway's \
                 client TTL) and its locks were released {:?} ago ({who})",
                target.client,
                self.shared.config.client_ttl,
                at.elapsed()
            );
        }
        let lookup = timeout(HOLD, self.shared.client.get_lock(name)).await;
        match lookup {
            Ok(Ok(Some(info))) if info.holder.is_some() => {
                let holder = info.holder.map(|h| h.label).unwrap_or_default();
                format!(
                    "Lock `{name}` was acquired by `{holder}` and not by `{}` ({who})",
                    target.client
                )
            }
            Ok(Ok(_)) => format!("Lock `{name}` cannot be found in database ({who})"),
            _ => format!("Lock `{name}` is not held by `{}` ({who})", target.client),
        }
    }

    /// Ends every owner silent for the client TTL; returns how many.
    pub fn expire_silent(&self, now: Instant) -> usize {
        let ttl = self.shared.config.client_ttl;
        let mut table = self.table();
        let silent: Vec<String> = table
            .owners
            .iter()
            // An owner in the middle of a request is not silent.
            .filter(|(_, e)| {
                now.duration_since(e.last_seen) >= ttl && e.owner.ops.try_lock().is_ok()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &silent {
            if let Some(entry) = table.owners.remove(id) {
                tracing::info!(client = %id, silent_for = ?now.duration_since(entry.last_seen), "client silent for the client TTL; ending its session");
                tokio::spawn(end(entry.owner));
                table.ended.insert(id.clone(), now);
            }
        }
        let max = self.shared.config.max_clients;
        table
            .ended
            .retain(|_, at| now.duration_since(*at) < ttl.max(Duration::from_secs(600)));
        if table.ended.len() > max {
            table.ended.clear();
        }
        silent.len()
    }

    /// Checks for silent owners until the process ends.
    pub async fn expire_forever(self) {
        let tick = (self.shared.config.client_ttl / 20)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            tokio::time::sleep(tick).await;
            self.expire_silent(Instant::now());
        }
    }

    /// Ends every owner now (the gateway is told DONE and stops).
    pub async fn end_all(&self) {
        let owners: Vec<Arc<Owner>> = self.table().owners.drain().map(|(_, e)| e.owner).collect();
        let ends: Vec<_> = owners.into_iter().map(|o| tokio::spawn(end(o))).collect();
        for end in ends {
            let _ = end.await;
        }
    }

    #[cfg(test)]
    fn owner_count(&self) -> usize {
        self.table().owners.len()
    }
}

/// Leaves the owner's queues and closes its sessions, which grants each
/// lock it held to that lock's next waiter.
async fn end(owner: Arc<Owner>) {
    let claims = std::mem::take(&mut *owner.claims());
    let mut sessions = Vec::new();
    for (_, claim) in claims {
        match claim {
            Claim::Held(held) => sessions.push(held.session),
            Claim::Pending { waiter, state } => {
                drop(waiter);
                let queued = state.borrow().session().cloned();
                sessions.extend(queued);
            }
        }
    }
    for session in sessions {
        match session.close().await {
            Ok(released) => {
                tracing::info!(client = %owner.id, ?released, "session closed; its locks are released")
            }
            Err(e) => tracing::warn!(
                client = %owner.id, %e,
                "could not close a session; it expires by itself after its TTL"
            ),
        }
    }
}

/// Waits in raftlock's queue for `name`, in a session of its own, until
/// granted; `tx` follows along. An unreachable cluster or a lost session
/// is retried (a new session joins the back of the queue); a refusal is
/// reported.
async fn wait_for_grant(
    shared: Arc<Shared>,
    client_id: String,
    name: String,
    tx: watch::Sender<WaitState>,
) {
    let options = SessionOptions {
        ttl: shared.config.session_ttl(),
        lock_delay: Duration::ZERO,
        label: client_id.clone(),
    };
    loop {
        let attempt = async {
            let session = shared.client.open_session(options.clone()).await?;
            tx.send_replace(WaitState::Queued(session.clone()));
            let grant = session.lock(&name, Wait::Forever).await?;
            Ok::<_, Error>((session, grant))
        };
        match attempt.await {
            Ok((session, grant)) => {
                tracing::info!(client = %client_id, lock = %name, token = grant.token, "granted");
                tx.send_replace(WaitState::Granted(Held {
                    session,
                    token: grant.token,
                }));
                return;
            }
            Err(e @ (Error::SessionLost(_) | Error::Unavailable(_) | Error::Other(_))) => {
                tracing::debug!(client = %client_id, lock = %name, %e, "still waiting");
                let queued = tx.borrow().session().cloned();
                if let Some(session) = queued {
                    let _ = session.close().await;
                }
                tx.send_replace(WaitState::Opening);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => {
                let queued = tx.borrow().session().cloned();
                if let Some(session) = queued {
                    let _ = session.close().await;
                }
                tx.send_replace(WaitState::Refused(format!("Lock `{name}` refused: {e}")));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(client_ttl: Duration, max_clients: usize) -> Owners {
        // Nothing here reaches the cluster: owners with no claims end
        // without a call.
        let client = Client::new(["127.0.0.1:1"]).unwrap();
        Owners::new(
            client,
            Config {
                client_ttl,
                max_clients,
            },
        )
    }

    #[tokio::test]
    async fn silent_owners_end_and_talking_ones_stay() {
        let ttl = Duration::from_secs(10);
        let owners = owners(ttl, 10);
        owners.owner("quiet__1", true).unwrap();
        owners.owner("chatty__2", true).unwrap();
        let start = Instant::now();
        assert_eq!(owners.expire_silent(start + ttl / 2), 0);
        // chatty speaks (any message touches its owner) at start + 8 s.
        owners
            .table()
            .owners
            .get_mut("chatty__2")
            .unwrap()
            .last_seen = start + ttl * 4 / 5;
        assert_eq!(owners.expire_silent(start + ttl), 1);
        assert_eq!(owners.owner_count(), 1);
        assert!(owners.table().ended.contains_key("quiet__1"));
        assert!(owners.owner("quiet__1", false).unwrap().is_none());
        assert_eq!(owners.expire_silent(start + ttl * 2), 1);
        assert_eq!(owners.owner_count(), 0);
    }

    #[tokio::test]
    async fn an_owner_in_the_middle_of_a_request_is_not_silent() {
        let owners = owners(Duration::from_secs(1), 10);
        let owner = owners.owner("busy__1", true).unwrap().unwrap();
        let busy = owner.ops.lock().await;
        assert_eq!(
            owners.expire_silent(Instant::now() + Duration::from_secs(5)),
            0
        );
        drop(busy);
        assert_eq!(
            owners.expire_silent(Instant::now() + Duration::from_secs(5)),
            1
        );
    }

    #[tokio::test]
    async fn max_clients_is_enforced_and_frees_up() {
        let owners = owners(Duration::from_secs(1), 2);
        owners.owner("a", true).unwrap();
        owners.owner("b", true).unwrap();
        let refused = owners.owner("c", true).err().unwrap();
        assert!(refused.contains("already serves 2 clients"), "{refused}");
        // Known owners are still served.
        assert!(owners.owner("a", true).unwrap().is_some());
        owners.expire_silent(Instant::now() + Duration::from_secs(2));
        assert!(owners.owner("c", true).unwrap().is_some());
    }

    #[test]
    fn the_session_ttl_is_the_client_ttl_within_what_the_cluster_takes() {
        let config = |secs| Config {
            client_ttl: Duration::from_secs(secs),
            max_clients: 1,
        };
        assert_eq!(config(600).session_ttl(), Duration::from_secs(600));
        assert_eq!(config(86_400).session_ttl(), MAX_SESSION_TTL);
    }
}
