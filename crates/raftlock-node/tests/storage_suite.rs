//! openraft's own storage test suite, run against the sled store, and what
//! the suite does not cover. Everything runs with the early acknowledgement
//! of the leader's entries on (the default) and off.

use openraft::testing::{StoreBuilder, Suite};
use raftlock_node::test_hooks::{
    open_store, AppliedTable, LogStore, StateMachineStore, StorageError,
};
use raftlock_node::TypeConfig;
use tempfile::TempDir;

/// Opens node 1's store in `dir`.
fn open(
    dir: &std::path::Path,
    table: AppliedTable,
    early_ack: bool,
) -> (LogStore, StateMachineStore) {
    let (log, sm, _) = open_store(&dir.join("sled"), table, 1, early_ack).expect("open sled store");
    (log, sm)
}

struct SledBuilder {
    early_ack: bool,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) = open(dir.path(), AppliedTable::new(), self.early_ack);
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_openraft_suite() {
    Suite::test_all(SledBuilder { early_ack: true }).expect("openraft storage suite");
}

#[test]
fn sled_store_passes_openraft_suite_without_early_ack() {
    Suite::test_all(SledBuilder { early_ack: false }).expect("openraft storage suite");
}

#[tokio::test]
async fn store_survives_reopen() {
    for early_ack in [true, false] {
        reopened_store_keeps_everything(early_ack).await;
    }
}

/// A reopened store still has its log, vote and snapshot, and a snapshot
/// restores the lock table.
async fn reopened_store_keeps_everything(early_ack: bool) {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
    };
    use raftlock_core::{Command, Proposal, SessionId};

    let dir = TempDir::new().unwrap();
    let entry = |index: u64, command| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal::single(10, command)),
    };
    let session = SessionId(42);
    let entries = vec![
        entry(
            1,
            Command::OpenSession {
                session,
                label: "me".into(),
                ttl_ms: 5000,
                lock_delay_ms: 0,
            },
        ),
        entry(
            2,
            Command::Acquire {
                session,
                seq: 1,
                name: "a:b".into(),
                wait: false,
            },
        ),
    ];
    {
        let table = AppliedTable::new();
        let (mut log, mut sm) = open(dir.path(), table.clone(), early_ack);
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries.clone())
            .await
            .unwrap();
        sm.apply(entries.clone()).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(table.read(|t| t.holder("a:b")), Some((session, 2)));
    }
    let table = AppliedTable::new();
    let (mut log, mut sm) = open(dir.path(), table.clone(), early_ack);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(log.try_get_log_entries(1..3).await.unwrap(), entries);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert_eq!(table.read(|t| t.holder("a:b")), Some((session, 2)));
}

#[tokio::test]
async fn large_snapshots_survive_and_never_go_backwards() {
    for early_ack in [true, false] {
        large_snapshot_round_trip(early_ack).await;
    }
}

/// A snapshot far over sled's blob threshold (about 128 KiB) round-trips,
/// and a snapshot build that finishes after a newer snapshot was installed
/// does not replace it.
async fn large_snapshot_round_trip(early_ack: bool) {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
    use raftlock_core::{Command, Proposal, SessionId};

    let dir = TempDir::new().unwrap();
    let entries: Vec<Entry<TypeConfig>> = (1..=3000u64)
        .map(|index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal::single(
                10,
                Command::OpenSession {
                    session: SessionId(index as u128),
                    label: format!("host-{index} pid {index} with a long enough label"),
                    ttl_ms: 5000,
                    lock_delay_ms: 0,
                },
            )),
        })
        .collect();
    let expected = {
        let table = AppliedTable::new();
        let (_log, mut sm) = open(dir.path(), table.clone(), early_ack);
        sm.apply(entries[..10].to_vec()).await.unwrap();
        let mut stale_builder = sm.get_snapshot_builder().await;
        sm.apply(entries[10..].to_vec()).await.unwrap();
        let newer = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let bytes = newer.snapshot.metadata().await.unwrap().len();
        assert!(bytes > 200 * 1024, "big enough to matter");
        // The stale build finishes last; the stored snapshot must stay the newer one.
        stale_builder.build_snapshot().await.unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, newer.meta.last_log_id);
        table.read(|t| t.clone())
    };
    let table = AppliedTable::new();
    let (_log, mut sm) = open(dir.path(), table.clone(), early_ack);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(3000));
    assert_eq!(table.read(|t| t.clone()), expected);
}

