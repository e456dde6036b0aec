//! The original lock server's test scenario, against a replicated cluster:
//! 16 jobs, 8 at a time, each taking the same lock through a different
//! endpoint with `raftlock lock` and writing its block line by line into
//! one shared file. No block may interleave with another, also when the
//! leader is killed halfway through.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{serial, Cluster};
use tokio::sync::Semaphore;

const JOBS: usize = 16;
const PARALLEL: usize = 8;
const LINES: usize = 5;

/// Runs the jobs with the credentials in `env` ([`Cluster::cli_env`]);
/// `on_half` is called once half of them have finished.
async fn run_jobs(
    endpoints: Vec<String>,
    env: Vec<(&'static str, PathBuf)>,
    file: &Path,
    on_half: impl FnOnce(),
) -> Vec<i32> {
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let done = Arc::new(AtomicUsize::new(0));
    let mut jobs = Vec::new();
    for (n, endpoints) in endpoints.into_iter().enumerate() {
        let script = format!(
            "for i in $(seq 1 {LINES}); do echo \"This is a sequential block by {n} (line $i)\" >> '{}'; sleep 0.02; done",
            file.display()
        );
        let slots = slots.clone();
        let done = done.clone();
        let env = env.clone();
        jobs.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let status = tokio::process::Command::new(support::BIN)
                .args([
                    "--endpoints",
                    &endpoints,
                    "lock",
                    "results.h5",
                    "--timeout",
                    "60",
                    "--",
                ])
                .args(["sh", "-c", &script])
                .envs(env)
                .status()
                .await
                .unwrap();
            done.fetch_add(1, Ordering::SeqCst);
            status.code().unwrap_or(-1)
        }));
    }
    let mut on_half = Some(on_half);
    while done.load(Ordering::SeqCst) < JOBS {
        if done.load(Ordering::SeqCst) >= JOBS / 2 {
            if let Some(f) = on_half.take() {
                f();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut codes = Vec::new();
    for job in jobs {
        codes.push(job.await.unwrap());
    }
    codes
}

/// Job N enters the cluster through node N mod 3 (and falls back to the others).
fn job_endpoints(cluster: &Cluster) -> Vec<String> {
    (0..JOBS)
        .map(|n| cluster.endpoints_from(1 + (n as u64 % 3)).join(","))
        .collect()
}

/// Every job's block is whole, its lines in order, and no two blocks mix.
fn check_blocks(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        JOBS * LINES,
        "every job wrote every line:\n{text}"
    );
    let mut seen = BTreeSet::new();
    for block in lines.chunks(LINES) {
        let owner = block[0]
            .strip_prefix("This is a sequential block by ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("malformed line {:?}", block[0]));
        for (i, line) in block.iter().enumerate() {
            let expected = format!("This is a sequential block by {owner} (line {})", i + 1);
            assert_eq!(*line, expected, "blocks interleaved:\n{text}");
        }
        assert!(
            seen.insert(owner.to_string()),
            "job {owner} wrote twice:\n{text}"
        );
    }
    assert_eq!(seen.len(), JOBS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_jobs_never_interleave() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let file = cluster.dir().join("results.txt");
    let codes = run_jobs(job_endpoints(&cluster), cluster.cli_env(), &file, || {}).await;
    assert_eq!(codes, vec![0; JOBS]);
    check_blocks(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_jobs_never_interleave_when_the_leader_dies_halfway() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let file = cluster.dir().join("results.txt");
    let endpoints = job_endpoints(&cluster);
    let env = cluster.cli_env();
    let codes = run_jobs(endpoints, env, &file, || cluster.kill(leader)).await;
    assert_eq!(
        codes,
        vec![0; JOBS],
        "every job finished despite the failover"
    );
    check_blocks(&file);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
}
