//! Parsers for the CLI's durations, so a bad value is a usage error (exit
//! 2) stated in the flag's own unit before anything touches the network.

use std::time::Duration;

use raftlock_core::{MAX_LOCK_DELAY_MS, MAX_TTL_MS, MIN_TTL_MS};

/// The longest wait or grace period we take: a year, in seconds.
const MAX_WAIT_SECS: u64 = 365 * 86_400;

/// `--ttl`: what the cluster accepts, in seconds.
pub fn ttl(text: &str) -> Result<Duration, String> {
    seconds_in(text, MIN_TTL_MS, MAX_TTL_MS)
}

/// `--lock-delay`: what the cluster accepts, in seconds.
pub fn lock_delay(text: &str) -> Result<Duration, String> {
    seconds_in(text, 0, MAX_LOCK_DELAY_MS)
}

/// `--timeout`, `--grace`: any non-negative number of seconds up to a year.
pub fn wait(text: &str) -> Result<Duration, String> {
    seconds_in(text, 0, MAX_WAIT_SECS * 1000)
}

/// A number of seconds within `min_ms..=max_ms`, counted in whole
/// milliseconds as the cluster counts them.
fn seconds_in(text: &str, min_ms: u64, max_ms: u64) -> Result<Duration, String> {
    let range = format!("must be {} to {} seconds", secs(min_ms), secs(max_ms));
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a number of seconds; {range}"))?;
    let ms = (value * 1000.0).round();
    if !(min_ms as f64..=max_ms as f64).contains(&ms) {
        return Err(range);
    }
    Ok(Duration::from_millis(ms as u64))
}

/// Milliseconds as seconds (f64's Display writes no fraction for whole numbers).
fn secs(ms: u64) -> String {
    (ms as f64 / 1000.0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_checked_in_seconds_against_the_clusters_range() {
        assert_eq!(ttl("10"), Ok(Duration::from_secs(10)));
        assert_eq!(ttl("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(ttl("3600"), Ok(Duration::from_secs(3600)));
        for bad in ["0", "-1", "0.5", "3601", "inf", "NaN"] {
            assert_eq!(ttl(bad), Err("must be 1 to 3600 seconds".into()), "{bad}");
        }
        assert_eq!(
            ttl("ten"),
            Err("not a number of seconds; must be 1 to 3600 seconds".into())
        );
    }

    #[test]
    fn lock_delay_and_waits_have_their_own_ranges() {
        assert_eq!(lock_delay("0"), Ok(Duration::ZERO));
        assert_eq!(lock_delay("60"), Ok(Duration::from_secs(60)));
        assert_eq!(lock_delay("61"), Err("must be 0 to 60 seconds".into()));
        assert_eq!(wait("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(wait("-1"), Err("must be 0 to 31536000 seconds".into()));
    }
}
