//! The early acknowledgement, in one place: which of the leader's entries
//! openraft is told are on disk before their fsync finished, and the two
//! gates that keep those entries invisible until it does.
//!
//! openraft 0.9 waits for the leader's log flush before it replicates an
//! entry, so every write paid two fsyncs in a row: the leader's, then the
//! followers'. The log store acknowledges a leader's own command entries at
//! once instead and syncs them alongside the followers. openraft then
//! counts the leader in a quorum a little early, so nothing may act on
//! "committed" until the leader's copy is really durable too:
//! - the state machine applies (and so answers clients) only entries whose
//!   leader copy is synced ([`EarlyAck::wait_applicable`]);
//! - followers are told a commit index only once it is synced here
//!   ([`CommitGate`]), so no follower applies what could still be lost.
//!
//! Anything visible is thus on a real majority of disks. See docs/safety.md.
//!
//! Switched off (`NodeConfig::early_ack`), every entry is acknowledged
//! after its sync, nothing is ever pending, and both gates stay open.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::EntryPayload;
use tokio::sync::watch;

use crate::fail_stop;
use crate::types::{Entry, LogId, NodeId, Vote};

/// Indexes acknowledged early, each with the sequence number of its
/// append; a sync that started after an append covers it.
#[derive(Default)]
struct Pending {
    by_index: BTreeMap<u64, u64>,
    next_seq: u64,
}

/// Owns the rule and both gates; one per store, shared by the log store
/// (which asks and reports syncs), the state machine and the network.
pub struct EarlyAck {
    enabled: bool,
    own_id: NodeId,
    /// The last vote saved: tells a leader's own appends from a follower's.
    vote: Mutex<Option<Vote>>,
    pending: Mutex<Pending>,
    /// Marked changed whenever entries leave `pending`.
    synced: watch::Sender<()>,
    /// The highest commit index [`CommitGate`] let through.
    last_visible: Mutex<Option<LogId>>,
}

impl EarlyAck {
    /// `enabled: false` turns early acknowledgement off.
    pub fn new(enabled: bool, own_id: NodeId) -> Self {
        EarlyAck {
            enabled,
            own_id,
            vote: Mutex::default(),
            pending: Mutex::default(),
            synced: watch::Sender::default(),
            last_visible: Mutex::default(),
        }
    }

    /// Notes a vote once it is durable (or read back at start).
    pub fn vote_saved(&self, vote: Vote) {
        *fail_stop::lock(&self.vote) = Some(vote);
    }

    /// Decides whether `entries`, written but not synced, are acknowledged
    /// now. If so, notes them and returns the sequence number to hand to
    /// [`EarlyAck::synced`] once a sync that started after this call has
    /// finished; if not (`None`), acknowledge them after their sync.
    pub fn acknowledge_early(&self, entries: &[Entry]) -> Option<u64> {
        if !self.enabled || entries.is_empty() || !self.own_leader_entries(entries) {
            return None;
        }
        let mut pending = fail_stop::lock(&self.pending);
        pending.next_seq += 1;
        let seq = pending.next_seq;
        for entry in entries {
            pending.by_index.insert(entry.log_id.index, seq);
        }
        Some(seq)
    }

