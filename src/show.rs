//! `raftlock status` and `raftlock locks`: what the cluster looks like.

mod status;

use raftlock_client::Client;
use serde::Serialize;

use crate::exit;

pub use status::status;

#[derive(Serialize)]
struct LockRow {
    name: String,
    holder: Option<String>,
    session: Option<String>,
    token: Option<u64>,
    waiters: Vec<String>,
}

pub async fn locks(client: Client, prefix: String, limit: u32, json: bool) -> i32 {
    let (locks, truncated) = match client.list_locks(&prefix, limit).await {
        Ok(r) => r,
        Err(e) => return exit::unavailable(&e),
    };
    let rows: Vec<LockRow> = locks
        .into_iter()
        .map(|l| LockRow {
            name: l.name,
            holder: l.holder.as_ref().map(|h| h.label.clone()),
            session: l.holder.as_ref().map(|h| h.session_id.clone()),
            token: l.holder.as_ref().map(|h| h.fencing_token),
            waiters: l.waiters.into_iter().map(|w| w.label).collect(),
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializable")
        );
    } else {
        println!(
            "{:<30} {:<28} {:<32} {:>8}  WAITERS",
            "NAME", "HOLDER", "SESSION", "TOKEN"
        );
        for r in &rows {
            println!(
                "{:<30} {:<28} {:<32} {:>8}  {}",
                escape_controls(&r.name),
                r.holder.as_deref().map_or("-".into(), escape_controls),
                r.session.as_deref().map_or("-".into(), escape_controls),
                r.token.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                r.waiters.len()
            );
        }
        if truncated {
            println!("(cut at {limit}; use --limit or a prefix)");
        }
    }
    exit::OK
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
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("a\nb\tc\u{1b}[2J"), "a\\nb\\tc\\u{1b}[2J");
        assert_eq!(
            escape_controls("résultats/ü.h5 \\ x"),
            "résultats/ü.h5 \\ x"
        );
    }
}
