//! The arithmetic of the benchmark, kept pure so it can be unit-tested:
//! percentiles of latency samples, the "> 1 means raftlock is better"
//! ratio, the longest gap between completions around a fault, medians.

use std::time::Duration;

/// Whether a bigger or a smaller number is better for a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// How many times better raftlock is than etcd on a metric: raftlock/etcd
/// when higher is better, etcd/raftlock when lower is better. So a ratio
/// above 1 always means raftlock did better. `None` when it would divide
/// by zero or a value is missing.
pub fn advantage(raftlock: f64, etcd: f64, better: Better) -> Option<f64> {
    let (num, den) = match better {
        Better::Higher => (raftlock, etcd),
        Better::Lower => (etcd, raftlock),
    };
    if !num.is_finite() || !den.is_finite() || den <= 0.0 || num < 0.0 {
        return None;
    }
    Some(num / den)
}

/// The `p`-th percentile (0..=100) of `sorted` by nearest rank, or `None`
/// for no samples. `sorted` must be in ascending order.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of a few values (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The longest stretch without a completed cycle that overlaps the fault:
/// `completions` are completion times (any order) and `fault` the moment
/// of the fault, all as offsets from one start. The gap starts at the last
/// completion before the fault (or the fault itself, if none came before)
/// and each later completion closes one; `end` closes the last one, so a
/// cluster that never recovered shows a gap up to `end`.
pub fn longest_gap(completions: &[Duration], fault: Duration, end: Duration) -> Duration {
    let mut times: Vec<Duration> = completions.to_vec();
    times.sort();
    let mut previous = times
        .iter()
        .copied()
        .filter(|t| *t <= fault)
        .max()
        .unwrap_or(fault);
    let mut longest = Duration::ZERO;
    for t in times.into_iter().filter(|t| *t > fault) {
        longest = longest.max(t - previous);
        previous = t;
    }
    longest.max(end.saturating_sub(previous))
}

/// Milliseconds from microseconds, for display.
pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten samples: p99 is the largest, p50 the fifth.
        let v: Vec<u64> = (10..=100).step_by(10).collect();
        assert_eq!(percentile(&v, 99.0), Some(100));
        assert_eq!(percentile(&v, 50.0), Some(50));
    }

    #[test]
    fn advantage_is_oriented_so_above_one_favours_raftlock() {
        assert_eq!(advantage(500.0, 100.0, Better::Higher), Some(5.0));
        assert_eq!(advantage(2.0, 10.0, Better::Lower), Some(5.0));
        assert_eq!(advantage(100.0, 400.0, Better::Higher), Some(0.25));
        assert_eq!(advantage(1.0, 0.0, Better::Higher), None);
        assert_eq!(advantage(0.0, 3.0, Better::Lower), None);
        assert_eq!(advantage(f64::NAN, 3.0, Better::Lower), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn longest_gap_spans_the_fault() {
        let ms = Duration::from_millis;
        // Steady every 10 ms, fault at 55, recovery at 900, then steady.
        let mut done: Vec<Duration> = (1..=5).map(|i| ms(i * 10)).collect();
        done.extend((0..10).map(|i| ms(900 + i * 10)));
        assert_eq!(longest_gap(&done, ms(55), ms(1000)), ms(850));
        // Nothing after the fault: the gap runs to the end.
        assert_eq!(longest_gap(&[ms(10)], ms(20), ms(500)), ms(490));
        // Nothing at all: from the fault to the end.
        assert_eq!(longest_gap(&[], ms(20), ms(500)), ms(480));
        // Gaps before the fault do not count.
        let done = [ms(0), ms(400), ms(410), ms(420), ms(430)];
        assert_eq!(longest_gap(&done, ms(405), ms(430)), ms(10));
    }
}
