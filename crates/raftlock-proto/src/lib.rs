//! Generated protobuf and gRPC code for raftlock: the client API
//! (`raftlock.v1`) and the node-to-node Raft transport (`raftlock.raft.v1`).

// Generated code: its length is prost's and tonic's, not ours to split.
#[allow(clippy::too_many_lines)]
pub mod v1 {
    tonic::include_proto!("raftlock.v1");
}

#[allow(clippy::too_many_lines)]
pub mod raft {
    tonic::include_proto!("raftlock.raft.v1");
}

/// Metadata keys a follower sets when it redirects a client to the leader.
pub const LEADER_ID_HEADER: &str = "raftlock-leader-id";
pub const LEADER_ADDR_HEADER: &str = "raftlock-leader-addr";
/// Metadata key a client sets when it cannot reach the leader a follower
/// named: that follower then holds the call until another leader is
/// elected and redirects there, instead of naming the dead one again.
pub const UNREACHABLE_LEADER_HEADER: &str = "raftlock-unreachable-leader";
/// Metadata key naming the kind of refusal, for clients that map errors.
pub const ERROR_KIND_HEADER: &str = "raftlock-error";

/// Longest a queued `Acquire` long-polls before it answers "still queued"
/// (the caller then calls again with the wait that remains).
pub const MAX_POLL: std::time::Duration = std::time::Duration::from_secs(15);

/// The values of the [`ERROR_KIND_HEADER`] metadata: what kind of refusal
/// a status is, so clients need not parse messages. Both sides use this
/// one list; docs/protocol.md has the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    SeqReused,
    SessionExpired,
    SessionExists,
    NotHolder,
    NotHeld,
    StaleRequest,
    NoLeader,
    /// The name is in use in another mode (or semaphore limit), or this
    /// session already holds or waits for it in another mode.
    ModeConflict,
    /// The caller is not the one that opened the session, or did not send
    /// the session's secret.
    NotSessionOwner,
    /// A quota (or a server limit) is reached: the message names it and
    /// the flag that raises it. Retrying later may succeed.
    QuotaExceeded,
    /// The node is momentarily too busy (a bounded internal queue is
    /// full): retry after a backoff, here or on another node.
    Overloaded,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::InvalidArgument,
        ErrorKind::SeqReused,
        ErrorKind::SessionExpired,
        ErrorKind::SessionExists,
        ErrorKind::NotHolder,
        ErrorKind::NotHeld,
        ErrorKind::StaleRequest,
        ErrorKind::NoLeader,
        ErrorKind::ModeConflict,
        ErrorKind::NotSessionOwner,
        ErrorKind::QuotaExceeded,
        ErrorKind::Overloaded,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::SeqReused => "seq-reused",
            ErrorKind::SessionExpired => "session-expired",
            ErrorKind::SessionExists => "session-exists",
            ErrorKind::NotHolder => "not-holder",
            ErrorKind::NotHeld => "not-held",
            ErrorKind::StaleRequest => "stale-request",
            ErrorKind::NoLeader => "no-leader",
            ErrorKind::ModeConflict => "mode-conflict",
            ErrorKind::NotSessionOwner => "not-session-owner",
            ErrorKind::QuotaExceeded => "quota-exceeded",
            ErrorKind::Overloaded => "overloaded",
        }
    }

    /// The kind a status carries, if any this version knows.
    pub fn of(status: &tonic::Status) -> Option<ErrorKind> {
        let value = status.metadata().get(ERROR_KIND_HEADER)?.to_str().ok()?;
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// A status with this kind in its metadata.
    pub fn status(self, code: tonic::Code, message: impl Into<String>) -> tonic::Status {
        let mut status = tonic::Status::new(code, message);
        status.metadata_mut().insert(
            ERROR_KIND_HEADER,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
        status
    }
}

impl v1::Role {
    /// The lowercase word people read: `leader`, `follower`, `candidate`,
    /// `learner`, `shutdown` (or `unknown` for a value this version lacks).
    pub fn label(self) -> &'static str {
        match self {
            v1::Role::Leader => "leader",
            v1::Role::Follower => "follower",
            v1::Role::Candidate => "candidate",
            v1::Role::Learner => "learner",
            v1::Role::Shutdown => "shutdown",
            v1::Role::Unspecified => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_a_status() {
        for kind in ErrorKind::ALL {
            let status = kind.status(tonic::Code::Unavailable, "x");
            assert_eq!(ErrorKind::of(&status), Some(kind));
        }
        assert_eq!(ErrorKind::of(&tonic::Status::internal("x")), None);
    }
}
