//! The quota part of `raftlock status`: each quota's use against its
//! limit, as one node's applied table has them (the confirmed leader's,
//! else the node that applied the most).

use raftlock_client::StatusResponse;
use serde::Serialize;

#[derive(Serialize, Debug, PartialEq)]
pub struct QuotaReport {
    /// Its metrics label, e.g. `sessions`.
    pub quota: String,
    pub used: u64,
    pub limit: u64,
    /// The server flag that sets it.
    pub flag: String,
}

/// The quotas `status` reported.
pub fn quotas_of(status: &StatusResponse) -> Vec<QuotaReport> {
    status
        .quotas
        .iter()
        .map(|q| QuotaReport {
            quota: q.quota.clone(),
            used: q.used,
            limit: q.limit,
            flag: q.flag.clone(),
        })
        .collect()
}

/// One line per quota, with a mark on those at 90 % of their limit or more
/// (the next requests there may be refused).
pub fn print(quotas: &[QuotaReport], node: u64) {
    if quotas.is_empty() {
        return;
    }
    println!("quotas (node {node}'s table): used / limit");
    for q in quotas {
        println!("{}", line(q));
    }
}

fn line(q: &QuotaReport) -> String {
    let near = q.limit > 0 && q.used.saturating_mul(10) >= q.limit.saturating_mul(9);
    format!(
        "  {:<24} {:>10} / {:<10} {}{}",
        q.quota,
        q.used,
        q.limit,
        q.flag,
        if near { "  NEAR LIMIT" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(used: u64, limit: u64) -> QuotaReport {
        QuotaReport {
            quota: "sessions".into(),
            used,
            limit,
            flag: "--max-sessions".into(),
        }
    }

    #[test]
    fn a_quota_at_nine_tenths_is_marked() {
        assert!(!line(&quota(44, 50)).contains("NEAR LIMIT"));
        assert!(line(&quota(45, 50)).ends_with("--max-sessions  NEAR LIMIT"));
        assert_eq!(
            line(&quota(3, 50)).split_whitespace().collect::<Vec<_>>(),
            ["sessions", "3", "/", "50", "--max-sessions"]
        );
    }
}
