//! Damaged bytes on disk and bad snapshots from a leader: each gives a
//! clean error, never a panic, and leaves the stored table in place.
//!
//! The store is written through the node's own code, closed, damaged with
//! sled directly (as a bad disk or a hand edit would), and opened again.

use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
};
use raftlock_core::{Command, Proposal, SessionId};
use raftlock_node::codec::{decode_as, encode, Decoded};
use raftlock_node::test_hooks::{open_store, AppliedTable, LogStore, StateMachineStore};
use raftlock_node::TypeConfig;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

fn sled_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("sled")
}

fn open(dir: &TempDir, table: AppliedTable) -> std::io::Result<(LogStore, StateMachineStore)> {
    open_store(&sled_dir(dir), table, 1, true).map(|(log, sm, _)| (log, sm))
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal::single(
            10,
            Command::OpenSession {
                session: SessionId(u128::from(index)),
                label: format!("session {index}"),
                ttl_ms: 5000,
                lock_delay_ms: 0,
            },
        )),
    }
}

/// A store with a vote, entries 1..=10, applied, and a snapshot at 5.
async fn healthy_store(dir: &TempDir) {
    let (mut log, mut sm) = open(dir, AppliedTable::new()).unwrap();
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    let entries: Vec<_> = (1..=10).map(entry).collect();
    openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries.clone())
        .await
        .unwrap();
    sm.apply(entries[..5].to_vec()).await.unwrap();
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    sm.apply(entries[5..].to_vec()).await.unwrap();
}

/// Writes `value` under `key` in `tree` of the closed store in `dir`.
fn damage(dir: &Path, tree: &str, key: &[u8], value: &[u8]) {
    // The closed store's background threads (fsync, purge) let go of the
    // database's file lock a moment after the store is dropped.
    let mut tries = 0;
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("sled still locked ({e}); waiting");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open {}: {e}", dir.display()),
        }
    };
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

const GARBAGE: &[u8] = &[0xff; 40];

#[tokio::test]
async fn garbage_vote_or_purge_point_refuses_to_open() {
    for key in [&b"vote"[..], b"last_purged"] {
        let dir = TempDir::new().unwrap();
        healthy_store(&dir).await;
        damage(&sled_dir(&dir), "meta", key, GARBAGE);
        let err = open(&dir, AppliedTable::new()).err().expect("refused");
        assert!(!err.to_string().is_empty(), "{key:?}");
    }
}

#[tokio::test]
async fn garbage_snapshot_meta_or_data_refuses_to_open() {
    let huge_prefix = [b"rlsnap\x00\x04".as_slice(), &u64::MAX.to_le_bytes()].concat();
    let damages: [(&[u8], &[u8]); 3] = [
        (b"meta", GARBAGE),
        (b"data/0000000000", GARBAGE),
        (b"data/0000000000", &huge_prefix),
    ];
    for (key, value) in damages {
        let dir = TempDir::new().unwrap();
        healthy_store(&dir).await;
        damage(&sled_dir(&dir), "snapshot", key, value);
        let refused = open(&dir, AppliedTable::new()).err();
        assert!(refused.is_some(), "{key:?} damaged, still opened");
    }
}

#[tokio::test]
async fn garbage_log_entries_are_read_errors() {
    let misfiled = encode(&entry(7)).unwrap();
    let damages: [(u64, &[u8]); 2] = [(10, GARBAGE), (8, &misfiled)];
    for (index, value) in damages {
        let dir = TempDir::new().unwrap();
        healthy_store(&dir).await;
        damage(&sled_dir(&dir), "log", &index.to_be_bytes(), value);
        let (mut log, _sm) = open(&dir, AppliedTable::new()).unwrap();
        assert!(log.try_get_log_entries(6..=10).await.is_err(), "{index}");
        if index == 10 {
            // The last entry is what openraft reads at startup.
            assert!(log.get_log_state().await.is_err());
        }
        assert_eq!(log.try_get_log_entries(1..=6).await.unwrap().len(), 6);
    }
}

