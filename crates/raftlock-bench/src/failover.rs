//! The failover workload: workers cycle on their own names while the
//! leader is killed with SIGKILL; the result is the longest time without a
//! completed cycle across the fault. The killed node is restarted and the
//! cluster waited on before the next repeat.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::stats::longest_gap;
use crate::system::System;
use crate::workloads::{close_sessions, open_sessions, SESSION_TTL};

/// How one failover repeat is run.
#[derive(Clone, Copy, Debug)]
pub struct FailoverPlan {
    pub workers: usize,
    /// Steady load before the kill.
    pub warmup: Duration,
    /// Keep measuring this long after the first cycle completed after the
    /// kill, so a second stall (clients finding the new leader) counts.
    pub tail: Duration,
    /// Give up waiting for recovery after this long (the gap is then this).
    pub give_up: Duration,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FailoverRun {
    /// The node killed (it led at the time).
    pub killed: u64,
    /// Longest time without a completed cycle, from the last completion
    /// before the kill.
    pub gap_ms: f64,
    /// Kill to the first completed cycle after it.
    pub first_after_kill_ms: Option<f64>,
    /// Kill to the first status poll (every 10 ms) in which the surviving
    /// nodes agreed on a new leader: the servers' part of the gap; the
    /// rest is clients finding it.
    pub new_leader_ms: Option<f64>,
    pub cycles: u64,
    pub errors: u64,
    /// Restart of the killed node until the cluster was healthy again.
    pub rejoin_ms: f64,
}

pub async fn failover_once(
    system: &mut System,
    plan: FailoverPlan,
    tag: &str,
) -> anyhow::Result<FailoverRun> {
    let target = system.connect().await?;
    let sessions = open_sessions(&target, plan.workers, SESSION_TTL, tag).await?;
    let base = Instant::now();
    let completions: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let mut tasks = tokio::task::JoinSet::new();
    let sessions = Arc::new(sessions);
    for i in 0..plan.workers {
        let (sessions, completions, errors) =
            (sessions.clone(), completions.clone(), errors.clone());
        let name = format!("bench/{tag}/{i}");
        tasks.spawn(async move {
            let session = &sessions[i];
            loop {
                let ok = match session.lock(&name).await {
                    Ok(held) => session.unlock(&held).await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    completions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(base.elapsed());
                } else {
                    *errors.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }

    tokio::time::sleep(plan.warmup).await;
    let leader = system.leader().await.context("no agreed leader to kill")?;
    let fault = base.elapsed();
    system.kill(leader);

    // Wait for the first completion after the kill, then the tail.
    let first_after = |c: &Mutex<Vec<Duration>>| {
        c.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .filter(|t| *t > fault)
            .min()
    };
    let give_up = base + fault + plan.give_up;
    let mut first = None;
    let mut new_leader = None;
    while Instant::now() < give_up {
        if new_leader.is_none() && system.leader().await.is_some_and(|l| l != leader) {
            new_leader = Some(base.elapsed() - fault);
        }
        first = first_after(&completions);
        if first.is_some() && new_leader.is_some() {
            tokio::time::sleep(plan.tail).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = base.elapsed();
    tasks.shutdown().await;
    let done = completions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let gap = longest_gap(&done, fault, end);

    if let Ok(sessions) = Arc::try_unwrap(sessions) {
        close_sessions(sessions).await;
    }
    let restarted = Instant::now();
    system.restart(leader)?;
    system
        .wait_healthy(Duration::from_secs(60))
        .await
        .with_context(|| format!("{} after restarting node {leader}", system.name()))?;
    let errors = *errors.lock().unwrap_or_else(|e| e.into_inner());
    Ok(FailoverRun {
        killed: leader,
        gap_ms: gap.as_secs_f64() * 1000.0,
        first_after_kill_ms: first.map(|t| (t - fault).as_secs_f64() * 1000.0),
        new_leader_ms: new_leader.map(|t| t.as_secs_f64() * 1000.0),
        cycles: done.len() as u64,
        errors,
        rejoin_ms: restarted.elapsed().as_secs_f64() * 1000.0,
    })
}
