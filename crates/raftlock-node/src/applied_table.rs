//! The applied lock table, shared between the state machine (which writes
//! it on apply) and the API and leader tasks (which read it), and the
//! stream of events that applying entries produces (and, for watchers, the
//! finer change events with their history: see [`crate::watch`]).

use std::sync::{Arc, RwLock};

use raftlock_core::{Event, LockTable};
use tokio::sync::broadcast;

use crate::fail_stop;
use crate::watch::WatchHub;

/// Room for bursts of grants before a slow waiter falls behind; a waiter
/// that lags re-reads the table instead.
const EVENT_BACKLOG: usize = 4096;

/// The lock table as of the last applied entry, and its events; cheap to
/// clone (every clone is the same table).
#[derive(Clone)]
pub struct AppliedTable {
    table: Arc<RwLock<LockTable>>,
    events: broadcast::Sender<Event>,
    watch: Arc<WatchHub>,
}

impl Default for AppliedTable {
    fn default() -> Self {
        Self::new()
    }
}

impl AppliedTable {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        AppliedTable {
            table: Arc::new(RwLock::new(LockTable::new())),
            events,
            watch: Arc::new(WatchHub::default()),
        }
    }

    /// Reads the table. A closure rather than a guard, so no caller can
    /// hold the lock across an `.await`.
    pub fn read<T>(&self, f: impl FnOnce(&LockTable) -> T) -> T {
        let table = fail_stop::read(&self.table);
        f(&table)
    }

    /// Changes the table: only the state machine does, when it applies
    /// entries or restores a snapshot.
    pub fn update<T>(&self, f: impl FnOnce(&mut LockTable) -> T) -> T {
        let mut table = fail_stop::write(&self.table);
        f(&mut table)
    }

    /// A table whose watch history keeps `events` events, for tests.
    #[cfg(test)]
    pub fn with_watch_history(events: usize) -> Self {
        AppliedTable {
            watch: Arc::new(WatchHub::new(events)),
            ..Self::new()
        }
    }

    /// The change events for watchers. Recorded only inside [`Self::update`],
    /// so a reader of the table sees the history up to the same entry.
    pub fn watch_hub(&self) -> &WatchHub {
        &self.watch
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn publish(&self, events: Vec<Event>) {
        for event in events {
            // No subscribers is normal: nobody is waiting.
            let _ = self.events.send(event);
        }
    }
}
