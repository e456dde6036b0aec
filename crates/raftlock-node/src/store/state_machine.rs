//! The state machine side of storage: applies committed entries to the
//! in-memory lock table and keeps its snapshots durable in sled.
//!
//! The table itself lives in memory; what is durable is the latest
//! snapshot plus the log after it. On restart openraft re-applies the
//! committed entries after the snapshot, rebuilding the same table.

use std::io;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use raftlock_core::{
    Command, Event, LockTable, LockTableV2, LockTableV3, LockTableV4, Outcome, Proposal, Response,
};
use serde::{Deserialize, Serialize};

use super::early_ack::EarlyAck;
use super::snapshot_files::{self, SnapshotFiles};
use super::{decode, encode, sled_to_io, Durable};
use crate::applied_table::AppliedTable;
use crate::fail_stop;
use crate::metrics;
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const SNAPSHOT_META: &[u8] = b"meta";
/// Snapshot data is stored in chunks: sled 0.34 moves values over about
/// 128 KiB into separate blob files that its flush never fsyncs, so every
/// value we rely on must stay well under that.
const CHUNK: usize = 64 * 1024;

pub struct StateMachineStore {
    table: AppliedTable,
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: SnapshotStore,
    /// Tells apart snapshots built at the same log id.
    snapshot_seq: u64,
    /// A leader's entries not yet on its disk: applying waits for them.
    early_ack: Arc<EarlyAck>,
    /// Snapshot data on its way to or from openraft.
    files: Arc<SnapshotFiles>,
}

/// The durable current snapshot. Building one runs in its own task and can
/// finish after a newer snapshot was installed from the leader; writes go
/// through one lock and never replace a snapshot with an older one.
#[derive(Clone)]
struct SnapshotStore {
    durable: Durable,
    tree: sled::Tree,
    write_lock: Arc<Mutex<()>>,
}

impl SnapshotStore {
    /// The stored snapshot's meta and data. The data is read up to the
    /// codec's decode bound: past it, it could not be decoded anyway.
    fn read(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let Some(meta) = self.tree.get(SNAPSHOT_META).map_err(sled_to_io)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta = decode(&meta)?;
        let mut data = Vec::new();
        for chunk in self.tree.scan_prefix(b"data/") {
            let (_, bytes) = chunk.map_err(sled_to_io)?;
            if (data.len() + bytes.len()) as u64 > crate::codec::MAX_DECODE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "stored snapshot is larger than any snapshot this node decodes",
                ));
            }
            data.extend_from_slice(&bytes);
        }
        Ok(Some((meta, data)))
    }

    /// Stores and syncs a snapshot unless the stored one is as new or
    /// newer. Returns whether it was stored. Must finish before openraft
    /// may purge the log behind it.
    fn write(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let _guard = fail_stop::lock(&self.write_lock);
        if let Some(stored) = self.tree.get(SNAPSHOT_META).map_err(sled_to_io)? {
            let stored: SnapshotMeta = decode(&stored)?;
            if stored.last_log_id >= meta.last_log_id {
                return Ok(false);
            }
        }
        let mut batch = sled::Batch::default();
        for old in self.tree.scan_prefix(b"data/").keys() {
            batch.remove(old.map_err(sled_to_io)?);
        }
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            batch.insert(format!("data/{i:010}").as_bytes(), chunk);
        }
        batch.insert(SNAPSHOT_META, encode(meta)?);
        self.tree.apply_batch(batch).map_err(sled_to_io)?;
        self.durable.sync()?;
        Ok(true)
    }
}

/// What a snapshot's data holds.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    table: LockTable,
}

/// What a format-4 snapshot held: a table from before quotas.
#[derive(Deserialize)]
struct SnapshotDataV4 {
    table: LockTableV4,
}

/// What a format-3 snapshot held: a table from before session owners.
#[derive(Deserialize)]
struct SnapshotDataV3 {
    table: LockTableV3,
}

/// What a format-2 snapshot held: a table from before lock modes.
#[derive(Deserialize)]
struct SnapshotDataV2 {
    table: LockTableV2,
}

/// `table`'s snapshot data as a node writes it, for
/// [`crate::codec::snapshot_input`].
pub(crate) fn encode_snapshot(table: &LockTable) -> io::Result<Vec<u8>> {
    SnapshotData {
        table: table.clone(),
    }
    .encode()
}

