//! The benchmark's order of events: start both clusters, run each
//! workload against both (alternating which goes first), then memory,
//! then failover; then, in a full run or with `--tls`, the same again
//! with TLS and authentication on (`secured`); collect the results into a
//! report and write it out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use raftlock_client::LockMode;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::credentials::BenchCredentials;
use crate::etcd_cluster::EtcdCluster;
use crate::failover::{failover_once, FailoverPlan, FailoverRun};
use crate::memory::{hold_many, MemoryRun};
use crate::raftlock_cluster::RaftlockCluster;
use crate::report::{rows, table, Machine, Report, SystemResults};
use crate::sessions::Target;
use crate::system::{NodeRss, System};
use crate::workloads::{cycles, CycleResult, Names, Pattern, Timing};
use crate::{chart, Args};

/// How long and how much of everything.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(crate) struct Plan {
    warmup_s: f64,
    measure_s: f64,
    failovers: usize,
    failover_workers: usize,
    hold_locks: usize,
    hold_sessions: usize,
}

impl Plan {
    fn from_args(args: &Args) -> Plan {
        let (warmup_s, measure_s, failovers, hold_locks, hold_sessions) = if args.quick {
            (0.5, 1.5, 2, 10_000, 100)
        } else {
            (2.0, 10.0, 5, 100_000, 1_000)
        };
        Plan {
            warmup_s: args.warmup.unwrap_or(warmup_s),
            measure_s: args.measure.unwrap_or(measure_s),
            failovers: args.failovers.unwrap_or(failovers),
            failover_workers: 8,
            hold_locks: args.hold_locks.unwrap_or(hold_locks),
            hold_sessions: args.hold_sessions.unwrap_or(hold_sessions),
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            warmup: Duration::from_secs_f64(self.warmup_s),
            measure: Duration::from_secs_f64(self.measure_s),
        }
    }

    fn failover(&self, quick: bool) -> FailoverPlan {
        FailoverPlan {
            workers: self.failover_workers,
            warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
            tail: Duration::from_millis(if quick { 500 } else { 1000 }),
            give_up: Duration::from_secs(30),
        }
    }
}

/// One system's results while they come in.
#[derive(Default)]
pub(crate) struct Partial {
    pub(crate) throughput: Vec<CycleResult>,
    pub(crate) term_before: u64,
    pub(crate) term_after: u64,
    rss_after_throughput: Vec<NodeRss>,
    memory: Option<MemoryRun>,
    pub(crate) failover: Vec<FailoverRun>,
}

fn default_raftlock_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("raftlock")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("raftlock"))
}

/// The order to visit the systems in on the `k`-th step: alternating.
fn order(k: usize) -> [usize; 2] {
    [[0, 1], [1, 0]][k % 2]
}

/// One timed workload: its label, worker count, and how each system's
/// workers lock (the same, unless raftlock has a mode etcd lacks).
pub(crate) struct Workload {
    label: &'static str,
    workers: usize,
    raftlock: Pattern,
    etcd: Pattern,
}

impl Workload {
    const fn same(label: &'static str, workers: usize, names: Names) -> Workload {
        Workload {
            label,
            workers,
            raftlock: Pattern::exclusive(names),
            etcd: Pattern::exclusive(names),
        }
    }

    fn pattern(&self, system: &System) -> Pattern {
        match system {
            System::Raftlock(_) => self.raftlock,
            System::Etcd(_) => self.etcd,
        }
    }
}

/// Workloads 1-6, in order; [`finish`] takes their results in this order.
pub(crate) const WORKLOADS: [Workload; 6] = [
    Workload::same("1 worker, own name", 1, Names::Own),
    Workload::same("16 workers, own names", 16, Names::Own),
    Workload::same("64 workers, own names", 64, Names::Own),
    Workload::same("16 workers, one name", 16, Names::One),
    // etcd has no shared locks: its users take the exclusive one.
    Workload {
        label: "16 readers, one name",
        workers: 16,
        raftlock: Pattern {
            names: Names::One,
            mode: LockMode::Shared,
        },
        etcd: Pattern::exclusive(Names::One),
    },
    // etcd has no semaphore: 4 exclusive names, 4 workers on each, admit
    // the same 4 holders at once (with equal workers, its best case).
    Workload {
        label: "16 workers, semaphore N=4",
        workers: 16,
        raftlock: Pattern {
            names: Names::One,
            mode: LockMode::Semaphore {
                limit: SEMAPHORE_LIMIT,
            },
        },
        etcd: Pattern::exclusive(Names::Spread(SEMAPHORE_LIMIT as usize)),
    },
];

