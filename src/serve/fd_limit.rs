//! The open-file limit a node needs. Every connection is a file
//! descriptor, and so is every snapshot being built, sent or received: a
//! node that ran out would fail to open a snapshot file, which openraft
//! treats as a storage error that stops the node. So at startup the soft
//! limit is raised to the hard one, and if both listeners' connection
//! limits still do not fit under it, with room for the node's own files,
//! they are lowered to fit.

use raftlock_node::ServerLimits;

/// Descriptors kept for what is not a connection: the data dir's files,
/// snapshot files, the metrics listener, peers' channels, logs.
const RESERVED: u64 = 256;

/// Raises the soft open-file limit as far as the hard one allows and fits
/// `limits`' connection counts under it; a warning saying what was lowered
/// and how to avoid it, if anything was.
pub fn fit(limits: &mut ServerLimits) -> Option<String> {
    let available = raise_soft_limit()?;
    let budget = available.saturating_sub(RESERVED).max(32);
    let (client, peer) = (
        count(limits.max_client_connections),
        count(limits.max_peer_connections),
    );
    if client.saturating_add(peer) <= budget {
        return None;
    }
    // Peers are few: a tenth of the budget is plenty for them.
    let peer = peer.min((budget / 10).max(8));
    let client = budget.saturating_sub(peer).max(8);
    limits.max_peer_connections = usize::try_from(peer).unwrap_or(usize::MAX);
    limits.max_client_connections = usize::try_from(client).unwrap_or(usize::MAX);
    Some(format!(
        "the open-file limit is {available}: --max-client-connections lowered to {client} \
         and --max-peer-connections to {peer}, keeping {RESERVED} for the node's own files; \
         raise the limit (ulimit -n, systemd's LimitNOFILE) to keep the flags"
    ))
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The soft open-file limit after raising it to the hard one (`None` if
/// it cannot be read).
fn raise_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_above_the_open_file_limit_are_lowered_to_fit() {
        let available = raise_soft_limit().expect("a readable limit");
        let mut limits = ServerLimits {
            max_client_connections: usize::MAX / 4,
            max_peer_connections: usize::MAX / 4,
            ..ServerLimits::default()
        };
        let warning = fit(&mut limits).expect("lowered");
        assert!(warning.contains("--max-client-connections"), "{warning}");
        let total = count(limits.max_client_connections) + count(limits.max_peer_connections);
        assert!(
            total + RESERVED <= available.max(RESERVED + 32),
            "{total} of {available}"
        );
        // Limits that fit are left alone.
        let mut small = ServerLimits {
            max_client_connections: 4,
            max_peer_connections: 4,
            ..ServerLimits::default()
        };
        assert_eq!(fit(&mut small), None);
        assert_eq!(small.max_client_connections, 4);
    }
}
