//! Authentication: who a request comes from, and whether their role lets
//! them call its method.
//!
//! Clients are principals listed in an auth file (`--auth-file`, TOML),
//! each with a role (read ⊆ lock ⊆ admin), optional lock-name prefixes,
//! and the SHA-256 of its bearer token; a principal may also be allowed
//! to present a client certificate instead. The node keeps the file in an
//! [`AuthStore`] (reread on SIGHUP: [`spawn_reload_on_sighup`]) and puts
//! an [`AuthLayer`] in front of its gRPC services, which records each
//! admitted request's principal as its `Caller`.
//!
//! - `token`: making tokens, and hashing them (all that is ever kept).
//! - `role`: roles, and the table of the role each method needs.
//! - `file`: the file on disk: read (refused if others can read it), write.
//! - `table`: the file checked and indexed by token hash and by name.
//! - `store`: the current table, and its reload.
//! - `layer`: the tower layer itself.

mod file;
mod layer;
mod role;
mod store;
mod table;
pub mod token;

#[cfg(test)]
mod grpc_tests;

pub use file::{AuthFile, AuthFileError, PrincipalEntry};
pub use layer::{node_principal, AuthLayer, AuthService, ClientCertIdentity, NodeCertIdentity};
pub use role::Role;
pub use store::{spawn_reload_on_sighup, AuthStore};
pub use table::{check_name, Invalid, CLIENT_CERT_PREFIX};
