//! The client-facing gRPC service (`raftlock.v1.Lock`).
//!
//! Writes go through the Raft log; a follower answers UNAVAILABLE naming
//! the leader (see [`crate::status`]). A waiting Acquire is a long-poll:
//! the handler listens for the grant event that applying someone else's
//! release or expiry produces, so no client ever polls the table.
//!
//! A session belongs to whoever opened it: the opener gets a secret (see
//! [`secret`]), and every call acting as the session must send it from the
//! same principal, or the lock table refuses it.

mod listing;
mod secret;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, RaftMetrics};
use raftlock_core::{
    validate_label, validate_lock_delay, validate_mode, validate_name, validate_ttl, Command,
    Event, HolderView, LockError, LockMode, LockView, Outcome, SessionId,
};
use raftlock_proto::v1::lock_server::Lock;
use raftlock_proto::v1::LockMode as WireMode;
use raftlock_proto::v1::*;
use raftlock_proto::{MAX_POLL, UNREACHABLE_LEADER_HEADER};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::admin::members_of;
use crate::applied_table::AppliedTable;
use crate::batcher::Batcher;
use crate::caller::Caller;
use crate::leader_duties::SessionClock;
use crate::metrics::RpcTimer;
use crate::raft_calls::{leader_other_than, NotServed};
use crate::read_barrier::ReadBarrier;
use crate::server_limits::ServerLimits;
use crate::status::{lock_refused, name_not_allowed, shutting_down, unexpected};
use crate::types::{NodeId, Raft};
use crate::watch::WatchSlots;
use listing::{check_prefix, PageRequest};
use secret::{new_secret, Claim};

/// Largest client request accepted, in bytes.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

pub struct LockService {
    raft: Raft,
    batcher: Batcher,
    read_barrier: ReadBarrier,
    table: AppliedTable,
    clock: Arc<SessionClock>,
    id: NodeId,
    started: Instant,
    /// Watch streams this node may serve at once (`--max-watchers`).
    watch_slots: WatchSlots,
    /// Most locks in one ListLocks reply (`--max-list-page`).
    max_list_page: usize,
    /// Changes when the node shuts down: waiting calls end at once, so a
    /// graceful stop is not held up by long-polls.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl LockService {
    pub fn new(
        raft: Raft,
        batcher: Batcher,
        table: AppliedTable,
        clock: Arc<SessionClock>,
        id: NodeId,
        stop: tokio::sync::watch::Receiver<bool>,
        limits: &ServerLimits,
    ) -> Self {
        LockService {
            read_barrier: ReadBarrier::new(raft.clone(), limits.max_queued_reads),
            watch_slots: WatchSlots::new(limits.max_watchers),
            max_list_page: limits.max_list_page,
            raft,
            batcher,
            table,
            clock,
            id,
            started: Instant::now(),
            stop,
        }
    }

    /// Proposes a command (through the batcher) and turns a refusal into a
    /// gRPC status, holding back a redirect to an unreachable leader.
    async fn propose_or_redirect(
        &self,
        command: Command,
        unreachable: Option<NodeId>,
    ) -> Result<Outcome, Status> {
        let proposed = self.batcher.try_propose(command).await;
        self.route(proposed, unreachable)
            .await?
            .map_err(lock_refused)
    }

