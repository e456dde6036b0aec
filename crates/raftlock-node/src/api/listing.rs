//! ListLocks in pages, and the prefix checks ListLocks and Watch share.
//!
//! No reply is unbounded: a page holds at most `--max-list-page` locks, and
//! says where the next one starts. The page token is the last name of the
//! page (clients treat it as opaque): the next page is the names after it,
//! read from the table as it is then, so a lock created or removed between
//! pages is listed or not, but no name still present is listed twice or
//! skipped.

use raftlock_core::{LockError, LockView, MAX_NAME_LEN};
use tonic::Status;

use crate::status::lock_refused;

/// A prefix no longer than a lock name (longer can match nothing anyway,
/// and is refused rather than scanned for).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), Status> {
    if prefix.len() > MAX_NAME_LEN {
        return Err(lock_refused(LockError::InvalidArgument(format!(
            "prefix is {} bytes, the limit is {MAX_NAME_LEN}",
            prefix.len()
        ))));
    }
    Ok(())
}

/// One ListLocks request, checked: where its page starts and how long it is.
#[derive(Debug, PartialEq)]
pub(crate) struct PageRequest {
    pub prefix: String,
    /// The name the page starts after; `None` for the first page.
    pub after: Option<String>,
    pub size: usize,
}

impl PageRequest {
    /// `limit` 0 or above `max_page` is `max_page`.
    pub fn new(
        prefix: String,
        limit: u32,
        page_token: String,
        max_page: usize,
    ) -> Result<Self, Status> {
        check_prefix(&prefix)?;
        let max_page = max_page.max(1);
        let size = match limit as usize {
            0 => max_page,
            n => n.min(max_page),
        };
        let after = match page_token {
            token if token.is_empty() => None,
            token if token.len() > MAX_NAME_LEN || !token.starts_with(&prefix) => {
                return Err(lock_refused(LockError::InvalidArgument(
                    "page_token is not one this prefix's listing returned".into(),
                )))
            }
            token => Some(token),
        };
        Ok(PageRequest {
            prefix,
            after,
            size,
        })
    }

    /// Reads the page from the table; one more lock than the page is read
    /// to know whether another page follows.
    pub fn read(&self, table: &raftlock_core::LockTable) -> Page {
        let mut views = match &self.after {
            None => table.locks(&self.prefix, self.size + 1),
            Some(after) => table.locks_after(&self.prefix, after, self.size + 1),
        };
        let more = views.len() > self.size;
        views.truncate(self.size);
        let next_page_token = match (more, views.last()) {
            (true, Some(last)) => last.name.clone(),
            _ => String::new(),
        };
        Page {
            views,
            next_page_token,
        }
    }
}

/// One page of locks, and the token of the next (empty if none).
pub(crate) struct Page {
    pub views: Vec<LockView>,
    pub next_page_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlock_core::{Command, LockTable, Proposal, SessionId};

    fn table_with(names: &[String]) -> LockTable {
        let mut table = LockTable::new();
        let session = SessionId(1);
        let mut commands = vec![Command::OpenSession {
            session,
            label: String::new(),
            ttl_ms: 60_000,
            lock_delay_ms: 0,
        }];
        for (seq, name) in names.iter().enumerate() {
            commands.push(Command::Acquire {
                session,
                seq: seq as u64 + 1,
                name: name.clone(),
                wait: false,
            });
        }
        table.apply(
            1,
            &Proposal {
                time_ms: 1,
                commands,
            },
        );
        table
    }

    #[test]
    fn pages_cover_every_name_under_the_prefix_once_in_order() {
        let mut names: Vec<String> = (0..250).map(|i| format!("a/{i:04}")).collect();
        names.extend(["a", "a0", "b/1", "a/"].map(String::from));
        let table = table_with(&names);
        let mut expected: Vec<&String> = names.iter().filter(|n| n.starts_with("a/")).collect();
        expected.sort();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = PageRequest::new("a/".into(), 7, token, 1000).unwrap();
            let page = page.read(&table);
            assert!(page.views.len() <= 7);
            seen.extend(page.views.into_iter().map(|v| v.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn page_sizes_are_capped_and_bad_tokens_and_prefixes_refused() {
        let request = |limit, token: &str| PageRequest::new("x/".into(), limit, token.into(), 50);
        assert_eq!(request(0, "").unwrap().size, 50);
        assert_eq!(request(10, "").unwrap().size, 10);
        assert_eq!(request(5000, "").unwrap().size, 50);
        assert_eq!(request(1, "x/a").unwrap().after.as_deref(), Some("x/a"));
        for status in [
            request(1, "y/a").unwrap_err(),
            PageRequest::new("p".repeat(MAX_NAME_LEN + 1), 1, String::new(), 50).unwrap_err(),
        ] {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
        assert!(check_prefix(&"p".repeat(MAX_NAME_LEN)).is_ok());
    }
}
