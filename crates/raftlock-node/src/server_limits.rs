//! The bounds on what clients can make a node hold: connections, HTTP/2
//! streams, queued requests, watchers, reply sizes, and how long a call may
//! run. Every bound is a `raftlock server` flag; the defaults sit well
//! above what a normal cluster uses, so reaching one means a runaway or
//! hostile client, and the node refuses the excess instead of growing.
//!
//! - [`connection_limit`]: connections per listener (past it, closed at once).
//! - [`request_timeout`]: the deadline of a unary call on the Lock service.
//! - [`call_limit`]: Lock calls in progress on the node, all connections together.
//! - The HTTP/2 and TCP settings go on each listener's server builder here.
//! - The queues (`batcher`, `read_barrier`) and the watchers (`watch`) take
//!   their bounds from [`ServerLimits`] and refuse with RESOURCE_EXHAUSTED,
//!   kind `overloaded` (see `raft_calls::NotServed::Overloaded`).

pub mod call_limit;
pub mod connection_limit;
pub mod request_timeout;

use std::time::Duration;

/// Every bound, with its flag's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections the client listener holds at once (`--max-client-connections`).
    pub max_client_connections: usize,
    /// Connections the peer listener holds at once (`--max-peer-connections`).
    pub max_peer_connections: usize,
    /// HTTP/2 streams (calls in progress) per connection
    /// (`--max-streams-per-connection`). A client past it waits for a
    /// stream to end: HTTP/2 makes the caller queue, not fail. Generous,
    /// because one client process shares a connection among all its
    /// sessions, and a waiting Acquire holds a stream for up to 15 s: its
    /// keepalives must not queue behind its long-polls.
    pub max_streams_per_connection: u32,
    /// Lock-service calls in progress at once, all connections together
    /// (`--max-calls-in-flight`): the bound on connections times streams.
    pub max_calls_in_flight: usize,
    /// Ping an idle connection this often (`--http2-keepalive-interval-ms`).
    pub http2_keepalive_interval: Duration,
    /// Close a connection whose ping is not answered within this
    /// (`--http2-keepalive-timeout-ms`).
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive probes after this long idle (`--tcp-keepalive-ms`).
    pub tcp_keepalive: Duration,
    /// A unary Lock call that has not answered after this is ended with
    /// DEADLINE_EXCEEDED (`--request-timeout-ms`). Acquire gets this plus its
    /// long-poll (15 s); Watch, Raft and Cluster calls are not covered.
    pub request_timeout: Duration,
    /// Streams a client may open and reset before the server has accepted
    /// them (`--http2-max-pending-resets`): the "rapid reset" flood.
    pub http2_max_pending_accept_reset_streams: usize,
    /// Streams the server may reset for a client's protocol errors before
    /// it closes the connection (`--http2-max-error-resets`).
    pub http2_max_local_error_reset_streams: usize,
    /// Largest header list (metadata) of one call, bytes (`--max-header-bytes`).
    pub max_header_list_size: u32,
    /// Writes queued for the next log entry (`--max-queued-writes`).
    pub max_queued_writes: usize,
    /// Reads and keepalives queued for the next leadership confirmation
    /// (`--max-queued-reads`).
    pub max_queued_reads: usize,
    /// Watch streams served at once by this node (`--max-watchers`).
    pub max_watchers: usize,
    /// Most locks in one ListLocks reply (`--max-list-page`); a larger
    /// `limit` is cut to this, and the reply carries a page token.
    pub max_list_page: usize,
}

/// A TLS handshake not finished within this is dropped, so a connection
/// that never speaks does not hold a connection slot for long.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ServerLimits {
    /// Chosen to sit far above a normal cluster (the benchmark's 64 clients
    /// use one connection each and fewer than 100 calls in flight) while
    /// keeping the worst case in the hundreds of megabytes.
    fn default() -> Self {
        ServerLimits {
            max_client_connections: 10_000,
            max_peer_connections: 1_000,
            max_streams_per_connection: 1024,
            max_calls_in_flight: 50_000,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            tcp_keepalive: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
            max_header_list_size: 16 * 1024,
            max_queued_writes: 50_000,
            max_queued_reads: 50_000,
            max_watchers: 4096,
            max_list_page: 1000,
        }
    }
}

impl ServerLimits {
    /// A server builder with this node's HTTP/2 bounds.
    pub(crate) fn apply(&self, builder: tonic::transport::Server) -> tonic::transport::Server {
        builder
            .max_concurrent_streams(self.max_streams_per_connection)
            .http2_keepalive_interval(Some(self.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(self.http2_keepalive_timeout))
            .http2_max_pending_accept_reset_streams(Some(
                self.http2_max_pending_accept_reset_streams,
            ))
            .http2_max_local_error_reset_streams(Some(self.http2_max_local_error_reset_streams))
            .http2_max_header_list_size(self.max_header_list_size)
    }
}
