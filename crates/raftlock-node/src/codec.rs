//! The one bincode configuration for every byte raftlock persists or
//! exchanges between nodes, and [`decode_as`], which decodes bytes as any
//! of those types by name (for the decode fuzzer and its tests).
//!
//! Bytes from the disk or from a peer are hostile: a length prefix may
//! claim gigabytes. Decoding is therefore bounded by [`MAX_DECODE_BYTES`]
//! and fails with an error past it, before allocating. The layout is
//! bincode 1's legacy one (fixed-width integers, trailing bytes allowed),
//! so what older versions wrote still decodes.

use std::io::{self, Read};

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::store::DEFAULT_MAX_SNAPSHOT_BYTES;

/// The most bytes one decode may consume. A log entry, a Raft message or
/// a snapshot's table larger than this is refused. It is also the most
/// `--max-snapshot-bytes` may be set to.
pub const MAX_DECODE_BYTES: u64 = 4 << 30;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(MAX_DECODE_BYTES)
}

/// Encodes `value` in the layout [`decode`] reads. Not bounded: what the
/// node itself encodes is bounded by the quotas, and a snapshot build that
/// failed for its size would stop every node (openraft takes a failed
/// build as a storage error).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .serialize(value)
}

/// Decodes `bytes`, refusing any length beyond [`MAX_DECODE_BYTES`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    options().deserialize(bytes)
}

/// Reads all of `reader` (a snapshot file), refusing more than `limit`
/// bytes: the length on disk is whatever a peer or a damaged disk made it,
/// so it is checked while reading, never trusted up front.
pub fn read_bounded(reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Every type raftlock decodes from the disk or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    LogEntry,
    Vote,
    LogId,
    SnapshotMeta,
    /// A whole snapshot as a node installs it: the index of its last
    /// entry (8 bytes, little-endian; in the node it comes from the
    /// snapshot's meta), then the snapshot's data (format tag, table),
    /// read with the size bound, decoded and checked for consistency at
    /// that index.
    Snapshot,
    AppendEntriesRequest,
    AppendEntriesReply,
    VoteRequest,
    VoteReply,
    InstallSnapshotRequest,
    InstallSnapshotReply,
    PreVoteRequest,
    PreVoteReply,
}

impl Decoded {
    pub const ALL: [Decoded; 13] = [
        Decoded::LogEntry,
        Decoded::Vote,
        Decoded::LogId,
        Decoded::SnapshotMeta,
        Decoded::Snapshot,
        Decoded::AppendEntriesRequest,
        Decoded::AppendEntriesReply,
        Decoded::VoteRequest,
        Decoded::VoteReply,
        Decoded::InstallSnapshotRequest,
        Decoded::InstallSnapshotReply,
        Decoded::PreVoteRequest,
        Decoded::PreVoteReply,
    ];
}

/// What [`decode_as`] takes as [`Decoded::Snapshot`]: `last_applied`
/// (the index of the snapshot's last entry, which its table is checked
/// against), then `table`'s snapshot data as a node writes it.
pub fn snapshot_input(
    last_applied: u64,
    table: &raftlock_core::LockTable,
) -> Result<Vec<u8>, String> {
    let mut bytes = last_applied.to_le_bytes().to_vec();
    bytes.extend(crate::store::encode_snapshot(table).map_err(|e| e.to_string())?);
    Ok(bytes)
}

/// Decodes `bytes` as `kind` the way the node does, and throws the value
/// away: `Ok` if the node would have accepted the bytes, an error (never
/// a panic) if not.
pub fn decode_as(kind: Decoded, bytes: &[u8]) -> Result<(), String> {
    use crate::types::{Entry, LogId, NodeId, SnapshotMeta, TypeConfig, Vote};
    use openraft::error::{InstallSnapshotError, RaftError};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    fn de<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
        decode::<T>(bytes).map(drop).map_err(|e| e.to_string())
    }
    match kind {
        Decoded::LogEntry => de::<Entry>(bytes),
        Decoded::Vote => de::<Vote>(bytes),
        Decoded::LogId => de::<LogId>(bytes),
        Decoded::SnapshotMeta => de::<SnapshotMeta>(bytes),
        Decoded::Snapshot => {
            let (index, data) = bytes
                .split_first_chunk::<8>()
                .ok_or("a snapshot needs its 8-byte index first")?;
            crate::store::decode_snapshot(u64::from_le_bytes(*index), data)
                .map_err(|e| e.to_string())
        }
        Decoded::AppendEntriesRequest => de::<AppendEntriesRequest<TypeConfig>>(bytes),
        Decoded::AppendEntriesReply => {
            de::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(bytes)
        }
        Decoded::VoteRequest => de::<VoteRequest<NodeId>>(bytes),
        Decoded::VoteReply => de::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(bytes),
        Decoded::InstallSnapshotRequest => de::<InstallSnapshotRequest<TypeConfig>>(bytes),
        Decoded::InstallSnapshotReply => de::<
            Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        >(bytes),
        Decoded::PreVoteRequest => de::<crate::election::PreVoteRequest>(bytes),
        Decoded::PreVoteReply => de::<crate::election::PreVoteResponse>(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"tail");
        assert!(decode::<Vec<u8>>(&bytes).is_err());
        assert!(decode::<String>(&bytes).is_err());
    }

    #[test]
    fn the_layout_is_bincode_1_legacy() {
        let value = (7u64, String::from("name"), vec![1u32, 2]);
        assert_eq!(encode(&value).unwrap(), bincode::serialize(&value).unwrap());
    }

    #[test]
    fn every_kind_refuses_garbage_without_panicking() {
        for kind in Decoded::ALL {
            for bytes in [&[][..], &[0xff; 3][..], &[0xff; 64][..]] {
                let _ = decode_as(kind, bytes);
            }
        }
    }
}
