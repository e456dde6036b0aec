//! The protected resource: a fenced register per lock name. It refuses a
//! writer's read or write carrying a token lower than the highest it has
//! seen, and a reader's read carrying a token lower than the highest a
//! writer used, as a storage service that checks fencing tokens would.
//! Readers raise no bar: readers granted apart hold different tokens
//! together, and the older one is no less entitled to read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::history::{Access, History, RegisterEvent};

#[derive(Default)]
struct Cell {
    highest_token: u64,
    /// The highest token a writer (exclusive holder) used: the readers' bar.
    highest_writer_token: u64,
    value: u64,
}

pub struct FencedRegister {
    cells: Mutex<HashMap<String, Cell>>,
    history: Arc<History>,
}

/// The register refused an operation: a newer token was seen first.
#[derive(Debug, PartialEq, Eq)]
pub struct Stale {
    pub highest_token: u64,
}

impl FencedRegister {
    pub fn new(history: Arc<History>) -> Self {
        FencedRegister {
            cells: Mutex::new(HashMap::new()),
            history,
        }
    }

    /// A writer's read, under an exclusive lock.
    pub fn read(&self, client: u64, lock: &str, token: u64) -> Result<u64, Stale> {
        self.apply(client, lock, token, Access::Exclusive, None)
    }

    /// A reader's read under a shared lock, at the start or the end of its
    /// hold (`access`).
    pub fn read_shared(
        &self,
        client: u64,
        lock: &str,
        token: u64,
        access: Access,
    ) -> Result<u64, Stale> {
        self.apply(client, lock, token, access, None)
    }

    pub fn write(&self, client: u64, lock: &str, token: u64, value: u64) -> Result<u64, Stale> {
        self.apply(client, lock, token, Access::Exclusive, Some(value))
    }

    /// The current value of every cell, for the end-of-run check.
    pub fn values(&self) -> HashMap<String, u64> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.iter().map(|(k, c)| (k.clone(), c.value)).collect()
    }

    fn apply(
        &self,
        client: u64,
        lock: &str,
        token: u64,
        access: Access,
        write: Option<u64>,
    ) -> Result<u64, Stale> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let cell = cells.entry(lock.to_string()).or_default();
        let writer = access == Access::Exclusive;
        let bar = if writer {
            cell.highest_token
        } else {
            cell.highest_writer_token
        };
        let accepted = token >= bar;
        if accepted {
            cell.highest_token = cell.highest_token.max(token);
            if writer {
                cell.highest_writer_token = token;
            }
            if let Some(v) = write {
                cell.value = v;
            }
        }
        // Recorded under the cell lock, so the log is in decision order.
        self.history
            .register
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RegisterEvent {
                client,
                lock: lock.to_string(),
                at: self.history.now(),
                token,
                access,
                write,
                accepted,
                seen: (accepted && write.is_none()).then_some(cell.value),
            });
        if accepted {
            Ok(cell.value)
        } else {
            Err(Stale { highest_token: bar })
        }
    }
}
