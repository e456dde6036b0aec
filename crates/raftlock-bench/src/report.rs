//! The results: what each system measured, the comparison rows (both
//! values and the ratio, oriented so > 1 means raftlock did better, with
//! the target where it has one), the text table and the JSON.

use std::path::Path;

use anyhow::Context;

use crate::failover::FailoverRun;
use crate::memory::MemoryRun;
use crate::secured_report::SecuredResults;
use crate::stats::Better::{Higher, Lower};
use crate::stats::{advantage, median, us_to_ms, Better};
use crate::system::NodeRss;
use crate::text_table::{render, Align};
use crate::workloads::CycleResult;

/// Everything one system measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SystemResults {
    pub system: String,
    pub version: String,
    pub one_worker: CycleResult,
    pub workers_16: CycleResult,
    pub workers_64: CycleResult,
    pub contended_16: CycleResult,
    /// 16 readers on one name: shared (raftlock), exclusive (etcd).
    pub readers_16: CycleResult,
    /// 16 workers on a semaphore of 4 (raftlock), on 4 exclusive names (etcd).
    pub semaphore_16: CycleResult,
    /// Raft terms around workloads 1-6: each election raises the term.
    pub term_before_steady: u64,
    pub term_after_steady: u64,
    pub rss_after_throughput: Vec<NodeRss>,
    pub memory: MemoryRun,
    pub failover: Vec<FailoverRun>,
}

impl SystemResults {
    pub fn elections_steady(&self) -> u64 {
        self.term_after_steady
            .saturating_sub(self.term_before_steady)
    }
}

/// A bar in the comparison: the goal for this row, if any.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// raftlock's own value must be at most this.
    AtMost(f64),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: String,
    pub better: Better,
    pub raftlock: Option<f64>,
    pub etcd: Option<f64>,
    /// raftlock/etcd (higher better) or etcd/raftlock (lower better):
    /// above 1 means raftlock did better.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    pub target_met: Option<bool>,
}

pub(crate) fn row(
    metric: impl Into<String>,
    unit: &str,
    better: Better,
    raftlock: Option<f64>,
    etcd: Option<f64>,
    target: Option<Target>,
) -> Row {
    let ratio = raftlock
        .zip(etcd)
        .and_then(|(r, e)| advantage(r, e, better));
    let target_met = target.and_then(|t| match t {
        Target::RatioAtLeast(x) => ratio.map(|r| r >= x),
        Target::AtMost(x) => raftlock.map(|r| r <= x),
    });
    Row {
        metric: metric.into(),
        unit: unit.into(),
        better,
        raftlock,
        etcd,
        ratio,
        target,
        target_met,
    }
}

fn max_rss_mb(rss: &[NodeRss]) -> Option<f64> {
    rss.iter()
        .map(|r| r.rss_bytes as f64 / (1024.0 * 1024.0))
        .max_by(f64::total_cmp)
}

/// The comparison rows, in table order.
pub fn rows(r: &SystemResults, e: &SystemResults) -> Vec<Row> {
    let mut rows = throughput_rows(r, e);
    rows.extend(contention_rows(
        "16 on one name",
        "handoffs/s",
        &r.contended_16,
        &e.contended_16,
        Some(Target::RatioAtLeast(10.0)),
    ));
    rows.extend(contention_rows(
        "16 readers (etcd: exclusive)",
        "holds/s",
        &r.readers_16,
        &e.readers_16,
        None,
    ));
    rows.extend(contention_rows(
        "semaphore N=4, 16 (etcd: 4 names)",
        "holds/s",
        &r.semaphore_16,
        &e.semaphore_16,
        None,
    ));
    rows.extend(failover_rows(r, e));
    rows.push(elections_row(r, e));
    rows.extend(memory_rows(r, e));
    rows
}

