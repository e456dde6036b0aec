//! Watches: the change events of applied entries, kept for a while so a
//! watcher can resume, and streamed to every `Watch` call.
//!
//! Every replica applies the same log, so every replica produces the same
//! events at the same indexes: any node can serve a watch, and a watcher
//! can resume on another node from the last index it saw.
//!
//! The state machine records each applied entry here while it holds the
//! table's write lock; a watch starts while holding its read lock. So the
//! state (or the replayed history) a watch starts from and the live events
//! it then receives meet exactly: nothing missed, nothing twice.
//!
//! Memory stays bounded whatever watchers do: the history is capped in
//! events, each watcher's backlog in entries and its stream in messages,
//! and the number of watchers a node serves at once in [`WatchSlots`]
//! (`--max-watchers`; past it, RESOURCE_EXHAUSTED, kind `overloaded`). Per
//! connection, watchers are also bounded by the HTTP/2 stream limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use raftlock_core::{LeaveReason, LockEvent, LockMode, LockTable};
use raftlock_proto::v1::{
    ChangeKind, LeaveReason as WireReason, LockChange, WatchKind, WatchResponse,
};
use raftlock_proto::ErrorKind;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};

use crate::applied_table::AppliedTable;
use crate::fail_stop;

/// How many events the history keeps. A watcher that reconnects within
/// this many changes (about a second of a busy cluster, minutes of a quiet
/// one) resumes without a resync; the cost is bounded memory, some
/// 100 bytes an event plus its name (5 MB with short names, at most about
/// 30 MB with the longest). Counted in events, not entries: one batched
/// entry can carry thousands.
pub const HISTORY_EVENTS: usize = 50_000;
/// Entries buffered for each live watcher. One that falls further behind
/// (a slow reader) resumes from the history, or resyncs: memory stays
/// bounded whatever watchers do.
const LIVE_BACKLOG: usize = 1024;
/// Changes per STATE message, so a big table never makes one huge message.
const STATE_CHUNK: usize = 1000;
/// Messages queued for one watch's gRPC stream before it waits.
const STREAM_BUFFER: usize = 16;
/// How long a watch asking to resume after an index this node has not
/// applied yet (it was served by a node further ahead) waits for it.
const AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a live watcher receives.
#[derive(Clone, Debug)]
pub enum Live {
    /// The changes the entry at this index made (never empty).
    Entry(u64, Arc<[LockEvent]>),
    /// The table was replaced by a snapshot from the leader: the history
    /// before it is gone and every watcher restarts from the new state.
    Restarted,
}

/// The events of recently applied entries: complete for the indexes in
/// `(floor, applied]`.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<(u64, Arc<[LockEvent]>)>,
    events: usize,
    floor: u64,
    applied: u64,
    limit: usize,
}

/// Where a watch that has seen everything up to an index goes on from.
#[derive(Debug, PartialEq)]
pub enum Resume {
    /// The entries after it, all retained (possibly none).
    Replay(Vec<(u64, Arc<[LockEvent]>)>),
    /// It is older than the history: start again from the present state.
    Compacted,
    /// This node has not applied it yet; it has applied this much.
    Ahead(u64),
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit,
            ..Default::default()
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Records the entry at `index`; returns its events if it had any.
    pub fn record(&mut self, index: u64, events: Vec<LockEvent>) -> Option<Arc<[LockEvent]>> {
        self.applied = self.applied.max(index);
        if events.is_empty() {
            return None;
        }
        let events: Arc<[LockEvent]> = events.into();
        self.events += events.len();
        self.entries.push_back((index, events.clone()));
        while self.events > self.limit {
            let Some((index, dropped)) = self.entries.pop_front() else {
                break;
            };
            self.events -= dropped.len();
            self.floor = index;
        }
        Some(events)
    }

    /// Forgets everything before `index`, where a restored snapshot starts.
    pub fn restart_at(&mut self, index: u64) {
        self.entries.clear();
        self.events = 0;
        self.floor = index;
        self.applied = index;
    }

