//! What one try of a call tells the retry loop, and how long and how hard
//! that loop ([`Client::call`](crate::Client)) keeps trying.

use std::error::Error as _;
use std::time::Duration;

use raftlock_proto::{ErrorKind, LEADER_ADDR_HEADER, LEADER_ID_HEADER, UNREACHABLE_LEADER_HEADER};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::silence;
use crate::Error;

/// The pause after the first failed try: short, as a follower usually
/// knows the new leader within a heartbeat or two.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// The longest pause between tries: an election takes a few hundred
/// milliseconds, and asking more slowly would only add to the wait.
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Redirects followed in a row before the node that sent the last one is
/// treated as failed: two nodes with stale views could point at each other.
const MAX_REDIRECTS: u32 = 3;
/// The shortest timeout a try gets, even at the deadline: a zero timeout
/// would fail it before it was sent.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1);

/// How long and how hard one call keeps trying.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    /// After this, the call fails as [`Error::Unavailable`].
    pub deadline: Instant,
    /// The longest one try may take (less near the deadline).
    pub attempt_timeout: Duration,
    /// The pause after the first failed try; it doubles after each further one ...
    pub first_backoff: Duration,
    /// ... up to this.
    pub max_backoff: Duration,
    /// Redirects followed in a row before the redirecting node counts as failed.
    pub max_redirects: u32,
}

impl RetryPolicy {
    /// Tries of up to `attempt_timeout` each until `deadline`, with the
    /// usual backoff and redirect limit.
    pub fn new(deadline: Instant, attempt_timeout: Duration) -> RetryPolicy {
        RetryPolicy {
            deadline,
            attempt_timeout,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            max_redirects: MAX_REDIRECTS,
        }
    }

    /// The timeout for a try starting now.
    pub fn attempt_timeout_now(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.attempt_timeout.min(left).max(MIN_ATTEMPT_TIMEOUT)
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The pause after `backoff`.
    pub fn next_backoff(&self, backoff: Duration) -> Duration {
        (backoff * 2).min(self.max_backoff)
    }
}

/// One try of a call: its timeout, and what the request should tell the
/// node it goes to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub timeout: Duration,
    /// A leader the client could not reach: a follower that still names it
    /// holds the call until the election names another.
    pub unreachable_leader: Option<u64>,
}

impl Attempt {
    /// `message` as a request carrying this attempt's timeout and hints.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(id) = self.unreachable_leader {
            request
                .metadata_mut()
                .insert(UNREACHABLE_LEADER_HEADER, id.into());
        }
        request
    }
}

/// What one try says to do next.
pub(crate) enum Next<T> {
    /// The call is done: here is its answer.
    Done(T),
    /// Try again, as `how` says; `why` this try failed, in a few words.
    Retry { why: String, how: Retry },
    /// Not worth retrying: hand this to the caller.
    Fail(Error),
}

/// How to try again.
pub(crate) enum Retry {
    /// Go to the leader a follower named: its id, if given, and address.
    Redirect(Option<u64>, String),
    /// The node did not answer, or broke off: try others (first, for a
    /// while), after a pause.
    Elsewhere,
    /// The node answered but knows no leader yet (it already waited a
    /// little for the election): try another after a pause, without
    /// holding it against this one.
    NoLeaderYet,
    /// The node is momentarily too busy (RESOURCE_EXHAUSTED, kind
    /// `overloaded`): try it again after the pause. Not a quota: a
    /// `quota-exceeded` refusal stays the same on retry and goes to the
    /// caller.
    Overloaded,
}

impl<T> Next<T> {
    /// What a try that ran out of time says.
    pub fn timed_out(timeout: Duration) -> Next<T> {
        Next::Retry {
            why: format!("no answer within {timeout:?}"),
            how: Retry::Elsewhere,
        }
    }

    /// What a try that got `status` back says.
    pub fn after(status: &Status) -> Next<T> {
        if let Some(problem) = tls_failure(status) {
            return Next::Fail(Error::Tls(problem));
        }
        let how = match status.code() {
            Code::Unavailable if ErrorKind::of(status) == Some(ErrorKind::NoLeader) => {
                Retry::NoLeaderYet
            }
            Code::ResourceExhausted if ErrorKind::of(status) == Some(ErrorKind::Overloaded) => {
                Retry::Overloaded
            }
            Code::Unavailable => match leader_named(status) {
                Some((id, addr)) => Retry::Redirect(id, addr),
                None => Retry::Elsewhere,
            },
            // A node that died mid-call, or a call that took too long.
            Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted => {
                Retry::Elsewhere
            }
            Code::Internal if broke_off(status) => Retry::Elsewhere,
            _ => return Next::Fail(Error::from_status(status)),
        };
        Next::Retry {
            why: silence::reason(status),
            how,
        }
    }
}

