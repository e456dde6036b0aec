//! Prometheus metrics (`--metrics-listen`): what the node exports, through
//! the `metrics` facade. Counters and histograms are recorded where things
//! happen; gauges are sampled from Raft and the lock table every second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use openraft::{BasicNode, RaftMetrics, ServerState};
use raftlock_core::Quota;
use raftlock_proto::v1::{QuotaUse, Role};
use tokio::sync::watch;

use crate::applied_table::AppliedTable;
use crate::types::{NodeId, Raft};

/// The role a node reports (Status, `raftlock_role`): a follower that is not
/// a voter is a learner, whatever openraft calls it.
pub fn role_of(m: &RaftMetrics<NodeId, BasicNode>) -> Role {
    match m.state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower
            if m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == m.id) =>
        {
            Role::Follower
        }
        ServerState::Follower | ServerState::Learner => Role::Learner,
        ServerState::Candidate => Role::Candidate,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// Serves `/metrics` on `addr`. One exporter per process.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 15.0,
        ])?
        .install()?;
    Ok(())
}

/// Times one client RPC into `raftlock_rpc_seconds{rpc=...}` when dropped.
pub struct RpcTimer {
    rpc: &'static str,
    started: Instant,
}

impl RpcTimer {
    pub fn start(rpc: &'static str) -> Self {
        RpcTimer {
            rpc,
            started: Instant::now(),
        }
    }
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        histogram!("raftlock_rpc_seconds", "rpc" => self.rpc).record(self.started.elapsed());
    }
}

pub fn fsync(took: Duration) {
    histogram!("raftlock_fsync_seconds").record(took);
}

pub fn snapshot_built(bytes: usize) {
    counter!("raftlock_snapshots_total").increment(1);
    gauge!("raftlock_snapshot_bytes").set(bytes as f64);
}

/// What applying a batch of entries did, summed.
#[derive(Default)]
pub struct Applied {
    pub grants: u64,
    pub releases: u64,
    pub expiries: u64,
    pub sessions_opened: u64,
}

pub fn applied(a: &Applied) {
    counter!("raftlock_grants_total").increment(a.grants);
    counter!("raftlock_releases_total").increment(a.releases);
    counter!("raftlock_session_expiries_total").increment(a.expiries);
    counter!("raftlock_sessions_opened_total").increment(a.sessions_opened);
}

/// How often the gauges are sampled: a scrape every few seconds sees a
/// fresh value, and reading Raft's metrics once a second costs nothing.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Samples the gauges every [`SAMPLE_EVERY`] until `stop` changes.
pub async fn sample(raft: Raft, table: AppliedTable, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let m = raft.metrics().borrow().clone();
        gauge!("raftlock_term").set(m.current_term as f64);
        gauge!("raftlock_is_leader").set(if m.state == ServerState::Leader {
            1.0
        } else {
            0.0
        });
        let current = role_of(&m);
        for role in [Role::Leader, Role::Follower, Role::Candidate, Role::Learner] {
            gauge!("raftlock_role", "role" => role.label()).set(if role == current {
                1.0
            } else {
                0.0
            });
        }
        let last = m.last_log_index.unwrap_or(0);
        gauge!("raftlock_last_log_index").set(last as f64);
        gauge!("raftlock_applied_index").set(m.last_applied.map_or(0, |l| l.index) as f64);
        gauge!("raftlock_snapshot_index").set(m.snapshot.map_or(0, |l| l.index) as f64);
        for (id, matched) in m.replication.iter().flatten() {
            let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
            gauge!("raftlock_replication_lag_entries", "follower" => id.to_string())
                .set(lag as f64);
        }
        let stats = table.read(|t| t.stats());
        gauge!("raftlock_sessions").set(stats.sessions as f64);
        gauge!("raftlock_locks_held").set(stats.held as f64);
        gauge!("raftlock_waiters").set(stats.waiters as f64);
        quotas(&table);
    }
}

/// `raftlock_quota_used{quota}` and `raftlock_quota_limit{quota}`: for the
/// per-session, per-lock and per-principal quotas, the largest use by any
/// one of them, so used / limit near 1 means someone is about to be refused.
fn quotas(table: &AppliedTable) {
    for (quota, used, limit) in quota_uses(table) {
        gauge!("raftlock_quota_used", "quota" => quota.key()).set(used as f64);
        gauge!("raftlock_quota_limit", "quota" => quota.key()).set(limit as f64);
    }
}

/// Each quota's use and limit, for the Status RPC.
pub fn quota_status(table: &AppliedTable) -> Vec<QuotaUse> {
    quota_uses(table)
        .into_iter()
        .map(|(quota, used, limit)| QuotaUse {
            quota: quota.key().into(),
            used,
            limit,
            flag: quota.flag().into(),
        })
        .collect()
}

/// Each quota with its use and its limit, as the applied table has them.
fn quota_uses(table: &AppliedTable) -> Vec<(Quota, u64, u64)> {
    let (usage, limits) = table.read(|t| (t.quota_usage(), t.limits()));
    Quota::ALL
        .iter()
        .map(|q| (*q, usage.get(*q), limits.get(*q)))
        .collect()
}
