//! Python's ways of saying "how long" turned into the Rust client's:
//! `timeout` / `blocking` into [`Wait`], float seconds into [`Duration`].

use std::time::Duration;

use raftlock_client::Wait;

/// Longer than this is treated as "forever" (about 31 years).
const FOREVER_SECS: f64 = 1e9;

/// `blocking=False` tries once; `timeout=None` waits forever; `timeout=0`
/// tries once; otherwise waits up to `timeout` seconds. Same rules as
/// `threading.Lock.acquire`, except that `None` (not -1) means forever.
pub fn wait_for(timeout: Option<f64>, blocking: bool) -> Result<Wait, String> {
    match (blocking, timeout) {
        (false, None) => Ok(Wait::No),
        (false, Some(_)) => Err("can't specify a timeout for a non-blocking call".into()),
        (true, None) => Ok(Wait::Forever),
        (true, Some(t)) if t.is_nan() || t < 0.0 => Err(format!(
            "timeout must be None or a number of seconds >= 0, not {t}"
        )),
        (true, Some(0.0)) => Ok(Wait::No),
        (true, Some(t)) if t >= FOREVER_SECS => Ok(Wait::Forever),
        (true, Some(t)) => Ok(Wait::For(Duration::from_secs_f64(t))),
    }
}

/// Seconds as a [`Duration`]; `what` names the argument in the error.
pub fn seconds(what: &str, secs: f64) -> Result<Duration, String> {
    if !(0.0..=FOREVER_SECS).contains(&secs) {
        return Err(format!(
            "{what} must be a number of seconds between 0 and {FOREVER_SECS}, not {secs}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_and_timeout_map_to_waits() {
        assert_eq!(wait_for(None, false), Ok(Wait::No));
        assert_eq!(wait_for(None, true), Ok(Wait::Forever));
        assert_eq!(wait_for(Some(0.0), true), Ok(Wait::No));
        assert_eq!(
            wait_for(Some(1.5), true),
            Ok(Wait::For(Duration::from_millis(1500)))
        );
        assert_eq!(wait_for(Some(1e12), true), Ok(Wait::Forever));
    }

    #[test]
    fn nonsense_timeouts_are_refused() {
        assert!(wait_for(Some(1.0), false).is_err());
        assert!(wait_for(Some(-1.0), true).is_err());
        assert!(wait_for(Some(f64::NAN), true).is_err());
    }

    #[test]
    fn seconds_checks_its_range() {
        assert_eq!(seconds("ttl", 10.0), Ok(Duration::from_secs(10)));
        assert_eq!(seconds("ttl", 0.25), Ok(Duration::from_millis(250)));
        assert!(seconds("ttl", -1.0).unwrap_err().starts_with("ttl must be"));
        assert!(seconds("ttl", f64::INFINITY).is_err());
        assert!(seconds("ttl", f64::NAN).is_err());
    }
}
