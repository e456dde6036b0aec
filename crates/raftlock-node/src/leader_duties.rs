//! Leader-only duties: keeping session deadlines and proposing what time
//! alone decides (a session's expiry, the end of a lock-delay).
//!
//! Keepalives are not log writes: the leader keeps each session's deadline
//! in memory. A new leader knows nothing of past keepalives, so it starts
//! every session's deadline at now + TTL: that may extend a session, never
//! shorten it, so no client loses a lock because leadership moved.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::ServerState;
use raftlock_core::{Command, SessionId};
use tokio::sync::watch;

use crate::applied_table::AppliedTable;
use crate::batcher::now_ms;
use crate::batcher::Batcher;
use crate::fail_stop;
use crate::raft_calls::NotServed;
use crate::types::{NodeId, Raft};

/// How often the leader looks for expired sessions and ended lock-delays.
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
    deadlines: HashMap<SessionId, Instant>,
}

/// A keepalive that came too late: the leader is expiring the session.
#[derive(Debug)]
pub struct TooLate;

impl SessionClock {
    /// Extends a session to now + TTL, unless its deadline already passed:
    /// then its expiry may be in flight, and confirming it would let the
    /// client believe in a lock that is about to go to someone else.
    pub fn keep_alive(&self, session: SessionId, ttl: Duration) -> Result<(), TooLate> {
        let now = Instant::now();
        let mut state = self.lock();
        match state.deadlines.get(&session) {
            Some(deadline) if *deadline <= now => Err(TooLate),
            _ => {
                state.deadlines.insert(session, now + ttl);
                Ok(())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        fail_stop::lock(&self.state)
    }

    /// Forgets every deadline unless they were kept in `term`: a node that
    /// leads again after someone else did knows nothing of the keepalives
    /// sent to the other leader, so it starts everyone afresh.
    fn enter_term(&self, term: u64) {
        let mut state = self.lock();
        if state.term != term {
            state.term = term;
            state.deadlines.clear();
        }
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.term = 0;
        state.deadlines.clear();
    }

    /// Starts a clock for sessions new to this leader, forgets ended ones,
    /// and returns those whose deadline has passed.
    fn expired(&self, sessions: &[(SessionId, u64)], now: Instant) -> Vec<SessionId> {
        let mut state = self.lock();
        let deadlines = &mut state.deadlines;
        if deadlines.len() > sessions.len() {
            let live: std::collections::HashSet<_> = sessions.iter().map(|(s, _)| *s).collect();
            deadlines.retain(|s, _| live.contains(s));
        }
        sessions
            .iter()
            .filter(|(session, ttl_ms)| {
                let deadline = *deadlines
                    .entry(*session)
                    .or_insert_with(|| now + Duration::from_millis(*ttl_ms));
                deadline <= now
            })
            .map(|(session, _)| *session)
            .collect()
    }
}

/// Runs until `stop` changes: while this node leads, expires sessions and
/// ends lock-delays; otherwise keeps no deadlines.
pub async fn run(
    raft: Raft,
    batcher: Batcher,
    table: AppliedTable,
    clock: std::sync::Arc<SessionClock>,
    id: NodeId,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(CHECK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(term) = leading_term(&raft, id) else {
            clock.clear();
            continue;
        };
        clock.enter_term(term);
        let sessions: Vec<(SessionId, u64)> = table.read(|t| t.session_ttls().collect());
        let expired = clock.expired(&sessions, Instant::now());
        // A proposal can wait through a step-down and re-election: deadlines
        // from before that are not ours to act on. Proposed all at once, so
        // a mass expiry (a host with many sessions died) shares log entries.
        if !expired.is_empty() && leading_term(&raft, id) == Some(term) {
            let mut proposals = tokio::task::JoinSet::new();
            for session in expired {
                let batcher = batcher.clone();
                proposals.spawn(async move {
                    let result = batcher.propose(Command::ExpireSession { session }).await;
                    (session, result)
                });
            }
            while let Some(Ok((session, result))) = proposals.join_next().await {
                match result {
                    Ok(Ok(outcome)) => {
                        tracing::info!(%session, ?outcome, "session expired: no keepalive within its TTL")
                    }
                    Ok(Err(e)) => tracing::debug!(%session, %e, "session already gone"),
                    Err(e) => log_not_served(e),
                }
            }
        }
        let delay_end = table.read(|t| t.next_delay_end_ms());
        if delay_end.is_some_and(|at| at <= now_ms()) {
            if let Err(e) = batcher.propose(Command::Tick).await {
                log_not_served(e);
            }
        }
    }
}

/// This node's term, if it is the leader.
fn leading_term(raft: &Raft, id: NodeId) -> Option<u64> {
    let m = raft.metrics();
    let m = m.borrow();
    (m.state == ServerState::Leader && m.current_leader == Some(id)).then_some(m.current_term)
}

fn log_not_served(e: NotServed) {
    tracing::debug!(?e, "leader duty not proposed (leadership moved?)");
}
