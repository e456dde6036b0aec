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

pub async fn locks(endpoints: &[String], prefix: &str, limit: u32, json: bool) -> i32 {
    let client = match Client::new(endpoints.iter().cloned()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftlock: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let (locks, truncated) = match client.list_locks(prefix, limit).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftlock: {e}");
            return exit::UNAVAILABLE;
        }
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
                r.name,
                r.holder.as_deref().unwrap_or("-"),
                r.session.as_deref().unwrap_or("-"),
                r.token.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                r.waiters.len()
            );
        }
        if truncated {
            println!("(cut at {limit}; use --limit or a prefix)");
        }
    }
    0
}