/// A command entry (opening session `index`) of the leader of term `leader`.
fn command_entry(leader: u64, index: u64) -> openraft::Entry<TypeConfig> {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftlock_core::{Command, Proposal, SessionId};

    openraft::Entry {
        log_id: LogId::new(CommittedLeaderId::new(leader, leader), index),
        payload: EntryPayload::Normal(Proposal::single(
            10,
            Command::OpenSession {
                session: SessionId(index as u128),
                label: "me".into(),
                ttl_ms: 5000,
                lock_delay_ms: 0,
            },
        )),
    }
}

const SHORT: std::time::Duration = std::time::Duration::from_millis(300);
const LONG: std::time::Duration = std::time::Duration::from_secs(10);

/// Appends `entries` with syncs held, and checks that the append is not
/// acknowledged until they are let go.
// The guard holds the fsync thread (a plain thread), not this task.
#[allow(clippy::await_holding_lock)]
async fn append_waits_for_its_sync(log: &LogStore, entries: Vec<openraft::Entry<TypeConfig>>) {
    use openraft::storage::RaftLogStorageExt;

    let mut appending = log.clone();
    let paused = log.pause_syncs();
    let append = tokio::spawn(async move { appending.blocking_append(entries).await.unwrap() });
    tokio::time::sleep(SHORT).await;
    assert!(!append.is_finished(), "acknowledged before its sync");
    drop(paused);
    tokio::time::timeout(LONG, append)
        .await
        .expect("acknowledged once synced")
        .unwrap();
}

/// A leader's own entries are acknowledged before their sync (so openraft
/// replicates at once), but nothing is applied until the sync lands; a
/// follower's entries are acknowledged only once synced.
#[tokio::test]
// The guard holds the fsync thread (a plain thread), not this task.
#[allow(clippy::await_holding_lock)]
async fn leader_entries_are_acknowledged_early_but_applied_only_once_synced() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::Vote;
    use tokio::time::timeout;

    let dir = TempDir::new().unwrap();
    let table = AppliedTable::new();
    let (mut log, mut sm) = open(dir.path(), table.clone(), true);

    // Node 1 leads term 1: its entry is acknowledged while syncs are held.
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    let syncs = log.clone();
    let paused = syncs.pause_syncs();
    let own = vec![command_entry(1, 1)];
    timeout(LONG, log.blocking_append(own.clone()))
        .await
        .expect("a leader's own entry is acknowledged before its sync")
        .unwrap();
    let apply = tokio::spawn(async move {
        sm.apply(own).await.unwrap();
        sm
    });
    tokio::time::sleep(SHORT).await;
    assert!(
        !apply.is_finished(),
        "applied before the leader's copy was synced"
    );
    assert_eq!(table.read(|t| t.session_count()), 0);
    drop(paused);
    let mut sm = timeout(LONG, apply)
        .await
        .expect("applied once synced")
        .unwrap();
    assert_eq!(table.read(|t| t.session_count()), 1);

    // Node 2 leads term 2: node 1 is a follower and acknowledges after the sync.
    log.save_vote(&Vote::new_committed(2, 2)).await.unwrap();
    append_waits_for_its_sync(&log, vec![command_entry(2, 2)]).await;
    timeout(LONG, sm.apply(vec![command_entry(2, 2)]))
        .await
        .expect("a follower's synced entry applies at once")
        .unwrap();
    assert_eq!(table.read(|t| t.session_count()), 2);
}

/// Switched off, even the leader's own entries are acknowledged only once
/// synced, and then apply at once.
#[tokio::test]
async fn without_early_ack_the_leaders_entries_wait_for_their_sync() {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::Vote;

    let dir = TempDir::new().unwrap();
    let table = AppliedTable::new();
    let (mut log, mut sm) = open(dir.path(), table.clone(), false);
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    append_waits_for_its_sync(&log, vec![command_entry(1, 1)]).await;
    tokio::time::timeout(LONG, sm.apply(vec![command_entry(1, 1)]))
        .await
        .expect("a synced entry applies at once")
        .unwrap();
    assert_eq!(table.read(|t| t.session_count()), 1);
}
