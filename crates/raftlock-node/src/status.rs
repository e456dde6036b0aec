//! Every refusal a node sends to a client, as a gRPC `Status`: the code,
//! the message, and the metadata clients act on (the `ErrorKind` of a lock
//! refusal, the leader a follower redirects to). The layers below return
//! their own errors; only the services call in here, so the wire mapping
//! lives in this one place. (The Raft transport between nodes, which no
//! client sees, reports its own few transport errors in `network`.)

use raftlock_core::{LockError, Outcome};
use raftlock_proto::{ErrorKind, LEADER_ADDR_HEADER, LEADER_ID_HEADER};
use tonic::{Code, Status};

use crate::admin::MembershipRefused;
use crate::caller::Caller;
use crate::raft_calls::NotServed;

/// A refusal by the lock table (or by the same validation, run before
/// proposing), tagged with its kind for clients.
pub(crate) fn lock_refused(e: LockError) -> Status {
    let (code, kind) = match &e {
        LockError::InvalidName(_)
        | LockError::InvalidArgument(_)
        | LockError::InvalidSession(_) => (Code::InvalidArgument, ErrorKind::InvalidArgument),
        LockError::SeqReused { .. } => (Code::InvalidArgument, ErrorKind::SeqReused),
        LockError::UnknownSession(_) => (Code::NotFound, ErrorKind::SessionExpired),
        LockError::SessionExists(_) => (Code::AlreadyExists, ErrorKind::SessionExists),
        LockError::NotHolder { .. } => (Code::PermissionDenied, ErrorKind::NotHolder),
        LockError::NotHeld { .. } => (Code::FailedPrecondition, ErrorKind::NotHeld),
        LockError::StaleRequest { .. } => (Code::FailedPrecondition, ErrorKind::StaleRequest),
        LockError::ModeConflict { .. } | LockError::OwnModeConflict { .. } => {
            (Code::FailedPrecondition, ErrorKind::ModeConflict)
        }
        LockError::NotSessionOwner { .. } => (Code::PermissionDenied, ErrorKind::NotSessionOwner),
        LockError::QuotaExceeded { .. } => (Code::ResourceExhausted, ErrorKind::QuotaExceeded),
    };
    kind.status(code, e.to_string())
}

/// The caller's principal may not use this lock name (its prefixes do
/// not cover it).
pub(crate) fn name_not_allowed(caller: &Caller, name: &str) -> Status {
    Status::permission_denied(format!(
        "{} may not use lock name {name:?}",
        caller.describe()
    ))
}

/// The state machine answered a command with an outcome of another kind:
/// a bug, not something a client can fix.
pub(crate) fn unexpected(outcome: Outcome) -> Status {
    Status::internal(format!("unexpected state machine answer {outcome:?}"))
}

/// A waiting call ended because the node is stopping: retry elsewhere.
pub(crate) fn shutting_down() -> Status {
    Status::unavailable("node is shutting down")
}

impl From<NotServed> for Status {
    /// UNAVAILABLE either way, so clients retry; a redirect names the leader.
    /// A full queue is RESOURCE_EXHAUSTED, kind `overloaded`: retry later.
    fn from(e: NotServed) -> Status {
        match e {
            NotServed::NotLeader(Some((id, addr))) => {
                let mut status = Status::unavailable(format!(
                    "not the leader; the leader is node {id} at {addr}"
                ));
                let meta = status.metadata_mut();
                if let Ok(v) = id.to_string().parse() {
                    meta.insert(LEADER_ID_HEADER, v);
                }
                if let Ok(v) = addr.parse() {
                    meta.insert(LEADER_ADDR_HEADER, v);
                }
                status
            }
            NotServed::NotLeader(None) => ErrorKind::NoLeader.status(
                Code::Unavailable,
                "not the leader, and no leader is known yet (election in progress?)",
            ),
            NotServed::Unavailable(why) => Status::unavailable(format!("cannot serve: {why}")),
            NotServed::Overloaded(full) => {
                ErrorKind::Overloaded.status(Code::ResourceExhausted, full.to_string())
            }
        }
    }
}

impl From<MembershipRefused> for Status {
    fn from(e: MembershipRefused) -> Status {
        let code = match &e {
            MembershipRefused::BadLearner => Code::InvalidArgument,
            MembershipRefused::NotAMember(_) => Code::NotFound,
            MembershipRefused::MemberElsewhere { .. }
            | MembershipRefused::PromoteUnknown(_)
            | MembershipRefused::TooFewVoters { .. }
            | MembershipRefused::NoWorkingMajority { .. } => Code::FailedPrecondition,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_names_the_leader_in_metadata() {
        let status = Status::from(NotServed::NotLeader(Some((2, "10.0.0.2:7900".into()))));
        assert_eq!(status.code(), Code::Unavailable);
        let meta = status.metadata();
        assert_eq!(meta.get(LEADER_ID_HEADER).unwrap(), "2");
        assert_eq!(meta.get(LEADER_ADDR_HEADER).unwrap(), "10.0.0.2:7900");
    }

    #[test]
    fn a_caller_without_the_secret_is_denied_by_kind() {
        let refusal = LockError::NotSessionOwner {
            session: raftlock_core::SessionId(0xab),
            request: "release \"db\"".into(),
        };
        let status = lock_refused(refusal);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(ErrorKind::of(&status), Some(ErrorKind::NotSessionOwner));
        assert_eq!(
            status.message(),
            "session 000000000000000000000000000000ab belongs to another caller: \
             release \"db\" needs the session's secret"
        );
        let caller = Caller {
            principal: "alice".into(),
            prefixes: Some(vec!["alice/".into()]),
        };
        let status = name_not_allowed(&caller, "bob/x");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "principal \"alice\" may not use lock name \"bob/x\""
        );
    }

    #[test]
    fn membership_refusals_keep_their_codes() {
        let status = Status::from(MembershipRefused::NotAMember(4));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "node 4 is not a member");
        let status = Status::from(MembershipRefused::TooFewVoters {
            id: 2,
            remaining: 1,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "removing node 2 leaves 1 voter(s): a single node is no longer a replicated \
             cluster (use --force if you mean it)"
        );
    }
}
