//! Leader-only duties: keeping session deadlines and proposing what time
//! alone decides (a session's expiry, the end of a lock-delay), and the
//! leader's own quota flags when the table's differ.
//!
//! Keepalives are not log writes: the leader keeps each session's deadline
//! in memory, ordered by deadline ([`crate::session_deadlines`]), and
//! sleeps until the earliest one. A new leader knows nothing of past
//! keepalives, so it starts every session's deadline at now + TTL: that
//! may extend a session, never shorten it, so no client loses a lock
//! because leadership moved.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::ServerState;
use raftlock_core::{Command, Event, Limits, SessionId};
use tokio::sync::{broadcast, watch};

use crate::applied_table::AppliedTable;
use crate::batcher::now_ms;
use crate::batcher::Batcher;
use crate::fail_stop;
use crate::limits_duty::LimitsKeeper;
use crate::raft_calls::NotServed;
use crate::session_deadlines::{deadline_after, Deadlines};
use crate::types::{NodeId, Raft};

pub use crate::session_deadlines::TooLate;

/// How often the leader looks for what no event announces: sessions opened
/// since it last looked (it then reads the table only if the count of
/// sessions moved), a new lock-delay, and a retry of a failed expiry.
/// Deadlines themselves are slept on exactly.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Session deadlines, kept only while this node leads, for one term.
#[derive(Default)]
pub struct SessionClock {
    state: Mutex<ClockState>,
}

#[derive(Default)]
struct ClockState {
    /// The term these deadlines were kept in.
    term: u64,
    deadlines: Deadlines,
}

impl SessionClock {
    /// Extends a session to now + TTL, unless its deadline already passed
    /// (see [`Deadlines::keep_alive`]).
    pub fn keep_alive(&self, session: SessionId, ttl: Duration) -> Result<(), TooLate> {
        self.lock()
            .deadlines
            .keep_alive(session, ttl, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        fail_stop::lock(&self.state)
    }

    /// Forgets every deadline unless they were kept in `term`: a node that
    /// leads again after someone else did knows nothing of the keepalives
    /// sent to the other leader, so it starts everyone afresh. True if it
    /// did.
    fn enter_term(&self, term: u64) -> bool {
        let mut state = self.lock();
        if state.term == term {
            return false;
        }
        state.term = term;
        state.deadlines.clear();
        true
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.term = 0;
        state.deadlines.clear();
    }
}

/// Runs until `stop` changes: while this node leads, expires sessions,
/// ends lock-delays and proposes `limits` (its own `--max-*` flags)
/// whenever the table's differ; otherwise keeps no deadlines.
pub async fn run(
    raft: Raft,
    batcher: Batcher,
    table: AppliedTable,
    clock: std::sync::Arc<SessionClock>,
    id: NodeId,
    limits: Option<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    let duty = Duty {
        raft,
        batcher,
        table,
        clock,
    };
    let mut ended = duty.table.subscribe();
    let mut server = duty.raft.server_metrics();
    let mut keeper = limits.map(LimitsKeeper::new);
    let mut retry_expiry_at: Option<Instant> = None;
    loop {
        let wake = duty.next_wake(retry_expiry_at);
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            changed = server.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let Some(term) = leading_term(&duty.raft, id) else {
            duty.clock.clear();
            ended = ended.resubscribe();
            continue;
        };
        let fresh = duty.clock.enter_term(term);
        let lagged = forget_ended(&mut ended, &duty.clock);
        duty.track_sessions(fresh || lagged);
        let now = Instant::now();
        let retry = retry_expiry_at.is_some_and(|at| at <= now);
        let mut due = {
            let mut state = duty.clock.lock();
            let due = state.deadlines.take_due(now);
            if retry {
                state.deadlines.expiring()
            } else {
                due
            }
        };
        // A proposal can wait through a step-down and re-election: deadlines
        // from before that are not ours to act on.
        if leading_term(&duty.raft, id) != Some(term) {
            due.clear();
        }
        retry_expiry_at = match duty.expire(due).await {
            true => None,
            false => Some(Instant::now() + CHECK_EVERY),
        };
        duty.end_lock_delays().await;
        if let Some(keeper) = keeper.as_mut() {
            keeper
                .propose_if_needed(&duty.batcher, &duty.table, term)
                .await;
        }
    }
}

/// What the duties work with.
struct Duty {
    raft: Raft,
    batcher: Batcher,
    table: AppliedTable,
    clock: std::sync::Arc<SessionClock>,
}

impl Duty {
    /// The earliest of: the next session deadline, the next lock-delay end,
    /// a pending retry, and the next look for new sessions.
    fn next_wake(&self, retry_expiry_at: Option<Instant>) -> Instant {
        let now = Instant::now();
        let mut wake = now + CHECK_EVERY;
        if let Some(front) = self.clock.lock().deadlines.front() {
            wake = wake.min(front);
        }
        if let Some(at) = retry_expiry_at {
            wake = wake.min(at);
        }
        let delay_end = self.table.read(|t| t.next_delay_end_ms());
        if let Some(end) = delay_end
            .and_then(|at| deadline_after(now, Duration::from_millis(at.saturating_sub(now_ms()))))
        {
            wake = wake.min(end);
        }
        wake
    }

