//! What the wire fuzzer sends in gRPC bodies: garbage, valid protobuf
//! with hostile field values, and mutations of both; for the Raft
//! service, protobuf envelopes around garbage or mutated bincode.
//!
//! Bodies that a node would act on are kept harmless on purpose, so that
//! a changed table means a bug, not a fuzzer that found the right
//! request: Raft requests that decode are rewritten to a stale term (0),
//! which every node refuses, and Cluster (membership) calls only ever get
//! bytes that are not protobuf. Session calls name the fuzzer's own
//! session, but never know its secret.

use prost::Message;
use raftlock_node::codec::{self, Decoded};
use raftlock_node::TypeConfig;
use raftlock_proto::raft::RaftMessage;
use raftlock_proto::v1::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::decode::{corpus, mutate};

/// A protobuf tag with wire type 7, which no protobuf decoder accepts:
/// a body that starts with it can never decode.
const NEVER_PROTOBUF: u8 = 0x0f;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Lock,
    Cluster,
    Raft,
    /// A path no service serves.
    Unknown,
}

pub const LOCK_METHODS: [&str; 9] = [
    "OpenSession",
    "KeepAlive",
    "CloseSession",
    "Acquire",
    "Release",
    "GetLock",
    "ListLocks",
    "Status",
    "Watch",
];
pub const CLUSTER_METHODS: [&str; 3] = ["AddLearner", "Promote", "RemoveMember"];
pub const RAFT_METHODS: [&str; 4] = ["AppendEntries", "Vote", "InstallSnapshot", "PreVote"];

/// A method's path and a body for it.
pub fn call(rng: &mut StdRng, service: Service, session_id: &str) -> (String, Vec<u8>) {
    match service {
        Service::Lock => {
            let method = *LOCK_METHODS.choose(rng).unwrap_or(&"Status");
            let body = lock_body(rng, method, session_id);
            (format!("/raftlock.v1.Lock/{method}"), body)
        }
        Service::Cluster => {
            let method = *CLUSTER_METHODS.choose(rng).unwrap_or(&"Promote");
            let mut body = vec![NEVER_PROTOBUF];
            body.extend(mutate::random_bytes(rng));
            (format!("/raftlock.v1.Cluster/{method}"), body)
        }
        Service::Raft => {
            let method = *RAFT_METHODS.choose(rng).unwrap_or(&"Vote");
            (
                format!("/raftlock.raft.v1.Raft/{method}"),
                raft_body(rng, method),
            )
        }
        Service::Unknown => {
            let path = *["/", "/raftlock.v1.Lock/Nope", "/x/y", "/raftlock.v1.Lock/"]
                .choose(rng)
                .unwrap_or(&"/");
            (path.to_string(), mutate::random_bytes(rng))
        }
    }
}

fn text(rng: &mut StdRng, session_id: &str) -> String {
    match rng.gen_range(0..8) {
        0 => String::new(),
        1 => session_id.to_string(),
        2 => "x".repeat(rng.gen_range(500..70_000)),
        3 => super::target::HELD_NAME.to_string(),
        4 => (0..rng.gen_range(1..80))
            .map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\0'))
            .collect(),
        5 => format!("{:064x}", rng.gen::<u128>()),
        _ => format!("fuzz/{}", rng.gen_range(0..10)),
    }
}

fn number(rng: &mut StdRng) -> u64 {
    *[
        0,
        1,
        999,
        1_000,
        3_600_001,
        u64::MAX,
        u64::MAX / 2,
        rng.gen(),
    ]
    .choose(rng)
    .unwrap_or(&0)
}

/// A valid message of `method`'s request type with hostile values.
fn lock_message(rng: &mut StdRng, method: &str, session_id: &str) -> Vec<u8> {
    let n = |rng: &mut StdRng| number(rng);
    let t = |rng: &mut StdRng| text(rng, session_id);
    match method {
        "OpenSession" => OpenSessionRequest {
            ttl_ms: n(rng),
            lock_delay_ms: n(rng),
            label: t(rng),
        }
        .encode_to_vec(),
        "KeepAlive" => KeepAliveRequest {
            session_id: t(rng),
            session_secret: t(rng),
        }
        .encode_to_vec(),
        "CloseSession" => CloseSessionRequest {
            session_id: t(rng),
            seq: n(rng),
            session_secret: t(rng),
        }
        .encode_to_vec(),
        "Acquire" => AcquireRequest {
            session_id: t(rng),
            seq: n(rng),
            name: t(rng),
            wait_ms: n(rng) % 3_000,
            leave_queue_on_timeout: rng.gen(),
            mode: rng.gen_range(-1..5),
            limit: rng.gen(),
            session_secret: t(rng),
        }
        .encode_to_vec(),
        "Release" => ReleaseRequest {
            session_id: t(rng),
            seq: n(rng),
            name: t(rng),
            session_secret: t(rng),
        }
        .encode_to_vec(),
        "GetLock" => GetLockRequest { name: t(rng) }.encode_to_vec(),
        "ListLocks" => ListLocksRequest {
            prefix: t(rng),
            limit: rng.gen(),
            page_token: t(rng),
        }
        .encode_to_vec(),
        "Watch" => WatchRequest {
            prefix: t(rng),
            from_index: n(rng),
        }
        .encode_to_vec(),
        _ => StatusRequest {}.encode_to_vec(),
    }
}

