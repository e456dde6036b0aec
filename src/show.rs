//! `raftlock status` and `raftlock locks`: what the cluster looks like.

mod quotas;
mod status;

use raftlock_client::{mode_from_wire, Client, LockInfo};
use serde::Serialize;

use crate::exit;

pub use status::status;

/// One lock in `raftlock locks --json`. `holder`, `session` and `token`
/// are the first holder's (the only one of an exclusive lock) and
/// `waiters` the waiters' labels, as before modes existed; `holders` and
/// `queue` have every holder and waiter with its mode.
#[derive(Serialize)]
struct LockRow {
    name: String,
    holder: Option<String>,
    session: Option<String>,
    token: Option<u64>,
    waiters: Vec<String>,
    /// "exclusive", "shared" or "semaphore" (the first holder's), or
    /// None when nobody holds it.
    mode: Option<String>,
    /// A semaphore's limit, else None.
    limit: Option<u32>,
    holders: Vec<HolderRow>,
    queue: Vec<WaiterRow>,
}

#[derive(Serialize)]
struct HolderRow {
    label: String,
    session: String,
    token: u64,
    mode: String,
    since_ms: u64,
}

#[derive(Serialize)]
struct WaiterRow {
    label: String,
    session: String,
    mode: String,
}

/// A mode's one-word name; a mode this version does not know says so.
fn mode_name(mode: i32, limit: u32) -> String {
    match mode_from_wire(mode, limit) {
        Some(raftlock_client::LockMode::Exclusive) => "exclusive".into(),
        Some(raftlock_client::LockMode::Shared) => "shared".into(),
        Some(raftlock_client::LockMode::Semaphore { .. }) => "semaphore".into(),
        None => format!("unknown({mode})"),
    }
}

impl LockRow {
    fn new(lock: LockInfo) -> LockRow {
        let limit = lock.limit;
        // A server without modes sends only `holder`.
        let holders = if lock.holders.is_empty() {
            lock.holder.into_iter().collect()
        } else {
            lock.holders
        };
        let holders: Vec<HolderRow> = holders
            .into_iter()
            .map(|h| HolderRow {
                mode: mode_name(h.mode, limit),
                label: h.label,
                session: h.session_id,
                token: h.fencing_token,
                since_ms: h.since_ms,
            })
            .collect();
        let queue: Vec<WaiterRow> = lock
            .waiters
            .into_iter()
            .map(|w| WaiterRow {
                mode: mode_name(w.mode, limit),
                label: w.label,
                session: w.session_id,
            })
            .collect();
        let first = holders.first();
        LockRow {
            name: lock.name,
            holder: first.map(|h| h.label.clone()),
            session: first.map(|h| h.session.clone()),
            token: first.map(|h| h.token),
            waiters: queue.iter().map(|w| w.label.clone()).collect(),
            mode: first.map(|h| h.mode.clone()),
            limit: (limit > 0).then_some(limit),
            holders,
            queue,
        }
    }

    /// The MODE column: a semaphore also shows holders out of its limit.
    fn mode_column(&self, holder: Option<&HolderRow>) -> String {
        match (holder, self.limit) {
            (None, _) => "-".into(),
            (Some(h), Some(limit)) => format!("{}:{}/{limit}", h.mode, self.holders.len()),
            (Some(h), None) => h.mode.clone(),
        }
    }

    /// The WAITERS column: how many, and their modes in queue order.
    fn waiters_column(&self) -> String {
        if self.queue.is_empty() {
            return "0".into();
        }
        let modes: Vec<&str> = self.queue.iter().map(|w| w.mode.as_str()).collect();
        format!("{} ({})", self.queue.len(), modes.join(" "))
    }
}

/// Lists the locks under `prefix`, at most `limit` (0: all), page by
/// page: the table is printed as pages arrive, so a listing of any size
/// needs one page's memory (JSON, one array, is printed at the end).
pub async fn locks(client: Client, prefix: String, limit: u32, json: bool) -> i32 {
    let mut listing = Listing {
        client,
        prefix,
        left: (limit > 0).then_some(limit),
        token: None,
        done: false,
    };
    let mut rows = Vec::new();
    let mut header = !json;
    while let Some(page) = listing.next_page().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => return exit::unavailable(&e),
        };
        let page = page.into_iter().map(LockRow::new);
        if json {
            rows.extend(page);
            continue;
        }
        if std::mem::take(&mut header) {
            print_header();
        }
        page.for_each(|r| print_rows(&r));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializable")
        );
        return exit::OK;
    }
    if header {
        print_header();
    }
    if listing.cut() {
        println!("(cut at {limit}; use --limit or a prefix)");
    }
    exit::OK
}

/// Where a paged listing is.
struct Listing {
    client: Client,
    prefix: String,
    /// Locks still wanted; `None`: all.
    left: Option<u32>,
    /// The page to read next; `None` before the first.
    token: Option<String>,
    done: bool,
}