/// Decodes (and checks) a snapshot's data as installing it would, for
/// [`crate::codec::decode_as`].
pub(crate) fn decode_snapshot(last_applied: u64, bytes: &[u8]) -> io::Result<()> {
    decode_checked(bytes, last_applied).map(drop)
}

/// Decodes a snapshot's data and checks its table against the index of
/// the last entry the snapshot covers (from its meta): a table from a peer
/// or a damaged disk must not break the lock table's assumptions later,
/// such as a fencing token above the log index.
fn decode_checked(bytes: &[u8], last_applied: u64) -> io::Result<SnapshotData> {
    let decoded = SnapshotData::decode(bytes)?;
    decoded
        .table
        .check_consistent_at(last_applied)
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot table at index {last_applied}: {e}"),
            )
        })?;
    Ok(decoded)
}

/// The index of the last entry a snapshot covers (0: none).
fn last_index(meta: &SnapshotMeta) -> u64 {
    meta.last_log_id.map_or(0, |id| id.index)
}

/// Every snapshot starts with this tag. bincode has no schema, so a table
/// laid out by another raftlock version would decode into nonsense or fail
/// somewhere deep; the tag turns that into one clear refusal. Bump the
/// last byte whenever the table's serialized layout changes (and keep a
/// reader for the one before it). Snapshots of raftlock before the tag
/// existed start with the table's clock instead.
const SNAPSHOT_FORMAT: &[u8; 8] = b"rlsnap\x00\x05";
/// Format 4: no quotas in the table; read and converted (it takes the
/// default limits until the leader proposes its own).
const SNAPSHOT_FORMAT_V4: &[u8; 8] = b"rlsnap\x00\x04";
/// Format 3: sessions without owners; read and converted (they accept
/// any caller until they end).
const SNAPSHOT_FORMAT_V3: &[u8; 8] = b"rlsnap\x00\x03";
/// Format 2: every hold and wait exclusive; read and converted.
const SNAPSHOT_FORMAT_V2: &[u8; 8] = b"rlsnap\x00\x02";

impl SnapshotData {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let mut data = SNAPSHOT_FORMAT.to_vec();
        data.extend_from_slice(&encode(self)?);
        Ok(data)
    }

    /// A peer or a damaged disk may hand us any table: refuse one that
    /// would break the lock table's own assumptions later.
    fn checked(self) -> io::Result<Self> {
        self.table.check_consistent().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("snapshot table: {e}"))
        })?;
        Ok(self)
    }

    fn decode(data: &[u8]) -> io::Result<Self> {
        match data.split_first_chunk::<8>() {
            Some((tag, body)) if tag == SNAPSHOT_FORMAT => {
                let data: SnapshotData = decode(body)?;
                data.checked()
            }
            Some((tag, body)) if tag == SNAPSHOT_FORMAT_V4 => {
                let old: SnapshotDataV4 = decode(body)?;
                SnapshotData {
                    table: LockTable::from(old.table),
                }
                .checked()
            }
            Some((tag, body)) if tag == SNAPSHOT_FORMAT_V3 => {
                let old: SnapshotDataV3 = decode(body)?;
                SnapshotData {
                    table: LockTable::from(old.table),
                }
                .checked()
            }
            Some((tag, body)) if tag == SNAPSHOT_FORMAT_V2 => {
                let old: SnapshotDataV2 = decode(body)?;
                SnapshotData {
                    table: LockTable::from(old.table),
                }
                .checked()
            }
            Some((tag, _)) if tag[..7] == SNAPSHOT_FORMAT[..7] => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot format {} is not the one this raftlock reads ({}): \
                     run the raftlock version that wrote it",
                    tag[7], SNAPSHOT_FORMAT[7]
                ),
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "snapshot was written by an older raftlock (no format tag): run that \
                 version, or start this node with an empty --data-dir so it catches up \
                 from the cluster",
            )),
        }
    }
}

