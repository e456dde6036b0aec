//! The secured section's results: both systems with TLS and
//! authentication on, side by side (the same rows as the plain run's
//! workloads 1-4 and failover, without targets: those are for the plain
//! run), and the cost of security to each system, as secured ÷ plain for
//! every row both runs have.

use crate::failover::FailoverRun;
use crate::report::{contention_rows, cycle_rows, gap_rows, number, row, table, Row};
use crate::stats::Better::Lower;
use crate::text_table::{render, Align};
use crate::workloads::CycleResult;

/// What one secured system measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SecuredSystem {
    pub system: String,
    pub version: String,
    pub one_worker: CycleResult,
    pub workers_16: CycleResult,
    pub workers_64: CycleResult,
    pub contended_16: CycleResult,
    pub term_before_steady: u64,
    pub term_after_steady: u64,
    pub failover: Vec<FailoverRun>,
}

/// The secured section, as it goes into the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SecuredResults {
    /// How each system was secured, in words.
    pub raftlock_security: String,
    pub etcd_security: String,
    /// The section's wall-clock time, clusters' start to stop.
    pub duration_seconds: f64,
    pub rows: Vec<Row>,
    pub cost: Vec<CostRow>,
    pub raftlock: SecuredSystem,
    pub etcd: SecuredSystem,
}

/// One metric, plain and secured, for both systems.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CostRow {
    pub metric: String,
    pub unit: String,
    pub raftlock_plain: Option<f64>,
    pub raftlock_secured: Option<f64>,
    /// raftlock secured ÷ plain.
    pub raftlock_cost: Option<f64>,
    pub etcd_plain: Option<f64>,
    pub etcd_secured: Option<f64>,
    /// etcd secured ÷ plain.
    pub etcd_cost: Option<f64>,
}

/// raftlock vs etcd, both secured.
pub fn secured_rows(r: &SecuredSystem, e: &SecuredSystem) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(cycle_rows(
        "1 worker",
        &r.one_worker,
        &e.one_worker,
        [None; 3],
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
        [None; 3],
    ));
    rows.extend(contention_rows(
        "16 on one name",
        "handoffs/s",
        &r.contended_16,
        &e.contended_16,
        None,
    ));
    rows.extend(gap_rows(&r.failover, &e.failover, [None; 2]));
    let elections =
        |s: &SecuredSystem| s.term_after_steady.saturating_sub(s.term_before_steady) as f64;
    rows.push(row(
        "elections in workloads 1-4",
        "count",
        Lower,
        Some(elections(r)),
        Some(elections(e)),
        None,
    ));
    rows
}

/// For every secured row whose metric the plain run has too: both
/// values and secured ÷ plain, per system.
pub fn cost_rows(plain: &[Row], secured: &[Row]) -> Vec<CostRow> {
    let ratio = |secured: Option<f64>, plain: Option<f64>| {
        let (s, p) = secured.zip(plain)?;
        (p > 0.0 && s.is_finite() && p.is_finite()).then(|| s / p)
    };
    secured
        .iter()
        .filter_map(|s| {
            let p = plain.iter().find(|p| p.metric == s.metric)?;
            Some(CostRow {
                metric: s.metric.clone(),
                unit: s.unit.clone(),
                raftlock_plain: p.raftlock,
                raftlock_secured: s.raftlock,
                raftlock_cost: ratio(s.raftlock, p.raftlock),
                etcd_plain: p.etcd,
                etcd_secured: s.etcd,
                etcd_cost: ratio(s.etcd, p.etcd),
            })
        })
        .collect()
}

/// Both secured systems side by side, then the cost table.
pub fn tables(results: &SecuredResults) -> String {
    format!(
        "With TLS + auth (raftlock: {}; etcd: {}):\n{}\nTLS cost (secured ÷ plain, same run):\n{}",
        results.raftlock_security,
        results.etcd_security,
        table(&results.rows),
        cost_table(&results.cost)
    )
}

fn cost_table(cost: &[CostRow]) -> String {
    let header = [
        "metric",
        "raftlock plain",
        "raftlock TLS+auth",
        "raftlock cost",
        "etcd plain",
        "etcd TLS+auth",
        "etcd cost",
    ]
    .map(String::from);
    let times = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}x"));
    let body: Vec<Vec<String>> = cost
        .iter()
        .map(|c| {
            vec![
                c.metric.clone(),
                number(c.raftlock_plain, &c.unit),
                number(c.raftlock_secured, &c.unit),
                times(c.raftlock_cost),
                number(c.etcd_plain, &c.unit),
                number(c.etcd_secured, &c.unit),
                times(c.etcd_cost),
            ]
        })
        .collect();
    render(&header, &body, &[Align::Left])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Better::Higher;

    #[test]
    fn cost_is_secured_over_plain_for_the_metrics_both_runs_have() {
        let plain = vec![
            row(
                "1 worker: cycles/s",
                "1/s",
                Higher,
                Some(400.0),
                Some(200.0),
                None,
            ),
            row("only plain", "ms", Lower, Some(1.0), Some(1.0), None),
        ];
        let secured = vec![
            row(
                "1 worker: cycles/s",
                "1/s",
                Higher,
                Some(300.0),
                Some(100.0),
                None,
            ),
            row("only secured", "ms", Lower, Some(1.0), Some(1.0), None),
        ];
        let cost = cost_rows(&plain, &secured);
        assert_eq!(cost.len(), 1);
        assert_eq!(cost[0].raftlock_cost, Some(0.75));
        assert_eq!(cost[0].etcd_cost, Some(0.5));
        assert_eq!(cost[0].raftlock_plain, Some(400.0));
        assert_eq!(cost[0].etcd_secured, Some(100.0));
    }

    #[test]
    fn cost_of_a_zero_plain_value_is_unknown() {
        let plain = vec![row("gap", "ms", Lower, Some(0.0), Some(5.0), None)];
        let secured = vec![row("gap", "ms", Lower, Some(3.0), Some(10.0), None)];
        let cost = cost_rows(&plain, &secured);
        assert_eq!(cost[0].raftlock_cost, None);
        assert_eq!(cost[0].etcd_cost, Some(2.0));
        assert!(cost_table(&cost).contains("2.00x"));
    }
}