    /// The rule: true if `entries` are this node's own, appended as the
    /// leader of the term it holds a committed vote for, and carry commands
    /// only. Entries from another leader (even old ones this node wrote in
    /// an earlier term) come after a vote for that leader was saved, so
    /// they never match; membership changes and blank entries take the
    /// plain path.
    fn own_leader_entries(&self, entries: &[Entry]) -> bool {
        let vote = fail_stop::lock(&self.vote);
        let Some(vote) = vote.as_ref().filter(|v| v.is_committed()) else {
            return false;
        };
        let leader = vote.leader_id();
        leader.node_id == self.own_id
            && entries.iter().all(|e| {
                e.log_id.leader_id == *leader && matches!(e.payload, EntryPayload::Normal(_))
            })
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

    /// True while some entry acknowledged early awaits its sync.
    pub fn any_pending(&self) -> bool {
        !self.synced_through(u64::MAX)
    }

    /// True if no early-acknowledged entry at or below `index` awaits its sync.
    fn synced_through(&self, index: u64) -> bool {
        let pending = fail_stop::lock(&self.pending);
        pending.by_index.range(..=index).next().is_none()
    }

    /// The state machine's gate: waits until the entries through `index`
    /// may be applied, i.e. none of them awaits its sync here.
    pub async fn wait_applicable(&self, index: u64) {
        let mut changes = self.synced.subscribe();
        while !self.synced_through(index) {
            // The sender lives in `self`, so this only fails if it is gone.
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// The network's gate: `committed` if the leader's copy is synced
    /// through it, else the highest commit index let through earlier
    /// (followers ignore a commit index lower than theirs; they learn this
    /// one on the next message).
    fn visible_commit(&self, committed: Option<LogId>) -> Option<LogId> {
        let mut last = fail_stop::lock(&self.last_visible);
        match committed {
            Some(c) if self.synced_through(c.index) => {
                *last = (*last).max(Some(c));
                committed
            }
            None => None,
            Some(_) => *last,
        }
    }
}

/// Lowers the commit index a leader sends to followers to the highest one
/// already durable on the leader. Shared by all of the leader's connections.
#[derive(Clone)]
pub struct CommitGate(Arc<EarlyAck>);

impl CommitGate {
    pub fn new(early_ack: Arc<EarlyAck>) -> Self {
        CommitGate(early_ack)
    }

    /// The commit index to send (see [`EarlyAck::visible_commit`]).
    pub fn visible(&self, committed: Option<LogId>) -> Option<LogId> {
        self.0.visible_commit(committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Membership};
    use raftlock_core::{Command, Proposal};

    fn log_id(index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(1, 1), index))
    }

    fn command(leader: NodeId, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, leader), index),
            payload: EntryPayload::Normal(Proposal::single(0, Command::Tick)),
        }
    }

    /// Node 1, leading term 1.
    fn leader(enabled: bool) -> EarlyAck {
        let early_ack = EarlyAck::new(enabled, 1);
        early_ack.vote_saved(Vote::new_committed(1, 1));
        early_ack
    }

    #[test]
    fn only_the_leaders_own_command_entries_go_early() {
        let early_ack = leader(true);
        assert!(early_ack.acknowledge_early(&[command(1, 1)]).is_some());
        assert_eq!(early_ack.acknowledge_early(&[command(2, 2)]), None);
        let membership = Entry {
            log_id: log_id(3).unwrap(),
            payload: EntryPayload::Membership(Membership::new(vec![[1].into()], None)),
        };
        assert_eq!(early_ack.acknowledge_early(&[membership]), None);
        // Once it voted for node 2, nothing of node 1's goes early.
        early_ack.vote_saved(Vote::new_committed(2, 2));
        assert_eq!(early_ack.acknowledge_early(&[command(1, 4)]), None);
        // Nor before its vote is committed.
        early_ack.vote_saved(Vote::new(3, 1));
        assert_eq!(early_ack.acknowledge_early(&[command(1, 5)]), None);
    }

    #[test]
    fn switched_off_nothing_goes_early_and_the_gates_stay_open() {
        let early_ack = Arc::new(leader(false));
        assert_eq!(early_ack.acknowledge_early(&[command(1, 1)]), None);
        assert!(!early_ack.any_pending());
        let gate = CommitGate::new(early_ack);
        assert_eq!(gate.visible(log_id(1)), log_id(1));
    }

    #[test]
    fn entries_stay_unsynced_until_a_later_sync_reports() {
        let early_ack = leader(true);
        assert!(early_ack.synced_through(10));
        let first = early_ack.acknowledge_early(&[command(1, 5)]).unwrap();
        let second = early_ack
            .acknowledge_early(&[command(1, 6), command(1, 7)])
            .unwrap();
        assert!(early_ack.synced_through(4));
        assert!(!early_ack.synced_through(5));
        early_ack.synced(first);
        assert!(early_ack.synced_through(5));
        assert!(!early_ack.synced_through(6));
        assert!(early_ack.any_pending());
        early_ack.synced(second);
        assert!(early_ack.synced_through(100));
        assert!(!early_ack.any_pending());
    }

    #[test]
    fn rewriting_an_index_needs_the_newer_sync() {
        let early_ack = leader(true);
        let old = early_ack.acknowledge_early(&[command(1, 5)]).unwrap();
        let new = early_ack.acknowledge_early(&[command(1, 5)]).unwrap();
        early_ack.synced(old);
        assert!(!early_ack.synced_through(5));
        early_ack.synced(new);
        assert!(early_ack.synced_through(5));
    }

    #[tokio::test]
    async fn waiting_ends_when_the_sync_lands() {
        let early_ack = Arc::new(leader(true));
        let seq = early_ack.acknowledge_early(&[command(1, 3)]).unwrap();
        let waiter = tokio::spawn({
            let early_ack = early_ack.clone();
            async move { early_ack.wait_applicable(3).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        early_ack.synced(seq);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
    }

    #[test]
    fn commit_gate_holds_back_unsynced_commit_indexes() {
        let early_ack = Arc::new(leader(true));
        let gate = CommitGate::new(early_ack.clone());
        assert_eq!(gate.visible(log_id(4)), log_id(4));
        let seq = early_ack
            .acknowledge_early(&[command(1, 5), command(1, 6)])
            .unwrap();
        assert_eq!(gate.visible(log_id(6)), log_id(4));
        early_ack.synced(seq);
        assert_eq!(gate.visible(log_id(6)), log_id(6));
        assert_eq!(gate.visible(None), None);
    }
}
