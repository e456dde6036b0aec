//! The checked auth file, as requests are checked against it: principals
//! by token hash and by client-certificate name.
//!
//! Building the table is also where a file's values are validated, so a
//! file the CLI saves and a file a node loads obey the same rules.

use std::collections::HashMap;
use std::sync::Arc;

use super::file::AuthFile;
use super::role::Role;
use super::token::{self, TokenHash};

/// What a client certificate's identity (its URI name) starts with; the
/// principal's name follows.
pub const CLIENT_CERT_PREFIX: &str = "raftlock://client/";

/// Longest principal name: it appears in certificates and messages.
const MAX_NAME_LEN: usize = 64;

/// One principal, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub prefixes: Option<Vec<String>>,
    pub client_cert: bool,
}

/// What is wrong with an auth file: the principal, and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("principal {name:?}: {problem}")]
pub struct Invalid {
    pub name: String,
    pub problem: String,
}

#[derive(Default)]
pub struct AuthTable {
    by_token: HashMap<TokenHash, Arc<Principal>>,
    by_cert_name: HashMap<String, Arc<Principal>>,
    by_name: HashMap<String, Arc<Principal>>,
    len: usize,
}

impl AuthTable {
    /// Checks every principal of `file`: a well-formed unique name, a
    /// known role, a 64-hex-digit hash no other principal has, no empty
    /// prefix.
    pub fn new(file: &AuthFile) -> Result<AuthTable, Invalid> {
        let mut table = AuthTable::default();
        let mut names: HashMap<&str, ()> = HashMap::new();
        for entry in &file.principals {
            let invalid = |problem: String| Invalid {
                name: entry.name.clone(),
                problem,
            };
            check_name(&entry.name).map_err(invalid)?;
            if names.insert(&entry.name, ()).is_some() {
                return Err(invalid("duplicate name".into()));
            }
            let role = entry.role.parse::<Role>().map_err(invalid)?;
            let hash = token::parse_hex(&entry.token_sha256).ok_or_else(|| {
                invalid("token_sha256 is not 64 hex digits (the SHA-256 of the token)".into())
            })?;
            if let Some(prefixes) = &entry.prefixes {
                if prefixes.iter().any(String::is_empty) {
                    return Err(invalid(
                        "empty prefix (it would allow every name: leave prefixes out for that)"
                            .into(),
                    ));
                }
            }
            let principal = Arc::new(Principal {
                name: entry.name.clone(),
                role,
                prefixes: entry.prefixes.clone(),
                client_cert: entry.client_cert,
            });
            if let Some(other) = table.by_token.insert(hash, principal.clone()) {
                return Err(invalid(format!(
                    "same token_sha256 as principal {:?}",
                    other.name
                )));
            }
            if principal.client_cert {
                table
                    .by_cert_name
                    .insert(principal.name.clone(), principal.clone());
            }
            table.by_name.insert(principal.name.clone(), principal);
            table.len += 1;
        }
        Ok(table)
    }

    /// The principal whose token this is. The token is hashed and
    /// dropped by the caller: only its hash is looked up.
    pub fn by_token(&self, token: &str) -> Option<&Arc<Principal>> {
        self.by_token.get(&token::hash(token))
    }

    /// The principal a client certificate with this identity
    /// (`raftlock://client/<name>`) stands for, if that principal accepts
    /// certificates.
    pub fn by_client_cert(&self, identity: &str) -> Option<&Arc<Principal>> {
        let name = identity.strip_prefix(CLIENT_CERT_PREFIX)?;
        self.by_cert_name.get(name)
    }

    /// The principal a client certificate with this identity
    /// (`raftlock://client/<name>`) names, whether or not it accepts
    /// certificates in place of a token: for calls where a certificate is
    /// required, so the certificate is the credential itself.
    pub fn by_cert_identity(&self, identity: &str) -> Option<&Arc<Principal>> {
        let name = identity.strip_prefix(CLIENT_CERT_PREFIX)?;
        self.by_name.get(name)
    }

    /// How many principals there are.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// Only the count: the table's keys are token hashes, which have no place
/// in a log line.
impl std::fmt::Debug for AuthTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthTable")
            .field("principals", &self.len)
            .finish_non_exhaustive()
    }
}

