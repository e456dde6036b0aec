//! The leader's quota flags win: while a node leads, it proposes
//! [`Command::SetLimits`] with its own `--max-*` values whenever the
//! applied table's limits differ, once per leadership, and again if the
//! table's change afterwards (an entry from a former leader with other
//! flags, committed late). Nodes should be configured alike; a node with
//! other flags changes the cluster's quotas when it becomes leader.

use raftlock_core::{Command, Limits, Outcome};

use crate::applied_table::AppliedTable;
use crate::batcher::Batcher;
use crate::leader_duties::log_not_served;

/// What this node wants the limits to be, and what it last did about it.
pub struct LimitsKeeper {
    wanted: Limits,
    /// The term of our last proposal and the table's limits right after it
    /// applied: while both still hold, proposing again would change nothing
    /// (a table that does not keep limits, or a refusal) and would only
    /// fill the log.
    settled: Option<(u64, Limits)>,
}

impl LimitsKeeper {
    pub fn new(wanted: Limits) -> Self {
        LimitsKeeper {
            wanted,
            settled: None,
        }
    }

    /// Whether a leader of `term` whose table has `current` should propose.
    pub fn should_propose(&self, term: u64, current: Limits) -> bool {
        current != self.wanted && self.settled != Some((term, current))
    }

    /// Proposes this node's limits if [`Self::should_propose`]; a proposal
    /// that is not served is tried again on the next call.
    pub async fn propose_if_needed(&mut self, batcher: &Batcher, table: &AppliedTable, term: u64) {
        let current = table.read(|t| t.limits());
        if !self.should_propose(term, current) {
            return;
        }
        match batcher.propose(Command::SetLimits(self.wanted)).await {
            Ok(Ok(Outcome::LimitsSet)) => {
                tracing::info!(limits = ?self.wanted, "quotas set from this leader's flags");
            }
            Ok(Ok(other)) => tracing::warn!(?other, "unexpected answer to setting the quotas"),
            Ok(Err(e)) => tracing::warn!(%e, "the table refused this leader's quotas"),
            Err(e) => return log_not_served(e),
        }
        self.settled = Some((term, table.read(|t| t.limits())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            sessions: 50,
            ..Limits::default()
        }
    }

    #[test]
    fn proposes_only_when_the_table_differs() {
        let keeper = LimitsKeeper::new(small());
        assert!(keeper.should_propose(3, Limits::default()));
        assert!(!keeper.should_propose(3, small()));
    }

    #[test]
    fn once_per_term_unless_the_table_changes_again() {
        let mut keeper = LimitsKeeper::new(small());
        // The proposal applied but the table kept other limits.
        keeper.settled = Some((3, Limits::default()));
        assert!(!keeper.should_propose(3, Limits::default()));
        // A former leader's limits applied afterwards: propose again.
        let other = Limits {
            locks: 7,
            ..Limits::default()
        };
        assert!(keeper.should_propose(3, other));
        // A new leadership proposes again.
        assert!(keeper.should_propose(4, Limits::default()));
    }
}