    /// Confirms this node leads, sharing the quorum round with concurrent
    /// calls (see [`ReadBarrier`]).
    async fn confirm_leading(&self, unreachable: Option<NodeId>) -> Result<(), Status> {
        let checked = self.read_barrier.wait().await;
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
        self.table
            .read(|t| t.lock(name))
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

    /// Waits for the grant of a queued Acquire until `queued.until`; then
    /// stays in the queue or leaves it, as the request asks.
    async fn wait_in_queue(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<Event>,
        req: &AcquireRequest,
        queued: Queued,
    ) -> Result<AcquireResponse, Status> {
        let granted_token = self
            .wait_for_grant(events, queued.session, &req.name, queued.until)
            .await?;
        if let Some(token) = granted_token {
            return Ok(granted(token, false));
        }
        // A wait longer than one poll goes on in the client's next call.
        if !req.leave_queue_on_timeout || Duration::from_millis(req.wait_ms) > MAX_POLL {
            return Ok(self.not_acquired(&req.name, true, 0));
        }
        self.leave_queue(&queued, &req.name).await
    }

    /// The caller gives up: leave the queue, unless the grant won the race.
    /// Sent as the session, like the Acquire that queued.
    async fn leave_queue(&self, queued: &Queued, name: &str) -> Result<AcquireResponse, Status> {
        let command = queued.claim.wrap(Command::CancelWait {
            session: queued.session,
            seq: 0,
            name: name.to_string(),
        });
        match self
            .propose_or_redirect(command, queued.unreachable)
            .await?
        {
            Outcome::Granted { token, .. } => Ok(granted(token, false)),
            _ => Ok(self.not_acquired(name, false, 0)),
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
            let (held, session_open) = self
                .table
                .read(|t| (t.held_by(name, session), t.session(session).is_some()));
            match held {
                Some((_, token)) => return Ok(Some(token)),
                _ if !session_open => return Err(lock_refused(LockError::UnknownSession(session))),
                _ => {}
            }
            // Sleep until an event about this lock or session (or a lag,
            // after which the table is re-read).
            let mut stop = self.stop.clone();
            loop {
                let event = tokio::select! {
                    event = tokio::time::timeout_at(until, events.recv()) => event,
                    _ = stop.changed() => return Err(shutting_down()),
                };
                match event {
                    Err(_) => return Ok(None),
                    Ok(Err(RecvError::Closed)) => return Err(shutting_down()),
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
        let caller = Caller::of(&request);
        let req = request.into_inner();
        validate_ttl(req.ttl_ms).map_err(lock_refused)?;
        validate_lock_delay(req.lock_delay_ms).map_err(lock_refused)?;
        validate_label(&req.label).map_err(lock_refused)?;
        let session = SessionId(rand::random::<u128>());
        let secret = new_secret();
        let owner = Claim::new(&caller, &secret).owner();
        match self
            .propose_or_redirect(
                Command::OpenSessionOwned {
                    session,
                    label: req.label,
                    ttl_ms: req.ttl_ms,
                    lock_delay_ms: req.lock_delay_ms,
                    owner,
                },
                unreachable,
            )
            .await?
        {
            Outcome::SessionOpened { session, ttl_ms } => Ok(Response::new(OpenSessionResponse {
                session_id: session.to_string(),
                ttl_ms,
                session_secret: secret,
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
        let claim = Claim::new(&Caller::of(&request), &request.get_ref().session_secret);
        // Only the leader's clock counts; confirming leadership also makes
        // sure every session committed so far is visible here. Never
        // refused for a busy node (see `ReadBarrier::wait_for_room`).
        let checked = self.read_barrier.wait_for_room().await;
        self.route(checked, unreachable_leader(&request)).await?;
        let (ttl_ms, owned) = self
            .table
            .read(|t| {
                let owned = claim.owns(t.session_owner(session).flatten());
                t.session(session).map(|s| (s.ttl_ms, owned))
            })
            .ok_or_else(|| lock_refused(LockError::UnknownSession(session)))?;
        // Not a log write, so the table cannot refuse it: refuse it here,
        // before the deadline moves.
        if !owned {
            return Err(lock_refused(LockError::NotSessionOwner {
                session,
                request: "keep the session alive".into(),
            }));
        }
        self.clock
            .keep_alive(session, Duration::from_millis(ttl_ms))
            .map_err(|_| lock_refused(LockError::UnknownSession(session)))?;
        Ok(Response::new(KeepAliveResponse { ttl_ms }))
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        let _timer = RpcTimer::start("close_session");
        let unreachable = unreachable_leader(&request);
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let session = parse_session(&req.session_id)?;
        let claim = Claim::new(&caller, &req.session_secret);
        match self
            .propose_or_redirect(
                claim.wrap(Command::CloseSession {
                    session,
                    seq: req.seq,
                }),
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
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let session = parse_session(&req.session_id)?;
        validate_name(&req.name).map_err(lock_refused)?;
        if !caller.may_use(&req.name) {
            return Err(name_not_allowed(&caller, &req.name));
        }
        let claim = Claim::new(&caller, &req.session_secret);
        let wait = Duration::from_millis(req.wait_ms);
        let until = tokio::time::Instant::now() + wait.min(MAX_POLL);
        // Subscribe before proposing so a grant right after cannot be missed.
        let mut events = self.table.subscribe();
        let mode = mode_of(&req).map_err(lock_refused)?;
        let (seq, name, wait) = (req.seq, req.name.clone(), !wait.is_zero());
        // Exclusive requests keep the command every raftlock version reads.
        let command = match mode {
            LockMode::Exclusive => Command::Acquire {
                session,
                seq,
                name,
                wait,
            },
            mode => Command::AcquireWith {
                session,
                seq,
                name,
                wait,
                mode,
            },
        };
        let answer = match self
            .propose_or_redirect(claim.wrap(command), unreachable)
            .await?
        {
            Outcome::Granted { token, reentrant } => granted(token, reentrant),
            Outcome::Busy {
                available_at_ms, ..
            } => self.not_acquired(&req.name, false, available_at_ms),
            Outcome::Queued { .. } => {
                let queued = Queued {
                    session,
                    until,
                    unreachable,
                    claim,
                };
                self.wait_in_queue(&mut events, &req, queued).await?
            }
            other => return Err(unexpected(other)),
        };
        Ok(Response::new(answer))
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let _timer = RpcTimer::start("release");
        let unreachable = unreachable_leader(&request);
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let session = parse_session(&req.session_id)?;
        validate_name(&req.name).map_err(lock_refused)?;
        if !caller.may_use(&req.name) {
            return Err(name_not_allowed(&caller, &req.name));
        }
        let claim = Claim::new(&caller, &req.session_secret);
        match self
            .propose_or_redirect(
                claim.wrap(Command::Release {
                    session,
                    seq: req.seq,
                    name: req.name,
                }),
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
        validate_name(&name).map_err(lock_refused)?;
        self.confirm_leading(unreachable).await?;
        let lock = self.table.read(|t| t.lock(&name)).map(lock_info);
        Ok(Response::new(GetLockResponse { lock }))
    }

    async fn list_locks(
        &self,
        request: Request<ListLocksRequest>,
    ) -> Result<Response<ListLocksResponse>, Status> {
        let _timer = RpcTimer::start("list_locks");
        let unreachable = unreachable_leader(&request);
        let req = request.into_inner();
        let page = PageRequest::new(req.prefix, req.limit, req.page_token, self.max_list_page)?;
        self.confirm_leading(unreachable).await?;
        let page = self.table.read(|t| page.read(t));
        Ok(Response::new(ListLocksResponse {
            locks: page.views.into_iter().map(lock_info).collect(),
            truncated: !page.next_page_token.is_empty(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchStream =
        tonic::codegen::tokio_stream::wrappers::ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        check_prefix(&req.prefix)?;
        let slot = self.watch_slots.take()?;
        let stream = crate::watch::serve(
            slot,
            self.table.clone(),
            req.prefix,
            req.from_index,
            self.stop.clone(),
        )
        .await?;
        Ok(Response::new(stream.into()))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let _timer = RpcTimer::start("status");
        let metrics = self.raft.metrics().borrow().clone();
        let members = members_of(metrics.membership_config.membership());
        let member = |id: NodeId| members.iter().find(|m| m.id == id);
        let addr_of = |id: NodeId| {
            member(id)
                .map(|m| m.client_addr.clone())
                .unwrap_or_default()
        };
        let (sessions, locks) = self
            .table
            .read(|t| (t.session_count() as u64, t.lock_count() as u64));
        Ok(Response::new(StatusResponse {
            id: self.id,
            addr: addr_of(self.id),
            peer_addr: member(self.id).map(|m| m.addr.clone()).unwrap_or_default(),
            role: crate::metrics::role_of(&metrics).into(),
            term: metrics.current_term,
            last_applied: metrics.last_applied.map_or(0, |l| l.index),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            has_leader: metrics.current_leader.is_some(),
            leader_id: metrics.current_leader.unwrap_or(0),
            leader_addr: metrics.current_leader.map(addr_of).unwrap_or_default(),
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            replication: replication_of(&metrics),
            members,
            sessions,
            locks,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            quotas: crate::metrics::quota_status(&self.table),
        }))
    }
}

/// An Acquire the lock table queued: whose (and who asked), how long it
/// may wait here, and which leader the client could not reach.
struct Queued {
    session: SessionId,
    until: tokio::time::Instant,
    unreachable: Option<NodeId>,
    claim: Claim,
}

fn granted(token: u64, reentrant: bool) -> AcquireResponse {
    AcquireResponse {
        acquired: true,
        fencing_token: token,
        reentrant,
        ..Default::default()
    }
}

/// How far each follower's log matches this leader's (empty on a follower).
fn replication_of(metrics: &RaftMetrics<NodeId, BasicNode>) -> Vec<Replication> {
    metrics
        .replication
        .iter()
        .flatten()
        .map(|(id, matched)| Replication {
            id: *id,
            matched_index: matched.map_or(0, |l| l.index),
        })
        .collect()
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
    text.parse().map_err(lock_refused)
}

/// The mode an Acquire asks for, checked.
fn mode_of(req: &AcquireRequest) -> Result<LockMode, LockError> {
    let mode = match (req.mode(), req.limit) {
        (WireMode::Exclusive, 0) => LockMode::Exclusive,
        (WireMode::Shared, 0) => LockMode::Shared,
        (WireMode::Semaphore, limit) => LockMode::Semaphore { limit },
        (mode, limit) => {
            return Err(LockError::InvalidArgument(format!(
                "limit {limit} given with {}: only semaphores take a limit",
                mode.as_str_name()
            )))
        }
    };
    validate_mode(mode)?;
    Ok(mode)
}

pub(crate) fn wire_mode(mode: LockMode) -> i32 {
    match mode {
        LockMode::Exclusive => WireMode::Exclusive,
        LockMode::Shared => WireMode::Shared,
        LockMode::Semaphore { .. } => WireMode::Semaphore,
    }
    .into()
}

fn lock_holder(h: HolderView) -> LockHolder {
    LockHolder {
        session_id: h.session.to_string(),
        label: h.label,
        fencing_token: h.token,
        since_ms: h.since_ms,
        mode: wire_mode(h.mode),
    }
}

fn lock_info(view: LockView) -> LockInfo {
    LockInfo {
        limit: view.limit().unwrap_or(0),
        name: view.name,
        holder: view.holder.map(lock_holder),
        holders: view.holders.into_iter().map(lock_holder).collect(),
        waiters: view
            .waiters
            .into_iter()
            .map(|w| Waiter {
                session_id: w.session.to_string(),
                label: w.label,
                mode: wire_mode(w.mode),
            })
            .collect(),
        available_at_ms: view.available_at_ms,
    }
}
