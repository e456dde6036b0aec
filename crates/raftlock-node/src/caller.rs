//! Who is calling: the principal the authentication layer found for a
//! request, and the lock names it may use.
//!
//! The layer in front of the services puts a [`Caller`] into each
//! request's extensions; the services read it with [`Caller::of`]. A node
//! without authentication (`--insecure`) has no layer, and every request
//! comes from [`Caller::anonymous`], which may use any name.

use tonic::Request;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The principal's name; "" for the anonymous caller of an
    /// unauthenticated node. Sessions are bound to it.
    pub principal: String,
    /// The lock-name prefixes this principal may lock, or `None` for all.
    pub prefixes: Option<Vec<String>>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            principal: String::new(),
            prefixes: None,
        }
    }

    /// The caller of `request`, as the authentication layer recorded it.
    pub fn of<T>(request: &Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::anonymous)
    }

    /// Whether this caller may lock (or release, or wait for) `name`.
    pub fn may_use(&self, name: &str) -> bool {
        match &self.prefixes {
            None => true,
            Some(prefixes) => prefixes.iter().any(|p| name.starts_with(p.as_str())),
        }
    }

    /// How to name this caller in an error message.
    pub fn describe(&self) -> String {
        if self.principal.is_empty() {
            "the anonymous caller".into()
        } else {
            format!("principal {:?}", self.principal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_limit_names_and_none_allows_all() {
        let alice = Caller {
            principal: "alice".into(),
            prefixes: Some(vec!["alice/".into(), "shared/".into()]),
        };
        assert!(alice.may_use("alice/x"));
        assert!(alice.may_use("shared/gpu"));
        assert!(!alice.may_use("bob/x"));
        assert!(!alice.may_use("alice"));
        assert!(Caller::anonymous().may_use("anything"));
        assert_eq!(alice.describe(), "principal \"alice\"");
    }
}
