//! The memory workload: hold many locks across many sessions (etcd: one
//! lease per session, one lock key per lock), check the cluster holds
//! them all, read every node's RSS, then let them all go.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::system::{NodeRss, System};
use crate::workloads::{close_sessions, in_parallel, open_sessions};

/// Long enough that 1,000 sessions' keepalives are a small load.
const HOLD_TTL: Duration = Duration::from_secs(60);
/// Sessions filled at once.
const CONCURRENCY: usize = 64;

#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryRun {
    pub sessions: usize,
    pub locks: usize,
    /// What the cluster said it held (raftlock's table, etcd's lock keys).
    pub held: u64,
    /// Time to open the sessions and take every lock.
    pub load_seconds: f64,
    pub rss: Vec<NodeRss>,
}

pub async fn hold_many(
    system: &System,
    sessions: usize,
    locks: usize,
    tag: &str,
) -> anyhow::Result<MemoryRun> {
    if locks.checked_rem(sessions) != Some(0) {
        bail!("{locks} locks do not split evenly over {sessions} sessions");
    }
    let per_session = locks / sessions;
    let started = Instant::now();
    let target = system.connect().await?;
    let opened = Arc::new(open_sessions(&target, sessions, HOLD_TTL, tag).await?);
    let prefix = format!("{tag}/");
    {
        let (opened, prefix) = (opened.clone(), prefix.clone());
        in_parallel(sessions, CONCURRENCY, move |s| {
            let (opened, prefix) = (opened.clone(), prefix.clone());
            async move {
                for j in 0..per_session {
                    opened[s]
                        .lock(&format!("{prefix}{s}/{j}"))
                        .await
                        .with_context(|| format!("session {s}, lock {j}"))?;
                }
                Ok(())
            }
        })
        .await?;
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let held = system.locks_held(&prefix).await?;
    // Let the nodes finish applying and settle before reading RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = system.rss()?;
    let opened = Arc::try_unwrap(opened).map_err(|_| anyhow::anyhow!("sessions still shared"))?;
    close_sessions(opened).await;
    Ok(MemoryRun {
        sessions,
        locks,
        held,
        load_seconds,
        rss,
    })
}