    /// Starts deadlines for sessions this leader has not seen. The table is
    /// read whole only when `force`d or when its count of sessions differs
    /// from the clock's (ended sessions are already forgotten by their
    /// events, so a difference means new ones).
    fn track_sessions(&self, force: bool) {
        let count = self.table.read(|t| t.session_count());
        if !force && count == self.clock.lock().deadlines.len() {
            return;
        }
        let sessions: Vec<(SessionId, u64)> = self.table.read(|t| t.session_ttls().collect());
        self.clock
            .lock()
            .deadlines
            .reconcile(&sessions, Instant::now());
    }

    /// Proposes the expiry of `sessions`, all at once so a mass expiry (a
    /// host with many sessions died) shares log entries. False if some
    /// proposal was not served (to try again).
    async fn expire(&self, sessions: Vec<SessionId>) -> bool {
        let mut proposals = tokio::task::JoinSet::new();
        for session in sessions {
            let batcher = self.batcher.clone();
            proposals.spawn(async move {
                let result = batcher.propose(Command::ExpireSession { session }).await;
                (session, result)
            });
        }
        let mut all_served = true;
        while let Some(Ok((session, result))) = proposals.join_next().await {
            match result {
                Ok(Ok(outcome)) => {
                    tracing::info!(%session, ?outcome, "session expired: no keepalive within its TTL");
                    self.clock.lock().deadlines.remove(session);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%session, %e, "session already gone");
                    self.clock.lock().deadlines.remove(session);
                }
                Err(e) => {
                    all_served = false;
                    log_not_served(e);
                }
            }
        }
        all_served
    }

    async fn end_lock_delays(&self) {
        let delay_end = self.table.read(|t| t.next_delay_end_ms());
        if delay_end.is_some_and(|at| at <= now_ms()) {
            if let Err(e) = self.batcher.propose(Command::Tick).await {
                log_not_served(e);
            }
        }
    }
}

/// Forgets the sessions whose end was applied since the last call. True if
/// some events were lost (the receiver lagged): the caller then reads the
/// table whole.
fn forget_ended(events: &mut broadcast::Receiver<Event>, clock: &SessionClock) -> bool {
    let mut lagged = false;
    loop {
        match events.try_recv() {
            Ok(Event::SessionEnded { session, .. }) => clock.lock().deadlines.remove(session),
            Ok(_) => {}
            Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
            Err(_) => return lagged,
        }
    }
}

/// This node's term, if it is the leader.
fn leading_term(raft: &Raft, id: NodeId) -> Option<u64> {
    let m = raft.metrics();
    let m = m.borrow();
    (m.state == ServerState::Leader && m.current_leader == Some(id)).then_some(m.current_term)
}

pub(crate) fn log_not_served(e: NotServed) {
    tracing::debug!(?e, "leader duty not proposed (leadership moved?)");
}