    /// What follows index `seen`.
    pub fn after(&self, seen: u64) -> Resume {
        if seen > self.applied {
            return Resume::Ahead(self.applied);
        }
        if seen < self.floor {
            return Resume::Compacted;
        }
        let start = self.entries.partition_point(|(index, _)| *index <= seen);
        Resume::Replay(self.entries.range(start..).cloned().collect())
    }
}

/// The history and the live feed, shared by the state machine and the
/// watch calls (through [`AppliedTable`]).
pub struct WatchHub {
    history: Mutex<History>,
    live: broadcast::Sender<Live>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new(HISTORY_EVENTS)
    }
}

impl WatchHub {
    pub fn new(history_events: usize) -> Self {
        WatchHub {
            history: Mutex::new(History::new(history_events)),
            live: broadcast::channel(LIVE_BACKLOG).0,
        }
    }

    /// Called by the state machine for every applied entry, holding the
    /// table's write lock. Costs one allocation for an entry with events
    /// (the history keeps them for resuming watchers) and none otherwise.
    pub fn record(&self, index: u64, events: Vec<LockEvent>) {
        let recorded = fail_stop::lock(&self.history).record(index, events);
        if let Some(events) = recorded {
            if self.live.receiver_count() > 0 {
                let _ = self.live.send(Live::Entry(index, events));
            }
        }
    }

    /// Called, holding the table's write lock, when a snapshot replaced it.
    pub fn restart_at(&self, index: u64) {
        fail_stop::lock(&self.history).restart_at(index);
        let _ = self.live.send(Live::Restarted);
    }

    /// Subscribes, and says where a watch that saw `seen` (`None`: nothing)
    /// goes on from, or `Err` with the index this node has applied if it
    /// has not applied `seen` yet. A fresh state is marked `resync` when
    /// the watcher had one before. Call holding the table's read lock.
    fn start(
        &self,
        table: &LockTable,
        prefix: &str,
        seen: Option<u64>,
        had_state: bool,
    ) -> Result<Start, u64> {
        let history = fail_stop::lock(&self.history);
        let resume = seen.map(|seen| (seen, history.after(seen)));
        let live = self.live.subscribe();
        Ok(match resume {
            Some((_, Resume::Ahead(applied))) => return Err(applied),
            Some((seen, Resume::Replay(entries))) => Start::Replay {
                seen,
                entries,
                live,
            },
            Some((_, Resume::Compacted)) | None => Start::Snapshot {
                index: history.applied(),
                state: table.state_events(prefix),
                resync: had_state || seen.is_some(),
                live,
            },
        })
    }
}

enum Start {
    Snapshot {
        index: u64,
        state: Vec<LockEvent>,
        resync: bool,
        live: broadcast::Receiver<Live>,
    },
    Replay {
        seen: u64,
        entries: Vec<(u64, Arc<[LockEvent]>)>,
        live: broadcast::Receiver<Live>,
    },
}

pub type WatchStream = mpsc::Receiver<Result<WatchResponse, Status>>;

/// The watch streams a node serves at once: each holds a slot until it ends.
#[derive(Clone)]
pub struct WatchSlots {
    slots: Arc<Semaphore>,
    limit: usize,
}

/// A watch's place among the node's watchers, freed when its stream ends.
pub struct WatchSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl WatchSlots {
    pub fn new(limit: usize) -> Self {
        WatchSlots {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot, or RESOURCE_EXHAUSTED (kind `overloaded`) if all are taken.
    pub fn take(&self) -> Result<WatchSlot, Status> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(WatchSlot(permit)),
            Err(_) => {
                metrics::counter!("raftlock_overloaded_total", "queue" => "watchers").increment(1);
                Err(ErrorKind::Overloaded.status(
                    Code::ResourceExhausted,
                    format!(
                        "node overloaded: {} watchers already served (the limit, \
                         --max-watchers); retry after a backoff or watch on another node",
                        self.limit
                    ),
                ))
            }
        }
    }
}

