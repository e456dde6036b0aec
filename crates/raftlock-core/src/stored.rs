//! The lock table's serialized layout (snapshot format 5): its data and
//! its limits, without the derived counters and indexes, which are
//! rebuilt on load ([`Usage::recount`]) and so always agree with the data.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, Serializer};

use crate::queue::Lock;
use crate::sessions::Session;
use crate::table::LockTable;
use crate::usage::Usage;
use crate::{Limits, SessionId};

/// What a snapshot holds of a [`LockTable`], field for field in this order.
#[derive(Debug, Deserialize)]
pub(crate) struct StoredTable {
    pub(crate) now_ms: u64,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    pub(crate) locks: BTreeMap<String, Lock>,
    pub(crate) delayed: BTreeSet<(u64, String)>,
    pub(crate) limits: Limits,
}

/// [`StoredTable`] borrowed, so writing a snapshot copies nothing.
#[derive(Serialize)]
struct StoredTableRef<'a> {
    now_ms: u64,
    sessions: &'a BTreeMap<SessionId, Session>,
    locks: &'a BTreeMap<String, Lock>,
    delayed: &'a BTreeSet<(u64, String)>,
    limits: &'a Limits,
}

impl Serialize for LockTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredTableRef {
            now_ms: self.now_ms,
            sessions: &self.sessions,
            locks: &self.locks,
            delayed: &self.delayed,
            limits: &self.limits,
        }
        .serialize(serializer)
    }
}

impl From<StoredTable> for LockTable {
    fn from(stored: StoredTable) -> Self {
        let usage = Usage::recount(stored.sessions.iter(), stored.locks.values());
        LockTable {
            now_ms: stored.now_ms,
            sessions: stored.sessions,
            locks: stored.locks,
            delayed: stored.delayed,
            limits: stored.limits,
            usage,
        }
    }
}
