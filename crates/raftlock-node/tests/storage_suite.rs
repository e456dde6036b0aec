//! openraft's own storage test suite, run against the sled store.

use openraft::testing::{StoreBuilder, Suite};
use raftlock_node::shared::Shared;
use raftlock_node::store::{self, LogStore, StateMachineStore};
use raftlock_node::types::{StorageError, TypeConfig};
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) = store::open(dir.path(), Shared::new()).expect("open sled store");
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_openraft_suite() {
    Suite::test_all(SledBuilder).expect("openraft storage suite");
}

/// What the suite does not cover: a reopened store still has its log,
/// vote and snapshot, and a snapshot restores the lock table.
#[tokio::test]
async fn store_survives_reopen() {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
    };
    use raftlock_core::{Command, Proposal, SessionId};

    let dir = TempDir::new().unwrap();
    let entry = |index: u64, command| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            time_ms: 10,
            command,
        }),
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
        let shared = Shared::new();
        let (mut log, mut sm) = store::open(dir.path(), shared.clone()).unwrap();
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
        assert_eq!(shared.table().holder("a:b"), Some((session, 2)));
    }
    let shared = Shared::new();
    let (mut log, mut sm) = store::open(dir.path(), shared.clone()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(log.try_get_log_entries(1..3).await.unwrap(), entries);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert_eq!(shared.table().holder("a:b"), Some((session, 2)));
}
