//! Roles, and the one table of which role each gRPC method needs.
//!
//! admin ⊇ lock ⊇ read. Raft's own RPCs are not for tokens at all: nodes
//! authorise each other with their certificates, so the table marks them
//! apart and the layer decides (by how it was built) whether to let them
//! through. Membership calls need their role proven by a certificate (a
//! node's, or an admin's client certificate), never by a token alone. A
//! path the table does not know is refused, never passed on.

use std::fmt;
use std::str::FromStr;

/// What a principal may do, in increasing order of power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Look: status, locks, watches.
    Read,
    /// Also hold locks: sessions, acquire, release.
    Lock,
    /// Also change the cluster's membership.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Lock, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Lock => "lock",
            Role::Admin => "admin",
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("unknown role {text:?} (read, lock or admin)"))
    }
}

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A principal with at least this role.
    Principal(Role),
    /// A principal with at least this role, proven by a certificate: a
    /// node's, or a client certificate naming the principal. A token is
    /// not enough (membership changes: a stolen token alone must not
    /// reshape the cluster).
    Certificate(Role),
    /// Another node (Raft RPCs), never a token.
    Peer,
}

const LOCK: &str = "raftlock.v1.Lock";
const CLUSTER: &str = "raftlock.v1.Cluster";
const RAFT: &str = "raftlock.raft.v1.Raft";
/// In the method column: every method of the service.
const ANY: &str = "*";

/// Service, method, who may call it. Keep in step with proto/*.proto and
/// the roles table in the docs.
const METHODS: &[(&str, &str, Access)] = &[
    (LOCK, "Status", Access::Principal(Role::Read)),
    (LOCK, "GetLock", Access::Principal(Role::Read)),
    (LOCK, "ListLocks", Access::Principal(Role::Read)),
    (LOCK, "Watch", Access::Principal(Role::Read)),
    (LOCK, "OpenSession", Access::Principal(Role::Lock)),
    (LOCK, "KeepAlive", Access::Principal(Role::Lock)),
    (LOCK, "CloseSession", Access::Principal(Role::Lock)),
    (LOCK, "Acquire", Access::Principal(Role::Lock)),
    (LOCK, "Release", Access::Principal(Role::Lock)),
    (CLUSTER, ANY, Access::Certificate(Role::Admin)),
    (RAFT, ANY, Access::Peer),
];

/// A gRPC method, as the table classified its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method<'a> {
    /// The method's own name ("Acquire"), for messages.
    pub name: &'a str,
    pub access: Access,
}

/// Who may call the method at `path` (`/package.Service/Method`), or
/// `None` for a path that names no method raftlock serves.
pub fn method(path: &str) -> Option<Method<'_>> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    METHODS
        .iter()
        .find(|(s, m, _)| *s == service && (*m == name || *m == ANY))
        .map(|&(_, _, access)| Method { name, access })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(path: &str) -> Option<Access> {
        method(path).map(|m| m.access)
    }

    #[test]
    fn roles_nest_and_parse() {
        assert!(Role::Admin.allows(Role::Lock) && Role::Admin.allows(Role::Read));
        assert!(Role::Lock.allows(Role::Read) && Role::Lock.allows(Role::Lock));
        assert!(!Role::Lock.allows(Role::Admin));
        assert!(!Role::Read.allows(Role::Lock));
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().unwrap_err().contains("\"root\""));
    }

    #[test]
    fn every_lock_method_needs_the_role_the_design_gives_it() {
        let read = Some(Access::Principal(Role::Read));
        let lock = Some(Access::Principal(Role::Lock));
        for name in ["Status", "GetLock", "ListLocks", "Watch"] {
            assert_eq!(access(&format!("/raftlock.v1.Lock/{name}")), read, "{name}");
        }
        for name in [
            "OpenSession",
            "KeepAlive",
            "CloseSession",
            "Acquire",
            "Release",
        ] {
            assert_eq!(access(&format!("/raftlock.v1.Lock/{name}")), lock, "{name}");
        }
        assert_eq!(access("/raftlock.v1.Lock/Frobnicate"), None);
    }

    #[test]
    fn cluster_is_admin_by_certificate_raft_is_peers_and_the_rest_is_unknown() {
        let admin = Some(Access::Certificate(Role::Admin));
        assert_eq!(access("/raftlock.v1.Cluster/AddLearner"), admin);
        assert_eq!(access("/raftlock.v1.Cluster/RemoveMember"), admin);
        assert_eq!(
            access("/raftlock.raft.v1.Raft/AppendEntries"),
            Some(Access::Peer)
        );
        assert_eq!(access("/raftlock.raft.v1.Raft/Vote"), Some(Access::Peer));
        for path in [
            "",
            "/",
            "/raftlock.v1.Lock",
            "/raftlock.v1.Lock/",
            "raftlock.v1.Lock/Acquire",
            "/raftlock.v1.Lock/Acquire/x",
            "/raftlock.v1.Cluster/",
            "/grpc.health.v1.Health/Check",
            "/raftlock.v1.lock/Acquire",
        ] {
            assert_eq!(access(path), None, "{path:?}");
        }
        assert_eq!(method("/raftlock.v1.Lock/Acquire").unwrap().name, "Acquire");
    }
}
