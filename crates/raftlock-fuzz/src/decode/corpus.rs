//! Valid encodings of every type the node decodes, built from random
//! values: the decode fuzzer's starting points. Deep inside valid bytes
//! is where a mutated length or tag reaches code random bytes never do.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, SnapshotSegmentId,
    StoredMembership, Vote,
};
use raftlock_core::{Command, LockTable};
use raftlock_node::codec::{encode, Decoded};
use raftlock_node::TypeConfig;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

use crate::gen;

type Entry = openraft::Entry<TypeConfig>;

/// The node's pre-vote messages have the same layout as these (bincode
/// writes fields in order, without names).
#[derive(Serialize)]
struct PreVoteRequest {
    candidate: u64,
    last_log_id: Option<LogId<u64>>,
}

#[derive(Serialize)]
struct PreVoteResponse {
    granted: bool,
}

fn log_id(rng: &mut StdRng) -> LogId<u64> {
    LogId::new(
        CommittedLeaderId::new(rng.gen_range(0..10), rng.gen_range(0..4)),
        rng.gen_range(0..1_000),
    )
}

fn maybe_log_id(rng: &mut StdRng) -> Option<LogId<u64>> {
    rng.gen_bool(0.8).then(|| log_id(rng))
}

fn vote(rng: &mut StdRng) -> Vote<u64> {
    let (term, node) = (rng.gen_range(0..10), rng.gen_range(0..4));
    if rng.gen() {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    }
}

fn membership(rng: &mut StdRng) -> Membership<u64, BasicNode> {
    let voters: BTreeSet<u64> = (1..=rng.gen_range(1..4)).collect();
    let mut nodes: BTreeMap<u64, BasicNode> = voters
        .iter()
        .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
        .collect();
    if rng.gen() {
        nodes.insert(9, BasicNode::new("127.0.0.1:7009|127.0.0.1:8009"));
    }
    let mut configs = vec![voters];
    if rng.gen_ratio(1, 4) {
        configs.push((2..=4).collect());
    }
    Membership::new(configs, nodes)
}

fn snapshot_meta(rng: &mut StdRng) -> SnapshotMeta<u64, BasicNode> {
    SnapshotMeta {
        last_log_id: maybe_log_id(rng),
        last_membership: StoredMembership::new(maybe_log_id(rng), membership(rng)),
        snapshot_id: format!("{}-{}", rng.gen_range(0..10), rng.gen_range(0..1_000)),
    }
}

/// `command` with a wrapper of a wrapper cut to one wrapper: a node never
/// writes one, and refuses to decode one (a deep nest would overflow the
/// stack), so it is no valid encoding.
fn unnest(command: Command) -> Command {
    match command {
        Command::AsSession {
            principal,
            secret_hash,
            command,
        } => {
            let mut inner = *command;
            while let Command::AsSession { command, .. } = inner {
                inner = *command;
            }
            Command::AsSession {
                principal,
                secret_hash,
                command: Box::new(inner),
            }
        }
        other => other,
    }
}

fn entry(rng: &mut StdRng) -> Entry {
    let payload = match rng.gen_range(0..8) {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Membership(membership(rng)),
        _ => {
            let mut proposal = gen::proposal(rng, 1_700_000_000_000);
            proposal.commands = proposal.commands.into_iter().map(unnest).collect();
            EntryPayload::Normal(proposal)
        }
    };
    Entry {
        log_id: log_id(rng),
        payload,
    }
}

/// A table grown by random commands, encoded as a snapshot is.
pub fn snapshot(rng: &mut StdRng) -> Vec<u8> {
    let mut table = LockTable::new();
    let last = rng.gen_range(2..60);
    for index in 1..last {
        let _ = table.apply(index, &gen::proposal(rng, table.now_ms()));
    }
    raftlock_node::codec::snapshot_input(last - 1, &table).unwrap_or_default()
}

fn raft_error<E>(rng: &mut StdRng) -> RaftError<u64, E> {
    if rng.gen() {
        RaftError::Fatal(Fatal::Panicked)
    } else {
        RaftError::Fatal(Fatal::Stopped)
    }
}

fn segment(rng: &mut StdRng) -> SnapshotSegmentId {
    SnapshotSegmentId {
        id: format!("{}", rng.gen_range(0..100)),
        offset: rng.gen_range(0..1 << 20),
    }
}

/// A valid encoding of `kind`, random each call.
pub fn valid(kind: Decoded, rng: &mut StdRng) -> Vec<u8> {
    let encoded = match kind {
        Decoded::LogEntry => encode(&entry(rng)),
        Decoded::Vote => encode(&vote(rng)),
        Decoded::LogId => encode(&log_id(rng)),
        Decoded::SnapshotMeta => encode(&snapshot_meta(rng)),
        Decoded::Snapshot => return snapshot(rng),
        Decoded::AppendEntriesRequest => encode(&AppendEntriesRequest::<TypeConfig> {
            vote: vote(rng),
            prev_log_id: maybe_log_id(rng),
            entries: (0..rng.gen_range(0..6)).map(|_| entry(rng)).collect(),
            leader_commit: maybe_log_id(rng),
        }),
        Decoded::AppendEntriesReply => {
            let reply: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
                match rng.gen_range(0..5) {
                    0 => Ok(AppendEntriesResponse::Success),
                    1 => Ok(AppendEntriesResponse::PartialSuccess(maybe_log_id(rng))),
                    2 => Ok(AppendEntriesResponse::Conflict),
                    3 => Ok(AppendEntriesResponse::HigherVote(vote(rng))),
                    _ => Err(raft_error(rng)),
                };
            encode(&reply)
        }
        Decoded::VoteRequest => encode(&VoteRequest {
            vote: vote(rng),
            last_log_id: maybe_log_id(rng),
        }),
        Decoded::VoteReply => {
            let reply: Result<VoteResponse<u64>, RaftError<u64>> = if rng.gen_ratio(4, 5) {
                Ok(VoteResponse {
                    vote: vote(rng),
                    vote_granted: rng.gen(),
                    last_log_id: maybe_log_id(rng),
                })
            } else {
                Err(raft_error(rng))
            };
            encode(&reply)
        }
        Decoded::InstallSnapshotRequest => {
            let data = snapshot(rng);
            let cut = rng.gen_range(0..=data.len());
            encode(&InstallSnapshotRequest::<TypeConfig> {
                vote: vote(rng),
                meta: snapshot_meta(rng),
                offset: if rng.gen() { 0 } else { cut as u64 },
                data: data[..cut].to_vec(),
                done: rng.gen(),
            })
        }
        Decoded::InstallSnapshotReply => {
            let reply: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
                match rng.gen_range(0..3) {
                    0 => Ok(InstallSnapshotResponse { vote: vote(rng) }),
                    1 => Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
                        SnapshotMismatch {
                            expect: segment(rng),
                            got: segment(rng),
                        },
                    ))),
                    _ => Err(raft_error(rng)),
                };
            encode(&reply)
        }
        Decoded::PreVoteRequest => encode(&PreVoteRequest {
            candidate: rng.gen_range(0..4),
            last_log_id: maybe_log_id(rng),
        }),
        Decoded::PreVoteReply => encode(&PreVoteResponse { granted: rng.gen() }),
    };
    encoded.unwrap_or_default()
}
