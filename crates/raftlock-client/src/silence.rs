//! Noticing that none of the endpoints answers, so that a typo'd address or
//! a stopped cluster is reported after one round of tries instead of only
//! when the whole retry period has run out.

use std::collections::HashSet;
use std::error::Error as _;
use std::time::Duration;

use tonic::Status;

/// The endpoints that did not answer during one call.
#[derive(Default)]
pub(crate) struct Silence {
    silent: HashSet<String>,
}

impl Silence {
    /// Notes that `endpoint` did not answer; true once every one of
    /// `endpoints` has failed to in this call.
    pub fn note(&mut self, endpoint: &str, endpoints: &[String]) -> bool {
        if endpoints.iter().any(|e| e == endpoint) {
            self.silent.insert(endpoint.to_string());
        }
        self.is_total(endpoints)
    }

    /// Whether none of `endpoints` has answered in this call.
    pub fn is_total(&self, endpoints: &[String]) -> bool {
        endpoints.iter().all(|e| self.silent.contains(e))
    }
}

/// The one line a user reads when nothing answers.
pub(crate) fn nobody_answers(endpoints: &[String], reason: &str, left: Duration) -> String {
    format!(
        "no raftlock node answers at {} ({reason}); retrying for {} s",
        endpoints.join(", "),
        left.as_secs_f64().round()
    )
}

/// Why a call failed, in a few words: the I/O error under a transport
/// error ("connection refused") rather than tonic's "tcp connect error".
pub(crate) fn reason(status: &Status) -> String {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            };
        }
        source = error.source();
    }
    status.message().to_string()
}
