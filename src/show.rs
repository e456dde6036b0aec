//! `raftlock status` and `raftlock locks`: what the cluster looks like.

use std::collections::BTreeMap;
use std::time::Duration;

use raftlock_client::{Client, StatusResponse};
use serde::Serialize;

use crate::exit;

#[derive(Serialize)]
struct MemberStatus {
    id: u64,
    addr: String,
    reachable: bool,
    role: String,
    term: u64,
    last_applied: u64,
    /// Entries behind the leader's log (applied index vs leader's last index).
    lag: Option<u64>,
    snapshot_index: u64,
    uptime_ms: u64,
    version: String,
    voter: bool,
}

#[derive(Serialize)]
struct ClusterStatus {
    leader: Option<u64>,
    /// A majority of the voters answered.
    quorum: bool,
    members: Vec<MemberStatus>,
}

/// Asks every endpoint and every member it learns of, directly. Exits 1
/// if no leader is known or fewer than a majority of the voters answer, so
/// scripts (and the container health check) can use it.
pub async fn status(endpoints: &[String], json: bool) -> i32 {
    let client = match Client::new(endpoints.iter().cloned()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftlock: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let timeout = Duration::from_secs(1);
    let asked = futures_join(&client, endpoints, timeout).await;
    let mut by_id: BTreeMap<u64, StatusResponse> = BTreeMap::new();
    for st in asked.into_iter().flatten() {
        by_id.insert(st.id, st);
    }
    // Members we were not told about in --endpoints: ask them at their own address.
    let members: BTreeMap<u64, (String, bool)> = by_id
        .values()
        .max_by_key(|s| (s.role == "leader", s.term, s.last_applied))
        .map(|s| {
            s.members
                .iter()
                .map(|m| (m.id, (m.addr.clone(), m.voter)))
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<String> = members
        .iter()
        .filter(|(id, _)| !by_id.contains_key(id))
        .map(|(_, (addr, _))| addr.clone())
        .collect();
    for st in futures_join(&client, &missing, timeout)
        .await
        .into_iter()
        .flatten()
    {
        by_id.insert(st.id, st);
    }
    let leader = by_id
        .values()
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term)
        .map(|s| s.id);
    let leader_last = leader.and_then(|l| by_id.get(&l)).map(|s| s.last_log_index);
    let mut ids: Vec<u64> = members.keys().copied().collect();
    ids.extend(by_id.keys().filter(|id| !members.contains_key(id)));
    let voters: Vec<u64> = members
        .iter()
        .filter(|(_, m)| m.1)
        .map(|(id, _)| *id)
        .collect();
    let answering = voters.iter().filter(|v| by_id.contains_key(v)).count();
    let report = ClusterStatus {
        leader,
        quorum: !voters.is_empty() && answering * 2 > voters.len(),
        members: ids
            .into_iter()
            .map(|id| match by_id.get(&id) {
                Some(s) => MemberStatus {
                    id,
                    addr: members
                        .get(&id)
                        .map(|m| m.0.clone())
                        .unwrap_or_else(|| s.addr.clone()),
                    reachable: true,
                    role: s.role.clone(),
                    term: s.term,
                    last_applied: s.last_applied,
                    lag: leader_last.map(|last| last.saturating_sub(s.last_applied)),
                    snapshot_index: s.snapshot_index,
                    uptime_ms: s.uptime_ms,
                    version: s.version.clone(),
                    voter: members.get(&id).is_some_and(|m| m.1),
                },
                None => MemberStatus {
                    id,
                    addr: members.get(&id).map(|m| m.0.clone()).unwrap_or_default(),
                    reachable: false,
                    role: "unreachable".into(),
                    term: 0,
                    last_applied: 0,
                    lag: None,
                    snapshot_index: 0,
                    uptime_ms: 0,
                    version: String::new(),
                    voter: members.get(&id).is_some_and(|m| m.1),
                },
            })
            .collect(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        println!(
            "{:<4} {:<22} {:<11} {:>5} {:>10} {:>7} {:>10} {:>9}  {:<8} REACHABLE",
            "ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "LAG", "SNAPSHOT", "UPTIME", "VERSION"
        );
        for m in &report.members {
            let lag = m.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
            let uptime = if m.reachable {
                format!("{}s", m.uptime_ms / 1000)
            } else {
                "-".into()
            };
            println!(
                "{:<4} {:<22} {:<11} {:>5} {:>10} {:>7} {:>10} {:>9}  {:<8} {}",
                m.id,
                m.addr,
                m.role,
                m.term,
                m.last_applied,
                lag,
                m.snapshot_index,
                uptime,
                m.version,
                if m.reachable { "yes" } else { "no" }
            );
        }
        match report.leader {
            Some(id) => println!("leader: node {id}"),
            None => println!("leader: none (no quorum, or an election is under way)"),
        }
        if !report.quorum {
            println!("quorum: LOST (fewer than a majority of the voters answer)");
        }
    }
    if report.leader.is_some() && report.quorum {
        0
    } else {
        1
    }
}

async fn futures_join(
    client: &Client,
    addrs: &[String],
    timeout: Duration,
) -> Vec<Option<StatusResponse>> {
    let tasks: Vec<_> = addrs
        .iter()
        .map(|addr| {
            let client = client.clone();
            let addr = addr.clone();
            tokio::spawn(async move { client.node_status(&addr, timeout).await.ok() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

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