/// The semaphore workload's N.
const SEMAPHORE_LIMIT: u32 = 4;

pub async fn run(args: Args) -> anyhow::Result<()> {
    if !args.against.is_empty() {
        return load_only(&args).await;
    }
    let started = Instant::now();
    let plan = Plan::from_args(&args);
    // Kept until the end: dropping it removes the clusters' directory.
    let (dir, _temp_dir) = work_dir(&args)?;
    let raftlock_bin = args
        .raftlock_bin
        .clone()
        .unwrap_or_else(default_raftlock_bin);
    let machine = Machine::probe(&dir);
    eprintln!(
        "raftlock-bench: {} mode; data and logs in {}",
        if args.quick { "quick" } else { "full" },
        dir.display()
    );

    let mut systems = start_clusters(&raftlock_bin, &args, &dir, None).await?;
    let versions = [systems[0].version().await, systems[1].version().await];
    eprintln!(
        "both clusters healthy: raftlock {}, etcd {}",
        versions[0], versions[1]
    );
    let mut partial = [Partial::default(), Partial::default()];
    measure_throughput(&systems, &plan, &WORKLOADS, &mut partial).await?;
    measure_memory(&mut systems, &plan, &mut partial).await?;
    measure_failover(&mut systems, &plan, args.quick, &mut partial).await?;
    drop(systems);

    let [r, e] = partial;
    let results = [
        finish("raftlock", &versions[0], r)?,
        finish("etcd", &versions[1], e)?,
    ];
    let [raftlock, etcd] = results;
    let rows = rows(&raftlock, &etcd);
    println!("{}", table(&rows));
    let secured = if args.tls || !args.quick {
        let secured = crate::secured::run(&raftlock_bin, &args, &dir, &plan, &rows).await?;
        println!("{}", crate::secured_report::tables(&secured));
        Some(secured)
    } else {
        None
    };
    let report = Report {
        mode: if args.quick { "quick" } else { "full" }.into(),
        settings: serde_json::json!({
            "plan": plan,
            "raftlock_args": args.raftlock_arg,
            "etcd_args": args.etcd_arg,
            "session_ttl_s": crate::workloads::SESSION_TTL.as_secs(),
        }),
        machine,
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(started.elapsed().as_secs()),
        duration_seconds: started.elapsed().as_secs_f64(),
        rows,
        raftlock,
        etcd,
        secured,
    };
    write_outputs(&args, &report)?;
    eprintln!(
        "raftlock-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--work-dir`, or a fresh temporary directory returned with its guard.
fn work_dir(args: &Args) -> anyhow::Result<(PathBuf, Option<TempDir>)> {
    Ok(match &args.work_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("raftlock-bench")
                .tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    })
}

/// `workloads` on both systems, with the Raft term read around them (to
/// count elections) and the nodes' RSS read after.
pub(crate) async fn measure_throughput(
    systems: &[System; 2],
    plan: &Plan,
    workloads: &[Workload],
    partial: &mut [Partial; 2],
) -> anyhow::Result<()> {
    for (s, system) in systems.iter().enumerate() {
        partial[s].term_before = system.term().await?;
    }
    for (k, workload) in workloads.iter().enumerate() {
        for s in order(k) {
            let system = &systems[s];
            let tag = format!("w{}", k + 1);
            let target = system.connect().await?;
            let (label, pattern) = (workload.label, workload.pattern(system));
            let result = cycles(&target, workload.workers, pattern, plan.timing(), &tag)
                .await
                .with_context(|| format!("{label} on {}", system.name()))?;
            eprintln!(
                "  {label:<22} {:<8} {:>8.0} cycles/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                system.name(),
                result.cycles_per_sec,
                result.cycle_p50_us as f64 / 1000.0,
                result.cycle_p99_us as f64 / 1000.0,
                result.errors
            );
            partial[s].throughput.push(result);
        }
    }
    for (s, system) in systems.iter().enumerate() {
        partial[s].term_after = system.term().await?;
        partial[s].rss_after_throughput = system.rss()?;
    }
    Ok(())
}

/// Many sessions each holding locks: the RSS it costs each system.
async fn measure_memory(
    systems: &mut [System; 2],
    plan: &Plan,
    partial: &mut [Partial; 2],
) -> anyhow::Result<()> {
    for s in order(0) {
        let system = &systems[s];
        let memory = hold_many(system, plan.hold_sessions, plan.hold_locks, "mem")
            .await
            .with_context(|| format!("holding locks on {}", system.name()))?;
        eprintln!(
            "  holding {} locks / {} sessions: {:<8} loaded in {:.1} s, {} held, RSS {:?} MiB",
            memory.locks,
            memory.sessions,
            system.name(),
            memory.load_seconds,
            memory.held,
            memory
                .rss
                .iter()
                .map(|r| r.rss_bytes / (1 << 20))
                .collect::<Vec<_>>()
        );
        partial[s].memory = Some(memory);
        // Let the released locks' entries settle before the failovers.
        systems[s].wait_healthy(Duration::from_secs(60)).await?;
    }
    Ok(())
}

/// Kill each system's leader under load, `plan.failovers` times each,
/// alternating which system goes first.
pub(crate) async fn measure_failover(
    systems: &mut [System; 2],
    plan: &Plan,
    quick: bool,
    partial: &mut [Partial; 2],
) -> anyhow::Result<()> {
    for k in 0..plan.failovers {
        for s in order(k) {
            let tag = format!("f{}", k + 1);
            let run = failover_once(&mut systems[s], plan.failover(quick), &tag)
                .await
                .with_context(|| format!("failover {} on {}", k + 1, systems[s].name()))?;
            eprintln!(
                "  failover {}: {:<8} killed node {}, new leader after {:.0} ms, gap {:.0} ms, rejoined in {:.1} s",
                k + 1,
                systems[s].name(),
                run.killed,
                run.new_leader_ms.unwrap_or(f64::NAN),
                run.gap_ms,
                run.rejoin_ms / 1000.0
            );
            partial[s].failover.push(run);
        }
    }
    Ok(())
}

/// `--json` and `--png`, where asked for.
fn write_outputs(args: &Args, report: &Report) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.png {
        let title = format!(
            "raftlock vs etcd {} on one machine ({} run, {} cores)",
            report.etcd.version, report.mode, report.machine.cores
        );
        chart::draw(&report.rows, &title, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `--against`: only the cycle workload (uncontended, or contended with
/// `--shared-name`), against a raftlock cluster that is already running
/// (e.g. one node under a profiler).
async fn load_only(args: &Args) -> anyhow::Result<()> {
    let plan = Plan::from_args(args);
    let target = Target::Raftlock(raftlock_client::Client::new(args.against.clone())?);
    let timing = plan.timing();
    let names = if args.shared_name {
        Names::One
    } else {
        Names::Own
    };
    let pattern = Pattern::exclusive(names);
    let result = cycles(&target, args.workers, pattern, timing, "load").await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// Both clusters under `dir`, healthy; secured with `security` if given
/// (etcd's authentication then turned on).
pub(crate) async fn start_clusters(
    raftlock_bin: &Path,
    args: &Args,
    dir: &Path,
    security: Option<Arc<BenchCredentials>>,
) -> anyhow::Result<[System; 2]> {
    if !raftlock_bin.exists() && raftlock_bin.components().count() > 1 {
        bail!(
            "no raftlock binary at {} (cargo build --release -p raftlock)",
            raftlock_bin.display()
        );
    }
    let raftlock = RaftlockCluster::start(
        raftlock_bin,
        &dir.join("raftlock"),
        3,
        &args.raftlock_arg,
        security.clone(),
    )
    .context("starting the raftlock cluster")?;
    let etcd = EtcdCluster::start(
        &args.etcd_bin,
        &dir.join("etcd"),
        3,
        &args.etcd_arg,
        security,
    )
    .context("starting etcd (apt-get install etcd-server, or pass --etcd-bin)")?;
    let mut systems = [System::Raftlock(raftlock), System::Etcd(etcd)];
    for system in systems.iter_mut() {
        system.wait_healthy(Duration::from_secs(60)).await?;
    }
    if let System::Etcd(etcd) = &systems[1] {
        etcd.enable_auth().await.context("turning on etcd's auth")?;
    }
    Ok(systems)
}

fn finish(name: &str, version: &str, p: Partial) -> anyhow::Result<SystemResults> {
    let [one_worker, workers_16, workers_64, contended_16, readers_16, semaphore_16]: [CycleResult;
        6] = p
        .throughput
        .try_into()
        .map_err(|_| anyhow::anyhow!("{name}: missing workload results"))?;
    Ok(SystemResults {
        system: name.into(),
        version: version.into(),
        one_worker,
        workers_16,
        workers_64,
        contended_16,
        readers_16,
        semaphore_16,
        term_before_steady: p.term_before,
        term_after_steady: p.term_after,
        rss_after_throughput: p.rss_after_throughput,
        memory: p.memory.context("no memory result")?,
        failover: p.failover,
    })
}
