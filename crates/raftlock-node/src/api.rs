//! The client-facing gRPC service (`raftlock.v1.Lock`).
//!
//! Writes go through the Raft log; a follower answers UNAVAILABLE naming
//! the leader (see [`crate::propose`]). A waiting Acquire is a long-poll:
//! the handler listens for the grant event that applying someone else's
//! release or expiry produces, so no client ever polls the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftlock_core::{
    validate_label, validate_lock_delay, validate_name, validate_ttl, Command, Event, LockError,
    LockView, Outcome, SessionId,
};
use raftlock_proto::v1::lock_server::Lock;
use raftlock_proto::v1::*;
use raftlock_proto::{ErrorKind, MAX_POLL, UNREACHABLE_LEADER_HEADER};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::batcher::Proposer;
use crate::leader::SessionClock;
use crate::leadership::LeadershipCheck;
use crate::metrics::RpcTimer;
use crate::propose::{leader_other_than, NotServed};
use crate::shared::Shared;
use crate::types::{NodeId, Raft};

/// Largest client request accepted, in bytes.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
const DEFAULT_LIST_LIMIT: usize = 10_000;
const MAX_LIST_LIMIT: usize = 100_000;

pub struct LockService {
    raft: Raft,
    proposer: Proposer,
    leadership: LeadershipCheck,
    shared: Shared,
    clock: Arc<SessionClock>,
    id: NodeId,
    started: Instant,
    /// Changes when the node shuts down: waiting calls end at once, so a
    /// graceful stop is not held up by long-polls.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl LockService {
    pub fn new(
        raft: Raft,
        proposer: Proposer,
        shared: Shared,
        clock: Arc<SessionClock>,
        id: NodeId,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        LockService {
            leadership: LeadershipCheck::new(raft.clone()),
            raft,
            proposer,
            shared,
            clock,
            id,
            started: Instant::now(),
            stop,
        }
    }

    /// Proposes a command and turns a refusal into a gRPC status.
    async fn apply(
        &self,
        command: Command,
        unreachable: Option<NodeId>,
    ) -> Result<Outcome, Status> {
        let proposed = self.proposer.propose(command).await;
        self.route(proposed, unreachable)
            .await?
            .map_err(lock_error_status)
    }

    /// Confirms this node leads, sharing the quorum round with concurrent
    /// calls (see [`LeadershipCheck`]).
    async fn leading(&self, unreachable: Option<NodeId>) -> Result<(), Status> {
        let checked = self.leadership.confirm().await;
        self.route(checked, unreachable).await
    }

    /// A redirect to the leader the client reports unreachable is held
    /// until the election that must follow names another one.
    async fn route<T>(
        &self,
        result: Result<T, NotServed>,
        unreachable: Option<NodeId>,
    ) -> Result<T, Status> {
        match result {
            Err(NotServed::NotLeader(Some((id, _)))) if Some(id) == unreachable => {
                Err(leader_other_than(&self.raft, id).await.into())
            }
            other => Ok(other?),
        }
    }

    fn holder_of(&self, name: &str) -> Option<LockHolder> {
        self.shared
            .table()
            .lock(name)
            .and_then(|view| lock_info(view).holder)
    }

    fn not_acquired(&self, name: &str, queued: bool, available_at_ms: u64) -> AcquireResponse {
        AcquireResponse {
            acquired: false,
            queued,
            holder: self.holder_of(name),
            available_at_ms,
            ..Default::default()
        }
    }