/// Names go into certificate URIs and messages: letters, digits and a few
/// punctuation marks, nothing that needs quoting.
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(format!(
            "name must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_', '-' or '@'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::file::PrincipalEntry;

    fn entry(name: &str, role: &str, token: &str) -> PrincipalEntry {
        PrincipalEntry {
            name: name.into(),
            role: role.into(),
            token_sha256: token::hash_hex(token),
            prefixes: None,
            client_cert: false,
        }
    }

    fn file(entries: Vec<PrincipalEntry>) -> AuthFile {
        AuthFile {
            principals: entries,
        }
    }

    fn problem(entries: Vec<PrincipalEntry>) -> Invalid {
        AuthTable::new(&file(entries)).unwrap_err()
    }

    #[test]
    fn tokens_find_their_principal_and_nothing_else_does() {
        let mut alice = entry("alice", "lock", "rlt_alice");
        alice.prefixes = Some(vec!["alice/".into()]);
        let table = AuthTable::new(&file(vec![alice, entry("ops", "admin", "rlt_ops")])).unwrap();
        assert_eq!(table.len(), 2);
        let found = table.by_token("rlt_alice").unwrap();
        assert_eq!(found.name, "alice");
        assert_eq!(found.role, Role::Lock);
        assert_eq!(found.prefixes.as_deref().unwrap(), ["alice/"]);
        assert_eq!(table.by_token("rlt_ops").unwrap().role, Role::Admin);
        assert!(table.by_token("rlt_alice ").is_none());
        assert!(table.by_token("").is_none());
        // The hash itself is not a token.
        assert!(table.by_token(&token::hash_hex("rlt_alice")).is_none());
    }

    #[test]
    fn a_certificate_names_a_principal_only_if_it_accepts_certificates() {
        let mut alice = entry("alice", "lock", "a");
        alice.client_cert = true;
        let table = AuthTable::new(&file(vec![alice, entry("bob", "lock", "b")])).unwrap();
        assert_eq!(
            table
                .by_client_cert("raftlock://client/alice")
                .unwrap()
                .name,
            "alice"
        );
        assert!(table.by_client_cert("raftlock://client/bob").is_none());
        assert!(table.by_client_cert("raftlock://node/alice").is_none());
        assert!(table.by_client_cert("alice").is_none());
        assert!(table.by_client_cert("raftlock://client/").is_none());
    }

    #[test]
    fn a_required_certificate_names_any_listed_principal() {
        let mut alice = entry("alice", "lock", "a");
        alice.client_cert = true;
        let table = AuthTable::new(&file(vec![alice, entry("bob", "admin", "b")])).unwrap();
        let named = |identity: &str| table.by_cert_identity(identity).map(|p| p.name.clone());
        assert_eq!(named("raftlock://client/alice").as_deref(), Some("alice"));
        assert_eq!(named("raftlock://client/bob").as_deref(), Some("bob"));
        for nobody in [
            "raftlock://client/carol",
            "raftlock://node/bob",
            "bob",
            "raftlock://client/",
        ] {
            assert_eq!(named(nobody), None, "{nobody}");
        }
    }

    #[test]
    fn each_problem_names_the_principal_and_what_is_wrong() {
        let dup = problem(vec![entry("bob", "read", "1"), entry("bob", "lock", "2")]);
        assert_eq!(dup.name, "bob");
        assert_eq!(dup.problem, "duplicate name");

        let same_hash = problem(vec![entry("bob", "read", "1"), entry("carol", "read", "1")]);
        assert_eq!(same_hash.name, "carol");
        assert!(same_hash.problem.contains("\"bob\""), "{same_hash}");

        let role = problem(vec![entry("bob", "root", "1")]);
        assert!(role
            .to_string()
            .starts_with("principal \"bob\": unknown role \"root\""));

        let mut bad_hex = entry("bob", "read", "1");
        bad_hex.token_sha256 = "xyz".into();
        assert!(problem(vec![bad_hex]).problem.contains("64 hex digits"));

        let mut empty_prefix = entry("bob", "read", "1");
        empty_prefix.prefixes = Some(vec!["bob/".into(), String::new()]);
        assert!(problem(vec![empty_prefix]).problem.contains("empty prefix"));

        for name in ["", "a b", "a/b", "ünï", &"x".repeat(65)] {
            let bad = problem(vec![entry(name, "read", "1")]);
            assert!(bad.problem.starts_with("name must be"), "{name:?}: {bad}");
        }
        assert!(check_name("ci-runner_2@build.example").is_ok());
    }

    #[test]
    fn an_empty_file_is_an_empty_table() {
        let table = AuthTable::new(&AuthFile::default()).unwrap();
        assert_eq!(table.len(), 0);
        assert_eq!(format!("{table:?}"), "AuthTable { principals: 0, .. }");
    }
}
