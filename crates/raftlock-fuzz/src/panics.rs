//! Panics as findings: while the in-process fuzzers run, a panic hook
//! keeps the message, where it happened and a backtrace, and
//! [`catch`] turns the unwinding into an error carrying them.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the default hook (which would print every caught panic) with
/// one that records it. Call [`restore`] before running anything whose
/// panics should be printed as usual.
pub fn capture() {
    panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let text = format!("{info}\n{backtrace}");
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }));
}

pub fn restore() {
    let _ = panic::take_hook();
}

/// Runs `f`; a panic comes back as `Err` with its message and backtrace.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        LAST.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "a panic (no message recorded)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_comes_back_with_its_message() {
        capture();
        let caught = catch(|| -> u8 { panic!("boom {}", 7) });
        restore();
        let message = caught.expect_err("the panic");
        assert!(message.contains("boom 7"), "{message}");
        assert_eq!(catch(|| 5), Ok(5));
    }
}
