//! The protected resource: a fenced register per lock name. It refuses any
//! read or write carrying a token lower than the highest it has seen, as a
//! storage service that checks fencing tokens would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::history::{History, RegisterEvent};

#[derive(Default)]
struct Cell {
    highest_token: u64,
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

    pub fn read(&self, client: u64, lock: &str, token: u64) -> Result<u64, Stale> {
        self.apply(client, lock, token, None)
    }

    pub fn write(&self, client: u64, lock: &str, token: u64, value: u64) -> Result<u64, Stale> {
        self.apply(client, lock, token, Some(value))
    }

    /// The current value of every cell, for the end-of-run check.
    pub fn values(&self) -> HashMap<String, u64> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.iter().map(|(k, c)| (k.clone(), c.value)).collect()
    }

    fn apply(&self, client: u64, lock: &str, token: u64, write: Option<u64>) -> Result<u64, Stale> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let cell = cells.entry(lock.to_string()).or_default();
        let accepted = token >= cell.highest_token;
        if accepted {
            cell.highest_token = token;
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
                write,
                accepted,
            });
        if accepted {
            Ok(cell.value)
        } else {
            Err(Stale {
                highest_token: cell.highest_token,
            })
        }
    }
}
