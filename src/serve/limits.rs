//! The `raftlock server` flags that bound what clients can make a node
//! hold (connections, streams, queues, watchers, reply sizes, call time):
//! one flattened block, turned into [`ServerLimits`]. The defaults are
//! [`ServerLimits::default`]'s.

use std::time::Duration;

use clap::Args;
use raftlock_node::ServerLimits;

fn default() -> ServerLimits {
    ServerLimits::default()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[derive(Args, Debug)]
pub struct ServerLimitArgs {
    /// Client connections held at once; past it new ones are closed at
    /// once (clients see UNAVAILABLE and retry).
    #[arg(long, default_value_t = default().max_client_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_client_connections: u32,
    /// Connections held at once on --peer-listen.
    #[arg(long, default_value_t = default().max_peer_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_peer_connections: u32,
    /// Calls in progress on one connection (HTTP/2 streams); a client
    /// past it waits for one of its calls to end.
    #[arg(long, default_value_t = default().max_streams_per_connection,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_streams_per_connection: u32,
    /// Lock calls in progress at once on this node, all connections
    /// together; past it RESOURCE_EXHAUSTED (kind overloaded, retryable).
    #[arg(long, default_value_t = default().max_calls_in_flight as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_calls_in_flight: u32,
    /// Ping idle connections this often, ms.
    #[arg(long, default_value_t = ms(default().http2_keepalive_interval),
          value_parser = clap::value_parser!(u64).range(100..))]
    http2_keepalive_interval_ms: u64,
    /// Close a connection whose ping is not answered within this, ms.
    #[arg(long, default_value_t = ms(default().http2_keepalive_timeout),
          value_parser = clap::value_parser!(u64).range(100..))]
    http2_keepalive_timeout_ms: u64,
    /// TCP keepalive probes after this long idle, ms.
    #[arg(long, default_value_t = ms(default().tcp_keepalive),
          value_parser = clap::value_parser!(u64).range(1000..))]
    tcp_keepalive_ms: u64,
    /// A unary Lock call not answered within this ends with
    /// DEADLINE_EXCEEDED (Acquire: this plus its 15 s long-poll; Watch is
    /// not covered), ms.
    #[arg(long, default_value_t = ms(default().request_timeout),
          value_parser = clap::value_parser!(u64).range(100..))]
    request_timeout_ms: u64,
    /// Streams a client may open and reset before they are accepted
    /// (HTTP/2 rapid-reset protection); past it the connection is closed.
    #[arg(long, default_value_t = default().http2_max_pending_accept_reset_streams)]
    http2_max_pending_resets: usize,
    /// Streams this node may reset for a client's protocol errors before
    /// it closes the connection.
    #[arg(long, default_value_t = default().http2_max_local_error_reset_streams)]
    http2_max_error_resets: usize,
    /// Largest metadata (header list) of one call, bytes.
    #[arg(long, default_value_t = default().max_header_list_size,
          value_parser = clap::value_parser!(u32).range(1024..))]
    max_header_bytes: u32,
    /// Writes queued for the next log entry; past it RESOURCE_EXHAUSTED
    /// (kind overloaded, retryable).
    #[arg(long, default_value_t = default().max_queued_writes as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_queued_writes: u32,
    /// Reads and keepalives queued for the next leadership check; past it
    /// RESOURCE_EXHAUSTED (kind overloaded, retryable).
    #[arg(long, default_value_t = default().max_queued_reads as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_queued_reads: u32,
    /// Watch streams served at once; past it RESOURCE_EXHAUSTED (kind
    /// overloaded, retryable).
    #[arg(long, default_value_t = default().max_watchers as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_watchers: u32,
    /// Most locks in one ListLocks reply; larger requests get pages.
    #[arg(long, default_value_t = default().max_list_page as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_list_page: u32,
}

impl ServerLimitArgs {
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_client_connections: self.max_client_connections as usize,
            max_peer_connections: self.max_peer_connections as usize,
            max_streams_per_connection: self.max_streams_per_connection,
            max_calls_in_flight: self.max_calls_in_flight as usize,
            http2_keepalive_interval: Duration::from_millis(self.http2_keepalive_interval_ms),
            http2_keepalive_timeout: Duration::from_millis(self.http2_keepalive_timeout_ms),
            tcp_keepalive: Duration::from_millis(self.tcp_keepalive_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            http2_max_pending_accept_reset_streams: self.http2_max_pending_resets,
            http2_max_local_error_reset_streams: self.http2_max_error_resets,
            max_header_list_size: self.max_header_bytes,
            max_queued_writes: self.max_queued_writes as usize,
            max_queued_reads: self.max_queued_reads as usize,
            max_watchers: self.max_watchers as usize,
            max_list_page: self.max_list_page as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: ServerLimitArgs,
    }

    #[test]
    fn no_flags_give_the_defaults_and_flags_override_them() {
        let flags = Flags::try_parse_from(["x"]).unwrap();
        assert_eq!(flags.limits.limits(), ServerLimits::default());
        let flags = Flags::try_parse_from([
            "x",
            "--max-queued-writes",
            "3",
            "--request-timeout-ms",
            "500",
        ])
        .unwrap();
        let limits = flags.limits.limits();
        assert_eq!(limits.max_queued_writes, 3);
        assert_eq!(limits.request_timeout, Duration::from_millis(500));
        assert!(Flags::try_parse_from(["x", "--max-watchers", "0"]).is_err());
    }
}
