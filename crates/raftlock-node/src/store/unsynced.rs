//! The leader's own entries that openraft was told are on disk before
//! their fsync finished, and the two gates that keep them invisible until
//! it does.
//!
//! openraft 0.9 waits for the leader's log flush before it replicates an
//! entry, so every write paid two fsyncs in a row: the leader's, then the
//! followers'. The log store acknowledges a leader's own entries at once
//! instead and syncs them alongside the followers. openraft then counts the
//! leader in a quorum a little early, so nothing may act on "committed"
//! until the leader's copy is really durable too:
//! - the state machine applies (and so answers clients) only entries whose
//!   leader copy is synced ([`Unsynced::wait_synced_through`]);
//! - followers are told a commit index only once it is synced here
//!   ([`CommitGate`]), so no follower applies what could still be lost.
//!
//! Anything visible is thus on a real majority of disks. See docs/safety.md.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::fail_stop;
use crate::types::LogId;

/// Indexes acknowledged early, each with the sequence number of its
/// append; a sync that started after an append covers it.
#[derive(Default)]
struct Pending {
    by_index: BTreeMap<u64, u64>,
    next_seq: u64,
}

#[derive(Default)]
pub struct Unsynced {
    pending: Mutex<Pending>,
    /// Marked changed whenever entries leave `pending`.
    synced: watch::Sender<()>,
}

impl Unsynced {
    /// Notes entries written (not yet synced) and acknowledged; returns the
    /// sequence number to hand to [`Unsynced::synced`] once a sync that
    /// started after this call has finished.
    pub fn acknowledged(&self, indexes: impl IntoIterator<Item = u64>) -> u64 {
        let mut pending = fail_stop::lock(&self.pending);
        pending.next_seq += 1;
        let seq = pending.next_seq;
        for index in indexes {
            pending.by_index.insert(index, seq);
        }
        seq
    }

    /// Everything acknowledged up to `seq` is durable now.
    pub fn synced(&self, seq: u64) {
        let mut pending = fail_stop::lock(&self.pending);
        let before = pending.by_index.len();
        pending.by_index.retain(|_, s| *s > seq);
        if pending.by_index.len() != before {
            drop(pending);
            self.synced.send_replace(());
        }
    }

    /// True if no early-acknowledged entry at or below `index` awaits its sync.
    pub fn synced_through(&self, index: u64) -> bool {
        let pending = fail_stop::lock(&self.pending);
        pending.by_index.range(..=index).next().is_none()
    }

    /// Waits until [`Unsynced::synced_through`] `index`.
    pub async fn wait_synced_through(&self, index: u64) {
        let mut changes = self.synced.subscribe();
        while !self.synced_through(index) {
            // The sender lives in `self`, so this only fails if it is gone.
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Lowers the commit index a leader sends to followers to the highest one
/// already durable on the leader. AppliedTable by all of the leader's connections.
#[derive(Clone)]
pub struct CommitGate {
    unsynced: Arc<Unsynced>,
    last_visible: Arc<Mutex<Option<LogId>>>,
}

impl CommitGate {
    pub fn new(unsynced: Arc<Unsynced>) -> Self {
        CommitGate {
            unsynced,
            last_visible: Arc::default(),
        }
    }

    /// `committed` if the leader's copy is synced through it, else the
    /// highest commit index passed earlier that was (followers ignore a
    /// commit index lower than theirs; they learn this one on the next
    /// message).
    pub fn visible(&self, committed: Option<LogId>) -> Option<LogId> {
        let mut last = fail_stop::lock(&self.last_visible);
        match committed {
            Some(c) if self.unsynced.synced_through(c.index) => {
                *last = (*last).max(Some(c));
                committed
            }
            None => None,
            Some(_) => *last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id(index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(1, 1), index))
    }

    #[test]
    fn entries_stay_unsynced_until_a_later_sync_reports() {
        let unsynced = Unsynced::default();
        assert!(unsynced.synced_through(10));
        let first = unsynced.acknowledged([5]);
        let second = unsynced.acknowledged([6, 7]);
        assert!(unsynced.synced_through(4));
        assert!(!unsynced.synced_through(5));
        unsynced.synced(first);
        assert!(unsynced.synced_through(5));
        assert!(!unsynced.synced_through(6));
        unsynced.synced(second);
        assert!(unsynced.synced_through(100));
    }

    #[test]
    fn rewriting_an_index_needs_the_newer_sync() {
        let unsynced = Unsynced::default();
        let old = unsynced.acknowledged([5]);
        let new = unsynced.acknowledged([5]);
        unsynced.synced(old);
        assert!(!unsynced.synced_through(5));
        unsynced.synced(new);
        assert!(unsynced.synced_through(5));
    }

    #[tokio::test]
    async fn waiting_ends_when_the_sync_lands() {
        let unsynced = Arc::new(Unsynced::default());
        let seq = unsynced.acknowledged([3]);
        let waiter = tokio::spawn({
            let unsynced = unsynced.clone();
            async move { unsynced.wait_synced_through(3).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        unsynced.synced(seq);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
    }

    #[test]
    fn commit_gate_holds_back_unsynced_commit_indexes() {
        let unsynced = Arc::new(Unsynced::default());
        let gate = CommitGate::new(unsynced.clone());
        assert_eq!(gate.visible(log_id(4)), log_id(4));
        let seq = unsynced.acknowledged([5, 6]);
        assert_eq!(gate.visible(log_id(6)), log_id(4));
        unsynced.synced(seq);
        assert_eq!(gate.visible(log_id(6)), log_id(6));
        assert_eq!(gate.visible(None), None);
    }
}