/// Rate, p50 and p99 of one cycle workload; `targets` in that order.
pub(crate) fn cycle_rows(
    label: &str,
    a: &CycleResult,
    b: &CycleResult,
    targets: [Option<Target>; 3],
) -> [Row; 3] {
    [
        row(
            format!("{label}: cycles/s"),
            "1/s",
            Higher,
            Some(a.cycles_per_sec),
            Some(b.cycles_per_sec),
            targets[0],
        ),
        row(
            format!("{label}: p50 cycle"),
            "ms",
            Lower,
            Some(us_to_ms(a.cycle_p50_us)),
            Some(us_to_ms(b.cycle_p50_us)),
            targets[1],
        ),
        row(
            format!("{label}: p99 cycle"),
            "ms",
            Lower,
            Some(us_to_ms(a.cycle_p99_us)),
            Some(us_to_ms(b.cycle_p99_us)),
            targets[2],
        ),
    ]
}

/// Workloads 1-3: each worker on its own name, at three concurrencies.
fn throughput_rows(r: &SystemResults, e: &SystemResults) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(cycle_rows(
        "1 worker",
        &r.one_worker,
        &e.one_worker,
        [Some(Target::RatioAtLeast(3.0)), None, None],
    ));
    rows.extend(cycle_rows(
        "16 workers",
        &r.workers_16,
        &e.workers_16,
        [None; 3],
    ));
    rows.extend(cycle_rows(
        "64 workers",
        &r.workers_64,
        &e.workers_64,
        [
            Some(Target::RatioAtLeast(5.0)),
            None,
            Some(Target::RatioAtLeast(5.0)),
        ],
    ));
    rows
}

/// Workloads 4-6: workers contending for one name (or a few), so the
/// wait (queueing and handoff) matters more than the cycle. `rate` names
/// what a completed cycle counts as.
pub(crate) fn contention_rows(
    label: &str,
    rate: &str,
    a: &CycleResult,
    b: &CycleResult,
    rate_target: Option<Target>,
) -> [Row; 3] {
    [
        row(
            format!("{label}: {rate}"),
            "1/s",
            Higher,
            Some(a.cycles_per_sec),
            Some(b.cycles_per_sec),
            rate_target,
        ),
        row(
            format!("{label}: p50 wait"),
            "ms",
            Lower,
            Some(us_to_ms(a.wait_p50_us)),
            Some(us_to_ms(b.wait_p50_us)),
            None,
        ),
        row(
            format!("{label}: p99 wait"),
            "ms",
            Lower,
            Some(us_to_ms(a.wait_p99_us)),
            Some(us_to_ms(b.wait_p99_us)),
            None,
        ),
    ]
}

fn failover_rows(r: &SystemResults, e: &SystemResults) -> [Row; 2] {
    gap_rows(
        &r.failover,
        &e.failover,
        [Some(Target::AtMost(300.0)), Some(Target::AtMost(600.0))],
    )
}

/// Median and longest failover gap; `targets` in that order.
pub(crate) fn gap_rows(
    r: &[FailoverRun],
    e: &[FailoverRun],
    targets: [Option<Target>; 2],
) -> [Row; 2] {
    let gaps = |runs: &[FailoverRun]| runs.iter().map(|f| f.gap_ms).collect::<Vec<f64>>();
    let max = |v: Vec<f64>| v.into_iter().max_by(f64::total_cmp);
    let repeats = r.len().min(e.len());
    [
        row(
            format!("failover gap, median of {repeats}"),
            "ms",
            Lower,
            median(&gaps(r)),
            median(&gaps(e)),
            targets[0],
        ),
        row(
            format!("failover gap, max of {repeats}"),
            "ms",
            Lower,
            max(gaps(r)),
            max(gaps(e)),
            targets[1],
        ),
    ]
}

fn elections_row(r: &SystemResults, e: &SystemResults) -> Row {
    row(
        "elections in workloads 1-6",
        "count",
        Lower,
        Some(r.elections_steady() as f64),
        Some(e.elections_steady() as f64),
        Some(Target::AtMost(0.0)),
    )
}