#[tokio::test]
async fn a_log_with_a_hole_is_a_read_error() {
    let dir = TempDir::new().unwrap();
    healthy_store(&dir).await;
    let db = sled::open(sled_dir(&dir)).unwrap();
    db.open_tree("log")
        .unwrap()
        .remove(7u64.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let (mut log, _sm) = open(&dir, AppliedTable::new()).unwrap();
    assert!(log.try_get_log_entries(6..=8).await.is_err());
}

/// What a leader sends is written to a file, then checked before it
/// replaces anything: garbage is refused and the table stays as it was.
#[tokio::test]
async fn a_bad_snapshot_from_a_leader_leaves_the_table_in_place() {
    let dir = TempDir::new().unwrap();
    healthy_store(&dir).await;
    let table = AppliedTable::new();
    let (_log, mut sm) = open(&dir, table.clone()).unwrap();
    let before = table.read(|t| t.clone());
    let stored = sm.get_current_snapshot().await.unwrap().unwrap();

    let mut meta = stored.meta.clone();
    meta.last_log_id = Some(LogId::new(CommittedLeaderId::new(2, 1), 50));
    meta.snapshot_id = "from-a-bad-leader".into();
    let huge_prefix = [b"rlsnap\x00\x04".as_slice(), &u64::MAX.to_le_bytes()].concat();
    for data in [GARBAGE, &huge_prefix, b""] {
        let mut file = sm.begin_receiving_snapshot().await.unwrap();
        file.write_all(data).await.unwrap();
        file.shutdown().await.unwrap();
        assert!(sm.install_snapshot(&meta, file).await.is_err());
        assert_eq!(table.read(|t| t.clone()), before);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, stored.meta);
    }
}

/// `decode_as(Snapshot)` takes the install path: a snapshot the node built
/// passes, the same bytes damaged do not.
#[tokio::test]
async fn decode_as_snapshot_checks_what_install_checks() {
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new().unwrap();
    healthy_store(&dir).await;
    let (_log, mut sm) = open(&dir, AppliedTable::new()).unwrap();
    let mut snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
    let mut data = Vec::new();
    snapshot.snapshot.read_to_end(&mut data).await.unwrap();
    let index = snapshot.meta.last_log_id.unwrap().index;
    let framed = [index.to_le_bytes().as_slice(), &data].concat();
    assert_eq!(decode_as(Decoded::Snapshot, &framed), Ok(()));
    assert!(decode_as(Decoded::Snapshot, &framed[..framed.len() - 1]).is_err());
    assert!(decode_as(Decoded::Snapshot, &framed[..4]).is_err());
}

/// The node's own startup path (what `raftlock server` runs, which exits
/// 1 on the error): damaged bytes stop it with an error, not a panic.
#[tokio::test]
async fn a_node_refuses_to_start_on_damaged_storage() {
    let damages: [(&str, &[u8], &str); 3] = [
        ("log", &10u64.to_be_bytes(), "Read Logs"),
        ("meta", b"vote", "opening the data directory"),
        ("snapshot", b"meta", "opening the data directory"),
    ];
    for (tree, key, says) in damages {
        let dir = TempDir::new().unwrap();
        healthy_store(&dir).await;
        damage(&sled_dir(&dir), tree, key, GARBAGE);
        let config = raftlock_node::NodeConfig {
            id: 1,
            listen: "127.0.0.1:0".parse().unwrap(),
            peer_listen: None,
            peers: Default::default(),
            data_dir: dir.path().to_path_buf(),
            timings: Default::default(),
            snapshot_every: 1000,
            max_snapshot_bytes: raftlock_node::codec::DEFAULT_MAX_SNAPSHOT_BYTES,
            metrics_listen: None,
            early_ack: true,
            security: None,
            joins: false,
            limits: Default::default(),
            server_limits: Default::default(),
        };
        let refused = raftlock_node::Node::start(config).await.err();
        let refused = refused.unwrap_or_else(|| panic!("started on a damaged {tree}"));
        assert!(format!("{refused:#}").contains(says), "{tree}: {refused:#}");
    }
}