    /// Waits until `session` is granted `name`, its session ends, or `until`.
    async fn wait_for_grant(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<Event>,
        session: SessionId,
        name: &str,
        until: tokio::time::Instant,
    ) -> Result<Option<u64>, Status> {
        loop {
            {
                let table = self.shared.table();
                if let Some((holder, token)) = table.holder(name) {
                    if holder == session {
                        return Ok(Some(token));
                    }
                }
                if table.session(session).is_none() {
                    return Err(lock_error_status(LockError::UnknownSession(session)));
                }
            }
            // Sleep until an event about this lock or session (or a lag,
            // after which the table is re-read).
            let mut stop = self.stop.clone();
            loop {
                let event = tokio::select! {
                    event = tokio::time::timeout_at(until, events.recv()) => event,
                    _ = stop.changed() => return Err(Status::unavailable("node is shutting down")),
                };
                match event {
                    Err(_) => return Ok(None),
                    Ok(Err(RecvError::Closed)) => {
                        return Err(Status::unavailable("node is shutting down"))
                    }
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Ok(Event::Granted {
                        session: s,
                        name: n,
                        ..
                    })) if s == session || n == name => break,
                    Ok(Ok(Event::SessionEnded { session: s, .. })) if s == session => break,
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn open_session(
        &self,
        request: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        let _timer = RpcTimer::start("open_session");
        let unreachable = unreachable_leader(&request);
        let req = request.into_inner();
        validate_ttl(req.ttl_ms).map_err(lock_error_status)?;
        validate_lock_delay(req.lock_delay_ms).map_err(lock_error_status)?;
        validate_label(&req.label).map_err(lock_error_status)?;
        let session = SessionId(rand::random::<u128>());
        match self
            .apply(
                Command::OpenSession {
                    session,
                    label: req.label,
                    ttl_ms: req.ttl_ms,
                    lock_delay_ms: req.lock_delay_ms,
                },
                unreachable,
            )
            .await?
        {
            Outcome::SessionOpened { session, ttl_ms } => Ok(Response::new(OpenSessionResponse {
                session_id: session.to_string(),
                ttl_ms,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveResponse>, Status> {
        let _timer = RpcTimer::start("keep_alive");
        let session = parse_session(&request.get_ref().session_id)?;
        // Only the leader's clock counts; confirming leadership also makes
        // sure every session committed so far is visible here.
        self.leading(unreachable_leader(&request)).await?;
        let ttl_ms = self
            .shared
            .table()
            .session(session)
            .map(|s| s.ttl_ms)
            .ok_or_else(|| lock_error_status(LockError::UnknownSession(session)))?;
        self.clock
            .keep_alive(session, Duration::from_millis(ttl_ms))
            .map_err(|_| lock_error_status(LockError::UnknownSession(session)))?;
        Ok(Response::new(KeepAliveResponse { ttl_ms }))
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        let _timer = RpcTimer::start("close_session");
        let unreachable = unreachable_leader(&request);
        let req = request.into_inner();
        let session = parse_session(&req.session_id)?;
        match self
            .apply(
                Command::CloseSession {
                    session,
                    seq: req.seq,
                },
                unreachable,
            )
            .await?
        {
            Outcome::SessionEnded { released } => {
                Ok(Response::new(CloseSessionResponse { released }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn acquire(
        &self,
        request: Request<AcquireRequest>,
    ) -> Result<Response<AcquireResponse>, Status> {
        let _timer = RpcTimer::start("acquire");
        let unreachable = unreachable_leader(&request);
        let req = request.into_inner();
        let session = parse_session(&req.session_id)?;
        validate_name(&req.name).map_err(lock_error_status)?;
        let wait = Duration::from_millis(req.wait_ms);
        let poll = wait.min(MAX_POLL);
        let until = tokio::time::Instant::now() + poll;
        // Subscribe before proposing so a grant right after cannot be missed.
        let mut events = self.shared.subscribe();
        let outcome = self
            .apply(
                Command::Acquire {
                    session,
                    seq: req.seq,
                    name: req.name.clone(),
                    wait: !wait.is_zero(),
                },
                unreachable,
            )
            .await?;
        let granted = |token, reentrant| {
            Ok(Response::new(AcquireResponse {
                acquired: true,
                fencing_token: token,
                reentrant,
                ..Default::default()
            }))
        };
        match outcome {
            Outcome::Granted { token, reentrant } => return granted(token, reentrant),
            Outcome::Busy {
                available_at_ms, ..
            } => {
                return Ok(Response::new(self.not_acquired(
                    &req.name,
                    false,
                    available_at_ms,
                )))
            }
            Outcome::Queued { .. } => {}
            other => return Err(unexpected(other)),
        }
        if let Some(token) = self
            .wait_for_grant(&mut events, session, &req.name, until)
            .await?
        {
            return granted(token, false);
        }
        if !req.leave_queue_on_timeout || wait > MAX_POLL {
            return Ok(Response::new(self.not_acquired(&req.name, true, 0)));
        }
        // The caller gives up: leave the queue, unless the grant won the race.
        match self
            .apply(
                Command::CancelWait {
                    session,
                    seq: 0,
                    name: req.name.clone(),
                },
                unreachable,
            )
            .await?
        {
            Outcome::Granted { token, .. } => granted(token, false),
            _ => Ok(Response::new(self.not_acquired(&req.name, false, 0))),
        }
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let _timer = RpcTimer::start("release");
        let unreachable = unreachable_leader(&request);
        let req = request.into_inner();
        let session = parse_session(&req.session_id)?;
        validate_name(&req.name).map_err(lock_error_status)?;
        match self
            .apply(
                Command::Release {
                    session,
                    seq: req.seq,
                    name: req.name,
                },
                unreachable,
            )
            .await?
        {
            Outcome::Released => Ok(Response::new(ReleaseResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn get_lock(
        &self,
        request: Request<GetLockRequest>,
    ) -> Result<Response<GetLockResponse>, Status> {
        let _timer = RpcTimer::start("get_lock");
        let unreachable = unreachable_leader(&request);
        let name = request.into_inner().name;
        validate_name(&name).map_err(lock_error_status)?;
        self.leading(unreachable).await?;
        let lock = self.shared.table().lock(&name).map(lock_info);
        Ok(Response::new(GetLockResponse { lock }))
    }

    async fn list_locks(
        &self,
        request: Request<ListLocksRequest>,
    ) -> Result<Response<ListLocksResponse>, Status> {
        let _timer = RpcTimer::start("list_locks");
        let unreachable = unreachable_leader(&request);
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        self.leading(unreachable).await?;
        let mut views = self.shared.table().locks(&req.prefix, limit + 1);
        let truncated = views.len() > limit;
        views.truncate(limit);
        Ok(Response::new(ListLocksResponse {
            locks: views.into_iter().map(lock_info).collect(),
            truncated,
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let _timer = RpcTimer::start("status");
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let addr_of = |id: NodeId| {
            members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.addr.clone())
                .unwrap_or_default()
        };
        let (sessions, locks) = {
            let table = self.shared.table();
            (table.session_count() as u64, table.lock_count() as u64)
        };
        Ok(Response::new(StatusResponse {
            id: self.id,
            addr: addr_of(self.id),
            role: crate::metrics::role_of(&metrics).into(),
            term: metrics.current_term,
            last_applied: metrics.last_applied.map_or(0, |l| l.index),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            has_leader: metrics.current_leader.is_some(),
            leader_id: metrics.current_leader.unwrap_or(0),
            leader_addr: metrics.current_leader.map(addr_of).unwrap_or_default(),
            members,
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            sessions,
            locks,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            replication: metrics
                .replication
                .iter()
                .flatten()
                .map(|(id, matched)| Replication {
                    id: *id,
                    matched_index: matched.map_or(0, |l| l.index),
                })
                .collect(),
        }))
    }
}

/// The leader id the client says it cannot reach, if it says so.
fn unreachable_leader<T>(request: &Request<T>) -> Option<NodeId> {
    request
        .metadata()
        .get(UNREACHABLE_LEADER_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn parse_session(text: &str) -> Result<SessionId, Status> {
    text.parse().map_err(lock_error_status)
}

fn lock_info(view: LockView) -> LockInfo {
    LockInfo {
        name: view.name,
        holder: view.holder.map(|h| LockHolder {
            session_id: h.session.to_string(),
            label: h.label,
            fencing_token: h.token,
            since_ms: h.since_ms,
        }),
        waiters: view
            .waiters
            .into_iter()
            .map(|w| Waiter {
                session_id: w.session.to_string(),
                label: w.label,
            })
            .collect(),
        available_at_ms: view.available_at_ms,
    }
}

/// Maps a refusal to its gRPC code, tagging the kind for clients.
pub fn lock_error_status(e: LockError) -> Status {
    use tonic::Code;
    let (code, kind) = match &e {
        LockError::InvalidName(_)
        | LockError::InvalidArgument(_)
        | LockError::InvalidSession(_) => (Code::InvalidArgument, ErrorKind::InvalidArgument),
        LockError::SeqReused { .. } => (Code::InvalidArgument, ErrorKind::SeqReused),
        LockError::UnknownSession(_) => (Code::NotFound, ErrorKind::SessionExpired),
        LockError::SessionExists(_) => (Code::AlreadyExists, ErrorKind::SessionExists),
        LockError::NotHolder { .. } => (Code::PermissionDenied, ErrorKind::NotHolder),
        LockError::NotHeld { .. } => (Code::FailedPrecondition, ErrorKind::NotHeld),
        LockError::StaleRequest { .. } => (Code::FailedPrecondition, ErrorKind::StaleRequest),
        LockError::ModeConflict { .. } | LockError::OwnModeConflict { .. } => {
            (Code::FailedPrecondition, ErrorKind::InvalidArgument)
        }
    };
    kind.status(code, e.to_string())
}

fn unexpected(outcome: Outcome) -> Status {
    Status::internal(format!("unexpected state machine answer {outcome:?}"))
}