/// The leader a follower's redirect names: its id, if given, and address.
fn leader_named(status: &Status) -> Option<(Option<u64>, String)> {
    let header = |key| status.metadata().get(key).and_then(|v| v.to_str().ok());
    let addr = header(LEADER_ADDR_HEADER)?;
    let id = header(LEADER_ID_HEADER).and_then(|v| v.parse().ok());
    Some((id, addr.to_string()))
}

/// What went wrong in a failed TLS handshake under `status`, with what to
/// check: rustls's error sits in the source chain, usually inside the
/// `io::Error` tokio-rustls made of it. A handshake that fails once fails
/// the same way on every node, so it is not retried.
fn tls_failure(status: &Status) -> Option<String> {
    let mut source = status.source();
    while let Some(error) = source {
        let rustls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls) = rustls {
            return Some(tls_hint(rustls));
        }
        source = error.source();
    }
    None
}

/// rustls's words and what they usually mean for a raftlock client.
fn tls_hint(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error as E};
    let fix = match error {
        E::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            "the node's certificate is not signed by the CA given (--ca, RAFTLOCK_CA or the profile's ca.pem): use the cluster's CA"
        }
        E::InvalidCertificate(CertificateError::NotValidForName) => {
            "the node's certificate does not name the host dialled: dial a name it was issued for (raftlock certs node ID --host ...)"
        }
        E::InvalidCertificate(CertificateError::Expired) => {
            "the node's certificate has expired: issue it again"
        }
        E::InvalidMessage(_) => {
            "the node does not speak TLS: it may run with --insecure (then connect with --insecure too)"
        }
        E::AlertReceived(_) => {
            "the node refused the handshake: check the client certificate (--cert/--key) and the CA"
        }
        _ => "check the CA (--ca, RAFTLOCK_CA) and client certificate (--cert, --key)",
    };
    format!("handshake failed: {error}; {fix}")
}

/// Whether the call's own HTTP/2 stream or connection failed (the node went
/// away mid-call), rather than the node answering with an internal error:
/// tonic keeps the `h2::Error` it made the status from in the source chain
/// (directly, or under the `hyper::Error` that wrapped it).
fn broke_off(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.is::<h2::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn how(next: Next<()>) -> Option<Retry> {
        match next {
            Next::Retry { how, .. } => Some(how),
            _ => None,
        }
    }

    #[test]
    fn a_broken_stream_is_retried_elsewhere_but_an_internal_error_answer_is_not() {
        // What tonic makes of a stream the server's HTTP/2 layer reset.
        let broken = Status::from_error(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
        assert_eq!(broken.code(), Code::Internal);
        assert!(matches!(how(Next::after(&broken)), Some(Retry::Elsewhere)));
        // The same words as a node's answer are not a broken stream.
        let answered = Status::internal("h2 protocol error: stream error received");
        assert!(matches!(Next::<()>::after(&answered), Next::Fail(_)));
    }

    #[test]
    fn a_redirect_names_the_leader() {
        let mut status = Status::unavailable("not the leader");
        status
            .metadata_mut()
            .insert(LEADER_ADDR_HEADER, "10.0.0.3:7899".parse().unwrap());
        status
            .metadata_mut()
            .insert(LEADER_ID_HEADER, "3".parse().unwrap());
        match how(Next::after(&status)) {
            Some(Retry::Redirect(id, addr)) => {
                assert_eq!((id, addr.as_str()), (Some(3), "10.0.0.3:7899"))
            }
            _ => panic!("not a redirect"),
        }
        let no_leader = ErrorKind::NoLeader.status(Code::Unavailable, "electing");
        assert!(matches!(
            how(Next::after(&no_leader)),
            Some(Retry::NoLeaderYet)
        ));
        assert!(matches!(
            how(Next::after(&Status::unavailable("down"))),
            Some(Retry::Elsewhere)
        ));
    }

    #[test]
    fn an_overloaded_node_is_retried_but_a_quota_refusal_is_returned() {
        let busy = ErrorKind::Overloaded.status(Code::ResourceExhausted, "node overloaded");
        assert!(matches!(how(Next::after(&busy)), Some(Retry::Overloaded)));
        let quota = ErrorKind::QuotaExceeded.status(Code::ResourceExhausted, "quota reached");
        assert!(matches!(
            Next::<()>::after(&quota),
            Next::Fail(Error::QuotaExceeded(_))
        ));
        // A RESOURCE_EXHAUSTED without a kind (a message over a size
        // limit) is not retried either: it would fail the same way.
        let plain = Status::resource_exhausted("message too large");
        assert!(matches!(Next::<()>::after(&plain), Next::Fail(_)));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_a_try_never_gets_zero_time() {
        let policy = RetryPolicy::new(Instant::now(), Duration::from_secs(5));
        let pauses: Vec<Duration> = std::iter::successors(Some(policy.first_backoff), |b| {
            Some(policy.next_backoff(*b))
        })
        .take(6)
        .collect();
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [20, 40, 80, 160, 200, 200]);
        assert!(policy.expired());
        assert_eq!(policy.attempt_timeout_now(), MIN_ATTEMPT_TIMEOUT);
    }
}