/// Resident memory per node: after the timed workloads, and while
/// holding many locks.
fn memory_rows(r: &SystemResults, e: &SystemResults) -> [Row; 2] {
    [
        row(
            "RSS per node after throughput (max)",
            "MiB",
            Lower,
            max_rss_mb(&r.rss_after_throughput),
            max_rss_mb(&e.rss_after_throughput),
            Some(Target::AtMost(40.0)),
        ),
        row(
            format!(
                "RSS per node holding {}k locks / {} sessions (max)",
                r.memory.locks / 1000,
                r.memory.sessions
            ),
            "MiB",
            Lower,
            max_rss_mb(&r.memory.rss),
            max_rss_mb(&e.memory.rss),
            None,
        ),
    ]
}

pub(crate) fn number(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(v) if unit == "count" => format!("{v:.0}"),
        Some(v) if v >= 100.0 => format!("{v:.0} {unit}"),
        Some(v) if v >= 10.0 => format!("{v:.1} {unit}"),
        Some(v) => format!("{v:.2} {unit}"),
    }
}

fn target_text(row: &Row) -> String {
    let Some(target) = row.target else {
        return String::new();
    };
    let goal = match target {
        Target::RatioAtLeast(x) => format!("ratio >= {x}"),
        Target::AtMost(x) if row.unit == "count" => format!("raftlock = {x}"),
        Target::AtMost(x) => format!("raftlock <= {x} {}", row.unit),
    };
    match row.target_met {
        Some(true) => format!("{goal}: met"),
        Some(false) => format!("{goal}: NOT met"),
        None => goal,
    }
}

/// The comparison as a plain-text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "metric",
        "raftlock",
        "etcd",
        "ratio (>1 = raftlock better)",
        "target",
    ]
    .map(String::from);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.metric.clone(),
                number(r.raftlock, &r.unit),
                number(r.etcd, &r.unit),
                r.ratio.map(|x| format!("{x:.2}x")).unwrap_or("-".into()),
                target_text(r),
            ]
        })
        .collect();
    use Align::{Left, Right};
    render(&header, &body, &[Left, Right, Right, Right, Left])
}

/// Where and how the run was made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// 1-minute load average when the benchmark started.
    pub load_at_start: f64,
    pub data_dir: String,
}

impl Machine {
    pub fn probe(data_dir: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_at_start: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            data_dir: data_dir.display().to_string(),
        }
    }
}

/// The whole run, as written by `--json`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub mode: String,
    pub settings: serde_json::Value,
    pub machine: Machine,
    pub started_unix: u64,
    pub duration_seconds: f64,
    pub rows: Vec<Row>,
    pub raftlock: SystemResults,
    pub etcd: SystemResults,
    /// Workloads 1-4 and failover again with TLS and auth on both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secured: Option<SecuredResults>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_judged_on_the_right_number() {
        let r = row(
            "x",
            "1/s",
            Better::Higher,
            Some(600.0),
            Some(100.0),
            Some(Target::RatioAtLeast(5.0)),
        );
        assert_eq!(r.ratio, Some(6.0));
        assert_eq!(r.target_met, Some(true));
        let r = row(
            "gap",
            "ms",
            Better::Lower,
            Some(450.0),
            Some(1200.0),
            Some(Target::AtMost(300.0)),
        );
        assert!((r.ratio.unwrap() - 1200.0 / 450.0).abs() < 1e-9);
        assert_eq!(r.target_met, Some(false));
    }

    #[test]
    fn table_has_a_line_per_row() {
        let rows = vec![
            row("a", "ms", Better::Lower, Some(1.0), Some(2.0), None),
            row("b", "count", Better::Lower, Some(0.0), Some(0.0), None),
        ];
        let text = table(&rows);
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("2.00x"));
        assert!(text.lines().all(|l| l.starts_with('|') && l.ends_with('|')));
    }
}
