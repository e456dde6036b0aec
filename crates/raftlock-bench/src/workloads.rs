//! The timed acquire/release workloads: N workers, each with its own
//! session, cycling lock + unlock on their own names (uncontended), all
//! on one name (contended), or spread over a few names, in one lock mode,
//! measured for a fixed time after a warm-up.
//! Also the small task pool the other workloads use to open, fill and
//! close many sessions.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use raftlock_client::LockMode;
use tokio::time::Instant;

use crate::sessions::{Sess, Target};
use crate::stats::percentile;

/// Session TTL in the timed workloads (raftlock's client default).
pub const SESSION_TTL: Duration = Duration::from_secs(10);

/// A warm-up, then the measured window.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

/// Which lock names a workload's workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Names {
    /// A name per worker: uncontended.
    Own,
    /// Every worker on one name.
    One,
    /// `n` names, worker `i` always on name `i mod n`: how an etcd user
    /// spreads workers over `n` exclusive locks in place of a semaphore.
    Spread(usize),
}

/// How a workload's workers lock: on which names, in which mode.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Pattern {
    pub names: Names,
    pub mode: LockMode,
}

impl Pattern {
    pub const fn exclusive(names: Names) -> Pattern {
        Pattern {
            names,
            mode: LockMode::Exclusive,
        }
    }

    /// The name worker `worker` cycles on in the run tagged `tag`.
    fn name(&self, tag: &str, worker: usize) -> String {
        match self.names {
            Names::Own => format!("bench/{tag}/{worker}"),
            Names::One => format!("bench/{tag}/shared"),
            Names::Spread(n) => format!("bench/{tag}/slot-{}", worker % n.max(1)),
        }
    }
}

/// What one run of one workload against one system measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CycleResult {
    pub workers: usize,
    /// The names and mode the workers locked with.
    pub pattern: Pattern,
    pub seconds: f64,
    /// Cycles (acquire + release) completed within the window.
    pub cycles: u64,
    pub cycles_per_sec: f64,
    /// Acquire call to release done.
    pub cycle_p50_us: u64,
    pub cycle_p99_us: u64,
    /// Acquire call to grant: the waiting time when contended.
    pub wait_p50_us: u64,
    pub wait_p99_us: u64,
    /// Failed calls (retried by the worker after 10 ms).
    pub errors: u64,
}

#[derive(Default)]
struct WorkerLog {
    cycle_us: Vec<u64>,
    wait_us: Vec<u64>,
    errors: u64,
}

/// Runs `f(0..count)` on `concurrency` tasks; results in index order.
pub async fn in_parallel<T, F, Fut>(
    count: usize,
    concurrency: usize,
    f: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<T>>>> =
        Arc::new(Mutex::new((0..count).map(|_| None).collect()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (f, next, results) = (f.clone(), next.clone(), results.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let value = f(i).await?;
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(value);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a worker task panicked")??;
    }
    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
    Ok(results
        .drain(..)
        .map(|v| v.expect("every index ran"))
        .collect())
}

/// Opens `count` sessions of `ttl` on `target`, 16 at a time.
pub async fn open_sessions(
    target: &Target,
    count: usize,
    ttl: Duration,
    label: &str,
) -> anyhow::Result<Vec<Sess>> {
    let target = target.clone();
    let label = label.to_string();
    in_parallel(count, 16, move |i| {
        let (target, label) = (target.clone(), format!("{label} {i}"));
        async move { target.open_session(ttl, &label).await }
    })
    .await
}

/// Closes every session, 16 at a time, each within 10 s; errors ignored
/// (an unclosed session expires after its TTL anyway).
pub async fn close_sessions(sessions: Vec<Sess>) {
    let count = sessions.len();
    let slots: Arc<Mutex<Vec<Option<Sess>>>> =
        Arc::new(Mutex::new(sessions.into_iter().map(Some).collect()));
    let _ = in_parallel(count, 16, move |i| {
        let session = slots.lock().unwrap_or_else(|e| e.into_inner())[i].take();
        async move {
            if let Some(session) = session {
                let _ = tokio::time::timeout(Duration::from_secs(10), session.close()).await;
            }
            Ok(())
        }
    })
    .await;
}

/// `workers` workers cycle acquire + release on the names and in the mode
/// `pattern` gives, for the warm-up plus the window.
pub async fn cycles(
    target: &Target,
    workers: usize,
    pattern: Pattern,
    timing: Timing,
    tag: &str,
) -> anyhow::Result<CycleResult> {
    let sessions = open_sessions(target, workers, SESSION_TTL, tag).await?;
    let start = Instant::now() + Duration::from_millis(50);
    let from = start + timing.warmup;
    let until = from + timing.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let name = pattern.name(tag, i);
        tasks.spawn(async move {
            let mut log = WorkerLog::default();
            tokio::time::sleep_until(start).await;
            while Instant::now() < until {
                let t0 = Instant::now();
                let held = match session.lock_in(&name, pattern.mode).await {
                    Ok(held) => held,
                    Err(_) => {
                        log.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let t1 = Instant::now();
                if session.unlock(&held).await.is_err() {
                    log.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let t2 = Instant::now();
                if t2 >= from && t2 <= until {
                    log.cycle_us.push((t2 - t0).as_micros() as u64);
                    log.wait_us.push((t1 - t0).as_micros() as u64);
                }
            }
            (session, log)
        });
    }
    let mut cycle_us = Vec::new();
    let mut wait_us = Vec::new();
    let mut errors = 0;
    let mut sessions = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (session, log) = done.context("a worker panicked")?;
        cycle_us.extend(log.cycle_us);
        wait_us.extend(log.wait_us);
        errors += log.errors;
        sessions.push(session);
    }
    close_sessions(sessions).await;
    cycle_us.sort_unstable();
    wait_us.sort_unstable();
    let seconds = timing.measure.as_secs_f64();
    Ok(CycleResult {
        workers,
        pattern,
        seconds,
        cycles: cycle_us.len() as u64,
        cycles_per_sec: cycle_us.len() as f64 / seconds,
        cycle_p50_us: percentile(&cycle_us, 50.0).unwrap_or(0),
        cycle_p99_us: percentile(&cycle_us, 99.0).unwrap_or(0),
        wait_p50_us: percentile(&wait_us, 50.0).unwrap_or(0),
        wait_p99_us: percentile(&wait_us, 99.0).unwrap_or(0),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_names_split_workers_evenly() {
        let pattern = Pattern::exclusive(Names::Spread(4));
        let names: Vec<String> = (0..16).map(|i| pattern.name("w", i)).collect();
        for slot in 0..4 {
            let on_slot = names
                .iter()
                .filter(|n| **n == format!("bench/w/slot-{slot}"))
                .count();
            assert_eq!(on_slot, 4, "{names:?}");
        }
    }

    #[test]
    fn own_and_one_name_patterns() {
        let own = Pattern::exclusive(Names::Own);
        assert_ne!(own.name("w", 0), own.name("w", 1));
        let one = Pattern {
            names: Names::One,
            mode: LockMode::Shared,
        };
        assert_eq!(one.name("w", 0), one.name("w", 15));
    }
}