impl StateMachineStore {
    pub(crate) fn open(
        durable: Durable,
        table: AppliedTable,
        early_ack: Arc<EarlyAck>,
        files: SnapshotFiles,
    ) -> io::Result<Self> {
        let snapshots = SnapshotStore {
            tree: durable.tree("snapshot")?,
            durable,
            write_lock: Arc::new(Mutex::new(())),
        };
        let mut sm = StateMachineStore {
            table,
            applied: None,
            membership: StoredMembership::default(),
            snapshots,
            snapshot_seq: 0,
            early_ack,
            files: Arc::new(files),
        };
        if let Some((meta, data)) = sm.snapshots.read()? {
            let decoded = decode_checked(&data, last_index(&meta)).map_err(|e| {
                io::Error::new(e.kind(), format!("the stored snapshot {meta}: {e}"))
            })?;
            sm.restore(&meta, decoded);
        }
        Ok(sm)
    }

    fn restore(&mut self, meta: &SnapshotMeta, SnapshotData { table }: SnapshotData) {
        let index = last_index(meta);
        let watch = self.table.watch_hub();
        self.table.update(|t| {
            *t = table;
            watch.restart_at(index);
        });
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
    }
}

fn count(counts: &mut metrics::Applied, proposal: &Proposal, applied: &raftlock_core::Applied) {
    counts.grants += applied
        .events
        .iter()
        .filter(|e| matches!(e, Event::Granted { .. }))
        .count() as u64;
    for (command, response) in proposal.commands.iter().zip(&applied.responses) {
        match (command, response) {
            (
                _,
                Ok(Outcome::Granted {
                    reentrant: false, ..
                }),
            ) => counts.grants += 1,
            (_, Ok(Outcome::Released)) => counts.releases += 1,
            (Command::ExpireSession { .. }, Ok(_)) => counts.expiries += 1,
            (_, Ok(Outcome::SessionOpened { .. })) => counts.sessions_opened += 1,
            _ => {}
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            // openraft may count this leader's copy before it is on disk
            // (see `early_ack`); nothing is answered until it is.
            self.early_ack.wait_applicable(last.log_id.index).await;
        }
        let mut responses = Vec::new();
        let mut events = Vec::new();
        let mut counts = metrics::Applied::default();
        let watch = self.table.watch_hub();
        self.table.update(|table| {
            for entry in entries {
                self.applied = Some(entry.log_id);
                let index = entry.log_id.index;
                let response = match entry.payload {
                    EntryPayload::Normal(proposal) => {
                        let (applied, changes) = table.apply_with_events(index, &proposal);
                        watch.record(index, changes);
                        count(&mut counts, &proposal, &applied);
                        events.extend(applied.events);
                        applied.responses
                    }
                    EntryPayload::Membership(membership) => {
                        watch.record(index, Vec::new());
                        self.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Vec::new()
                    }
                    // A new leader's blank entry: nothing to do.
                    EntryPayload::Blank => {
                        watch.record(index, Vec::new());
                        Vec::new()
                    }
                };
                responses.push(response);
            }
        });
        metrics::applied(&counts);
        self.table.publish(events);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            applied: self.applied,
            membership: self.membership.clone(),
            table: self.table.read(LockTable::clone),
            seq: self.snapshot_seq,
            snapshots: self.snapshots.clone(),
            files: self.files.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file = self
            .files
            .incoming()
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let file = snapshot.into_std().await;
        let snapshots = self.snapshots.clone();
        let stored_meta = meta.clone();
        let last_applied = last_index(meta);
        let installed = off_async_threads(move || {
            let data = snapshot_files::read_all(file, crate::codec::MAX_DECODE_BYTES)?;
            // Decode and check first: a bad snapshot must not replace a good table.
            let decoded = decode_checked(&data, last_applied)?;
            snapshots.write(&stored_meta, &data)?;
            Ok((decoded, data.len()))
        })
        .await;
        let (decoded, bytes) = installed.map_err(|e| {
            tracing::error!(%meta, %e, "snapshot from the leader refused; the stored table stays");
            StorageIOError::write_snapshot(Some(meta.signature()), &e)
        })?;
        self.restore(meta, decoded);
        tracing::info!(%meta, bytes, "snapshot installed from the leader: this node was behind its purged log");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let snapshots = self.snapshots.clone();
        let files = self.files.clone();
        off_async_threads(move || {
            let Some((meta, data)) = snapshots.read()? else {
                return Ok(None);
            };
            let snapshot = Box::new(files.outgoing(&data)?);
            Ok(Some(Snapshot { meta, snapshot }))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}

/// A consistent copy of the state machine taken when openraft asked for a
/// snapshot; building it does not hold up applying new entries.
pub struct SnapshotBuilder {
    applied: Option<LogId>,
    membership: StoredMembership,
    table: LockTable,
    seq: u64,
    snapshots: SnapshotStore,
    files: Arc<SnapshotFiles>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let snapshot_id = match self.applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let table = std::mem::take(&mut self.table);
        let snapshots = self.snapshots.clone();
        let files = self.files.clone();
        let fail = |e: io::Error| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        let stored_meta = meta.clone();
        let (file, bytes, kept) = off_async_threads(move || {
            let data = SnapshotData { table }.encode()?;
            let kept = snapshots.write(&stored_meta, &data)?;
            Ok((files.outgoing(&data)?, data.len(), kept))
        })
        .await
        .map_err(fail)?;
        metrics::snapshot_built(bytes);
        tracing::info!(%meta, bytes, "snapshot built: log compaction after --snapshot-every entries");
        if !kept {
            tracing::info!(%meta, "built snapshot is older than the stored one; not kept");
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

/// Runs snapshot encoding and writing on a blocking thread: for a big table
/// they take milliseconds, and heartbeats and client calls must go on.
async fn off_async_threads<T, F>(work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_carry_their_format_and_refuse_others() {
        let data = SnapshotData {
            table: LockTable::new(),
        }
        .encode()
        .unwrap();
        assert!(SnapshotData::decode(&data).is_ok());

        let untagged = encode(&LockTable::new()).unwrap();
        let err = SnapshotData::decode(&untagged).err().unwrap();
        assert!(err.to_string().contains("older raftlock"), "{err}");

        let mut other = data.clone();
        other[7] = 1;
        let err = SnapshotData::decode(&other).err().unwrap();
        assert!(err.to_string().contains("snapshot format 1"), "{err}");

        assert!(SnapshotData::decode(b"rls").is_err());
    }

    fn fixture(hex: &str) -> Vec<u8> {
        let hex = hex.trim();
        (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    }

    /// A format-3 snapshot (written before session owners) is read; its
    /// sessions have no owner. A format-4 one keeps its owners.
    #[test]
    fn format_3_snapshots_load_and_owners_survive_a_round_trip() {
        let mut data = SNAPSHOT_FORMAT_V3.to_vec();
        data.extend_from_slice(&fixture(include_str!(
            "../../../raftlock-core/tests/fixtures/v3-table.hex"
        )));
        let restored = SnapshotData::decode(&data).unwrap();
        let old = raftlock_core::SessionId(0x11);
        assert_eq!(restored.table.session_owner(old), Some(None));
        for cut in [9, data.len() / 2, data.len() - 1] {
            assert!(SnapshotData::decode(&data[..cut]).is_err());
        }

        let mut table = restored.table;
        let owner = raftlock_core::SessionOwner {
            principal: "alice".into(),
            secret_hash: raftlock_core::SecretHash([3; 32]),
        };
        let owned = raftlock_core::SessionId(0x33);
        let open = Command::OpenSessionOwned {
            session: owned,
            label: "owned".into(),
            ttl_ms: 5_000,
            lock_delay_ms: 0,
            owner: owner.clone(),
        };
        table.apply(9, &Proposal::single(200, open));
        let again = SnapshotData { table }.encode().unwrap();
        assert_eq!(again[..8], SNAPSHOT_FORMAT[..]);
        let back = SnapshotData::decode(&again).unwrap();
        assert_eq!(back.table.session_owner(owned), Some(Some(&owner)));
        assert_eq!(back.table.session_owner(old), Some(None));
    }

    /// A format-2 snapshot (written before lock modes, the fixture comes from
    /// that version's code) is read, converted and still answers retries.
    #[test]
    fn format_2_snapshots_are_converted() {
        let hex = include_str!("../../../raftlock-core/tests/fixtures/v2-table.hex").trim();
        let table: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut data = SNAPSHOT_FORMAT_V2.to_vec();
        data.extend_from_slice(&table);
        let restored = SnapshotData::decode(&data).unwrap();
        assert!(restored.table.session_count() > 0);
        assert!(restored.table.lock_count() > 0);

        // Damaged: refused with an error, never a panic.
        for cut in [9, data.len() / 2, data.len() - 1] {
            assert!(SnapshotData::decode(&data[..cut]).is_err());
        }
    }
}