/// Starts serving one watch; its messages arrive on the returned channel
/// until the watcher goes away or the node stops.
pub async fn serve(
    slot: WatchSlot,
    table: AppliedTable,
    prefix: String,
    from_index: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<WatchStream, Status> {
    let seen = (from_index > 0).then_some(from_index);
    let first = wait_until_applied(&table, &prefix, seen, &mut stop).await?;
    let (out, stream) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        // Held until this task ends: when the watcher goes or the node stops.
        let _slot = slot;
        // The watcher going away is noticed at once, not at the next event
        // sent (a quiet prefix may have none for hours): its slot frees.
        let gone = out.clone();
        let watcher = Watcher { out, prefix };
        tokio::select! {
            _ = watcher.run(table, first) => {}
            _ = gone.closed() => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    });
    Ok(stream)
}

/// The start of a watch, once this node has applied what the watcher saw.
async fn wait_until_applied(
    table: &AppliedTable,
    prefix: &str,
    seen: Option<u64>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Start, Status> {
    let give_up = tokio::time::Instant::now() + AHEAD_WAIT;
    loop {
        match table.read(|t| table.watch_hub().start(t, prefix, seen, false)) {
            Ok(start) => return Ok(start),
            Err(applied) if tokio::time::Instant::now() >= give_up => {
                return Err(Status::unavailable(format!(
                    "this node has applied the log up to index {applied}, not yet index {}: \
                     resume on another node",
                    seen.unwrap_or(0)
                )))
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            _ = stop.changed() => return Err(Status::unavailable("node shutting down")),
        }
    }
}

struct Watcher {
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    prefix: String,
}

/// The watcher went away.
struct Gone;

impl Watcher {
    async fn run(&self, table: AppliedTable, mut start: Start) -> Result<(), Gone> {
        loop {
            let (mut seen, mut live) = match start {
                Start::Snapshot {
                    index,
                    state,
                    resync,
                    live,
                } => {
                    self.send_state(index, state, resync).await?;
                    (index, live)
                }
                Start::Replay {
                    mut seen,
                    entries,
                    live,
                } => {
                    for (index, events) in entries {
                        self.send_changes(index, &events).await?;
                        seen = index;
                    }
                    (seen, live)
                }
            };
            let restart = loop {
                match live.recv().await {
                    Ok(Live::Entry(index, events)) if index > seen => {
                        self.send_changes(index, &events).await?;
                        seen = index;
                    }
                    Ok(Live::Entry(..)) => {}
                    // Too slow: carry on from the history, or resync.
                    Err(RecvError::Lagged(_)) => break Some(seen),
                    Ok(Live::Restarted) => break None,
                    Err(RecvError::Closed) => return Ok(()),
                }
            };
            let hub = table.watch_hub();
            start = match table.read(|t| hub.start(t, &self.prefix, restart, true)) {
                Ok(start) => start,
                // Cannot happen (what this node sent, it applied), but a
                // fresh state is always a correct answer.
                Err(_) => table
                    .read(|t| hub.start(t, &self.prefix, None, true))
                    .map_err(|_| Gone)?,
            };
        }
    }

    async fn send(&self, message: WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(message)).await.map_err(|_| Gone)
    }

    async fn send_state(
        &self,
        index: u64,
        state: Vec<LockEvent>,
        resync: bool,
    ) -> Result<(), Gone> {
        let message = |kind: WatchKind, changes| WatchResponse {
            kind: kind.into(),
            index,
            changes,
            resync,
        };
        self.send(message(WatchKind::Reset, Vec::new())).await?;
        for chunk in state.chunks(STATE_CHUNK) {
            let changes = chunk.iter().map(lock_change).collect();
            self.send(message(WatchKind::State, changes)).await?;
        }
        self.send(message(WatchKind::Synced, Vec::new())).await
    }

    async fn send_changes(&self, index: u64, events: &[LockEvent]) -> Result<(), Gone> {
        let changes: Vec<LockChange> = events
            .iter()
            .filter(|e| e.name().starts_with(&self.prefix))
            .map(lock_change)
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.send(WatchResponse {
            kind: WatchKind::Changes.into(),
            index,
            changes,
            resync: false,
        })
        .await
    }
}

/// An event on the wire.
pub fn lock_change(event: &LockEvent) -> LockChange {
    let mut change = LockChange {
        name: event.name().to_owned(),
        session_id: event.session().to_string(),
        ..Default::default()
    };
    let mut set_mode = |mode: LockMode| {
        change.mode = crate::api::wire_mode(mode);
        if let LockMode::Semaphore { limit } = mode {
            change.limit = limit;
        }
    };
    let kind = match event {
        LockEvent::Queued { mode, .. } => {
            set_mode(*mode);
            ChangeKind::Queued
        }
        LockEvent::Granted { mode, token, .. } => {
            set_mode(*mode);
            change.fencing_token = *token;
            ChangeKind::Granted
        }
        LockEvent::Released { token, .. } => {
            change.fencing_token = *token;
            ChangeKind::Released
        }
        LockEvent::Expired {
            token,
            available_at_ms,
            ..
        } => {
            change.fencing_token = *token;
            change.available_at_ms = *available_at_ms;
            ChangeKind::Expired
        }
        LockEvent::LeftQueue { reason, .. } => {
            change.reason = match reason {
                LeaveReason::Cancelled => WireReason::Cancelled,
                LeaveReason::SessionClosed => WireReason::SessionClosed,
                LeaveReason::SessionExpired => WireReason::SessionExpired,
            }
            .into();
            ChangeKind::LeftQueue
        }
    };
    change.kind = kind.into();
    change
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlock_core::SessionId;

    fn granted(name: &str, token: u64) -> LockEvent {
        LockEvent::Granted {
            name: name.into(),
            session: SessionId(1),
            mode: LockMode::Exclusive,
            token,
        }
    }

    fn indexes(resume: Resume) -> Vec<u64> {
        match resume {
            Resume::Replay(entries) => entries.iter().map(|(i, _)| *i).collect(),
            other => panic!("not a replay: {other:?}"),
        }
    }

    #[test]
    fn resumes_after_the_index_seen_without_gaps_or_repeats() {
        let mut history = History::new(100);
        for index in 1..=10 {
            // Entries without events (blank, membership, sessions) leave
            // no trace but still count as applied.
            let events = if index % 2 == 0 {
                vec![granted("a", index)]
            } else {
                vec![]
            };
            history.record(index, events);
        }
        assert_eq!(indexes(history.after(0)), vec![2, 4, 6, 8, 10]);
        assert_eq!(indexes(history.after(4)), vec![6, 8, 10]);
        assert_eq!(indexes(history.after(5)), vec![6, 8, 10]);
        assert_eq!(indexes(history.after(10)), Vec::<u64>::new());
        assert_eq!(history.after(11), Resume::Ahead(10));
    }

    #[test]
    fn the_history_is_bounded_in_events_and_says_when_it_was_cut() {
        let mut history = History::new(5);
        for index in 1..=4 {
            history.record(index, vec![granted("a", index), granted("b", index)]);
        }
        // 8 events recorded, 5 kept: whole entries go, oldest first.
        assert_eq!(indexes(history.after(2)), vec![3, 4]);
        assert_eq!(history.after(1), Resume::Compacted);
        assert_eq!(history.after(0), Resume::Compacted);
        assert!(history.events <= 5);
    }

    #[test]
    fn a_restored_snapshot_cuts_the_history() {
        let mut history = History::new(100);
        history.record(3, vec![granted("a", 3)]);
        history.restart_at(50);
        assert_eq!(history.after(3), Resume::Compacted);
        assert_eq!(indexes(history.after(50)), Vec::<u64>::new());
        history.record(51, vec![granted("a", 51)]);
        assert_eq!(indexes(history.after(50)), vec![51]);
    }

    #[test]
    fn a_watch_starts_from_a_snapshot_or_the_history_consistently() {
        let hub = WatchHub::new(100);
        let table = LockTable::new();
        hub.record(1, vec![granted("jobs/a", 1)]);
        match hub.start(&table, "jobs/", None, false) {
            Ok(Start::Snapshot { index, resync, .. }) => assert_eq!((index, resync), (1, false)),
            _ => panic!("a new watch starts from the state"),
        }
        let Ok(Start::Replay {
            seen: 0,
            entries,
            mut live,
        }) = hub.start(&table, "jobs/", Some(0), false)
        else {
            panic!("index 0 is retained")
        };
        assert_eq!(entries.len(), 1);
        hub.record(2, vec![granted("jobs/b", 2)]);
        match live.try_recv() {
            Ok(Live::Entry(2, events)) => assert_eq!(events.len(), 1),
            other => panic!("live entry expected, got {other:?}"),
        }
        hub.restart_at(10);
        assert!(matches!(live.try_recv(), Ok(Live::Restarted)));
        assert!(matches!(
            hub.start(&table, "jobs/", Some(2), false),
            Ok(Start::Snapshot { resync: true, .. })
        ));
        assert!(matches!(
            hub.start(&table, "jobs/", Some(11), false),
            Err(10)
        ));
    }

    /// Reads a stream until it is quiet: (kind, index, resync) of each message.
    async fn drain(stream: &mut WatchStream) -> Vec<(WatchKind, u64, bool)> {
        let mut seen = Vec::new();
        let quiet = std::time::Duration::from_millis(200);
        while let Ok(Some(message)) = tokio::time::timeout(quiet, stream.recv()).await {
            let message = message.unwrap();
            seen.push((message.kind(), message.index, message.resync));
        }
        seen
    }

    #[tokio::test]
    async fn a_slow_watcher_resumes_from_the_history_or_else_resyncs() {
        // On this single-threaded runtime the watch task cannot run while
        // entries are recorded: it falls behind by all of them.
        let entries = (LIVE_BACKLOG * 3) as u64;
        for (history, resyncs) in [(HISTORY_EVENTS, false), (100, true)] {
            let table = AppliedTable::with_watch_history(history);
            let (_stopper, stop) = tokio::sync::watch::channel(false);
            let slot = WatchSlots::new(1).take().unwrap();
            let mut stream = serve(slot, table.clone(), String::new(), 0, stop)
                .await
                .unwrap();
            for index in 1..=entries {
                let hub = table.watch_hub();
                table.update(|_| hub.record(index, vec![granted("a", index)]));
            }
            let seen = drain(&mut stream).await;
            assert_eq!(
                seen[..2],
                [(WatchKind::Reset, 0, false), (WatchKind::Synced, 0, false)]
            );
            let rest = &seen[2..];
            if resyncs {
                // The table itself is empty here: no STATE messages.
                assert_eq!(
                    rest,
                    [
                        (WatchKind::Reset, entries, true),
                        (WatchKind::Synced, entries, true),
                    ]
                );
            } else {
                // Every entry once, in order, from the history.
                let expected: Vec<_> = (1..=entries)
                    .map(|index| (WatchKind::Changes, index, false))
                    .collect();
                assert_eq!(rest, expected);
            }
            // And live again afterwards.
            let hub = table.watch_hub();
            table.update(|_| hub.record(entries + 1, vec![granted("a", entries + 1)]));
            assert_eq!(
                drain(&mut stream).await,
                [(WatchKind::Changes, entries + 1, false)]
            );
        }
    }

    #[test]
    fn events_go_on_the_wire_with_their_details() {
        let change = lock_change(&LockEvent::Expired {
            name: "x".into(),
            session: SessionId(7),
            token: 9,
            available_at_ms: 1234,
        });
        assert_eq!(change.kind(), ChangeKind::Expired);
        assert_eq!((change.fencing_token, change.available_at_ms), (9, 1234));
        let change = lock_change(&LockEvent::Queued {
            name: "x".into(),
            session: SessionId(7),
            mode: LockMode::Semaphore { limit: 3 },
        });
        assert_eq!(change.limit, 3);
        assert_eq!(change.session_id, SessionId(7).to_string());
    }
}