impl Listing {
    /// The next page, or `None` once every page (or `limit` locks) is read.
    async fn next_page(&mut self) -> Option<Result<Vec<LockInfo>, raftlock_client::Error>> {
        if self.done || self.left == Some(0) {
            return None;
        }
        // 0: the server's largest page.
        let size = self.left.unwrap_or(0);
        let page = self
            .client
            .list_locks_page(&self.prefix, size, self.token.as_deref())
            .await;
        let (locks, next) = match page {
            Ok(page) => page,
            Err(e) => return Some(Err(e)),
        };
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(locks.len() as u32);
        }
        // A page that brings nothing cannot move the listing on.
        self.done = next.is_none() || locks.is_empty();
        self.token = next;
        Some(Ok(locks))
    }

    /// Whether `limit` stopped the listing with locks left.
    fn cut(&self) -> bool {
        self.left == Some(0) && self.token.is_some()
    }
}

fn print_header() {
    println!(
        "{:<30} {:<16} {:<28} {:<32} {:>8}  WAITERS",
        "NAME", "MODE", "HOLDER", "SESSION", "TOKEN"
    );
}

/// One table line per holder (one for a lock nobody holds), each with
/// the lock's name so the lines can be filtered on their own.
fn print_rows(row: &LockRow) {
    let name = escape_controls(&row.name);
    let waiters = row.waiters_column();
    let holders: Vec<Option<&HolderRow>> = if row.holders.is_empty() {
        vec![None]
    } else {
        row.holders.iter().map(Some).collect()
    };
    for holder in holders {
        println!(
            "{:<30} {:<16} {:<28} {:<32} {:>8}  {}",
            name,
            row.mode_column(holder),
            holder.map_or("-".into(), |h| escape_controls(&h.label)),
            holder.map_or("-".into(), |h| escape_controls(&h.session)),
            holder.map_or("-".into(), |h| h.token.to_string()),
            waiters
        );
    }
}

/// `text` with control characters written as escapes (`\n`, `\u{1b}`), so
/// a name or label cannot break a table row or drive the terminal. JSON
/// output keeps the exact text.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlock_client::{LockHolder, Waiter};

    fn holder(label: &str, token: u64, mode: i32) -> LockHolder {
        LockHolder {
            session_id: format!("s-{label}"),
            label: label.into(),
            fencing_token: token,
            since_ms: 1,
            mode,
        }
    }

    #[test]
    fn every_holder_and_waiter_is_shown_with_its_mode() {
        let a = holder("a", 7, 1);
        let lock = LockInfo {
            name: "db".into(),
            holder: Some(a.clone()),
            holders: vec![a, holder("b", 9, 1)],
            waiters: vec![Waiter {
                session_id: "s-w".into(),
                label: "w".into(),
                mode: 0,
            }],
            available_at_ms: 0,
            limit: 0,
        };
        let row = LockRow::new(lock);
        assert_eq!(
            (row.holder.as_deref(), row.token, row.mode.as_deref()),
            (Some("a"), Some(7), Some("shared"))
        );
        assert_eq!(row.holders.len(), 2);
        assert_eq!(
            (row.holders[1].label.as_str(), row.holders[1].token),
            ("b", 9)
        );
        assert_eq!(row.waiters, ["w"]);
        assert_eq!(row.queue[0].mode, "exclusive");
        assert_eq!(row.limit, None);
        assert_eq!(row.mode_column(row.holders.first()), "shared");
        assert_eq!(row.waiters_column(), "1 (exclusive)");
    }

    #[test]
    fn a_semaphore_shows_its_limit_and_an_old_server_its_one_holder() {
        let lock = LockInfo {
            name: "pool".into(),
            holders: vec![holder("a", 3, 2), holder("b", 4, 2)],
            limit: 3,
            ..LockInfo::default()
        };
        let row = LockRow::new(lock);
        assert_eq!(row.limit, Some(3));
        assert_eq!(row.mode_column(row.holders.first()), "semaphore:2/3");
        assert_eq!(row.waiters_column(), "0");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["holders"][1]["mode"], "semaphore");
        assert_eq!(json["limit"], 3);

        let old = LockInfo {
            name: "x".into(),
            holder: Some(holder("a", 5, 0)),
            ..LockInfo::default()
        };
        let row = LockRow::new(old);
        assert_eq!(row.holders.len(), 1);
        assert_eq!(row.mode.as_deref(), Some("exclusive"));
        assert_eq!(mode_name(42, 0), "unknown(42)");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("a\nb\tc\u{1b}[2J"), "a\\nb\\tc\\u{1b}[2J");
        assert_eq!(
            escape_controls("résultats/ü.h5 \\ x"),
            "résultats/ü.h5 \\ x"
        );
    }
}