fn lock_body(rng: &mut StdRng, method: &str, session_id: &str) -> Vec<u8> {
    match rng.gen_range(0..4) {
        0 => mutate::random_bytes(rng),
        1 => {
            let mut body = lock_message(rng, method, session_id);
            let other = lock_message(rng, method, session_id);
            mutate::mutate(rng, &mut body, &other);
            body
        }
        _ => lock_message(rng, method, session_id),
    }
}

/// The bincode type a Raft method decodes.
fn raft_kind(method: &str) -> Decoded {
    match method {
        "AppendEntries" => Decoded::AppendEntriesRequest,
        "InstallSnapshot" => Decoded::InstallSnapshotRequest,
        "PreVote" => Decoded::PreVoteRequest,
        _ => Decoded::VoteRequest,
    }
}

fn raft_body(rng: &mut StdRng, method: &str) -> Vec<u8> {
    if rng.gen_ratio(1, 5) {
        let mut body = vec![NEVER_PROTOBUF];
        body.extend(mutate::random_bytes(rng));
        return body;
    }
    let kind = raft_kind(method);
    let data = match rng.gen_range(0..4) {
        0 => mutate::random_bytes(rng),
        1 => corpus::valid(kind, rng),
        _ => {
            let mut data = corpus::valid(kind, rng);
            let other = corpus::valid(kind, rng);
            mutate::mutate(rng, &mut data, &other);
            data
        }
    };
    RaftMessage {
        data: stale(kind, data).into(),
    }
    .encode_to_vec()
}

/// `data` unchanged if the node cannot decode it as `kind`; else the same
/// request from term 0, which the node refuses without acting on it.
pub fn stale(kind: Decoded, data: Vec<u8>) -> Vec<u8> {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    use openraft::Vote;
    let stale_vote = |v: Vote<u64>| Vote::new(0, v.leader_id().voted_for().unwrap_or(0));
    let rewritten = match kind {
        Decoded::AppendEntriesRequest => codec::decode::<AppendEntriesRequest<TypeConfig>>(&data)
            .ok()
            .map(|mut r| {
                r.vote = stale_vote(r.vote);
                codec::encode(&r)
            }),
        Decoded::InstallSnapshotRequest => {
            codec::decode::<InstallSnapshotRequest<TypeConfig>>(&data)
                .ok()
                .map(|mut r| {
                    r.vote = stale_vote(r.vote);
                    codec::encode(&r)
                })
        }
        Decoded::VoteRequest => codec::decode::<VoteRequest<u64>>(&data).ok().map(|mut r| {
            r.vote = stale_vote(r.vote);
            codec::encode(&r)
        }),
        // A pre-vote is only a question: answering it changes nothing.
        _ => None,
    };
    match rewritten {
        Some(Ok(bytes)) => bytes,
        Some(Err(_)) => Vec::new(),
        None => data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::raft::VoteRequest;
    use openraft::Vote;

    #[test]
    fn a_decodable_raft_request_is_sent_from_term_zero() {
        let request = VoteRequest::<u64> {
            vote: Vote::new(7, 2),
            last_log_id: None,
        };
        let bytes = codec::encode(&request).expect("encode");
        let sent: VoteRequest<u64> =
            codec::decode(&stale(Decoded::VoteRequest, bytes)).expect("decode");
        assert_eq!(sent.vote, Vote::new(0, 2));
        let garbage = vec![0xff; 5];
        assert_eq!(stale(Decoded::VoteRequest, garbage.clone()), garbage);
    }

    #[test]
    fn cluster_calls_never_carry_protobuf() {
        let mut rng = crate::seed::rng(9);
        for _ in 0..100 {
            let (_, body) = call(&mut rng, Service::Cluster, "s");
            assert!(RemoveMemberRequest::decode(body.as_slice()).is_err());
        }
    }
}
