//! What must hold of the lock table after each entry and after a run of
//! entries.

use raftlock_core::{Applied, Event, LockTable, Outcome, Proposal};

/// After applying `proposal` at `index`: one answer per command, the
/// table's consistency check, and fencing tokens that are log indexes
/// (a new grant's is this entry's, no holder's is from the future).
pub fn after_entry(
    table: &LockTable,
    index: u64,
    proposal: &Proposal,
    applied: &Applied,
) -> Result<(), String> {
    if applied.responses.len() != proposal.commands.len() {
        return Err(format!(
            "index {index}: {} commands got {} answers",
            proposal.commands.len(),
            applied.responses.len()
        ));
    }
    table
        .check_consistent_at(index)
        .map_err(|e| format!("index {index}: inconsistent table: {e}"))?;
    for (command, response) in proposal.commands.iter().zip(&applied.responses) {
        if let Ok(Outcome::Granted { token, reentrant }) = response {
            // A retry (same session and seq) is handed the first answer,
            // whose token is older; only an unnumbered new grant is sure
            // to carry this entry's.
            let unnumbered = !matches!(command.request_id(), Some((_, seq)) if seq != 0);
            let wrong = if *reentrant || !unnumbered {
                *token > index
            } else {
                *token != index
            };
            if wrong {
                return Err(format!(
                    "index {index}: {command:?} granted with token {token} (reentrant {reentrant})"
                ));
            }
        }
    }
    for event in &applied.events {
        match event {
            Event::Granted { token, .. } if *token != index => {
                return Err(format!(
                    "index {index}: event {event:?} has another entry's token"
                ));
            }
            Event::Lost { token, .. } if *token > index => {
                return Err(format!("index {index}: event {event:?} has a future token"));
            }
            _ => {}
        }
    }
    for lock in table.locks("", usize::MAX) {
        if let Some(h) = lock.holders.iter().find(|h| h.token > index) {
            return Err(format!(
                "index {index}: {:?} is held with token {} from the future",
                lock.name, h.token
            ));
        }
    }
    Ok(())
}

/// The same entries applied to a copy of `start` give the same answers
/// and end in the same table: replicas agree.
pub fn replays_the_same(
    start: &LockTable,
    end: &LockTable,
    entries: &[(u64, Proposal)],
    applied: &[Applied],
) -> Result<(), String> {
    let mut again = start.clone();
    for ((index, proposal), first) in entries.iter().zip(applied) {
        let second = again.apply(*index, proposal);
        if &second != first {
            return Err(format!(
                "not deterministic: index {index} answered {first:?} once and {second:?} again"
            ));
        }
    }
    if &again != end {
        return Err("not deterministic: the same entries ended in different tables".into());
    }
    Ok(())
}

/// The table, encoded as a snapshot is, is accepted by the node's own
/// snapshot decoder and decodes back to itself.
pub fn survives_a_snapshot(last_applied: u64, table: &LockTable) -> Result<(), String> {
    let body = raftlock_node::codec::encode(table).map_err(|e| format!("encode: {e}"))?;
    let bytes = raftlock_node::codec::snapshot_input(last_applied, table)?;
    raftlock_node::codec::decode_as(raftlock_node::codec::Decoded::Snapshot, &bytes)
        .map_err(|e| format!("the node refuses a snapshot of a table it built: {e}"))?;
    let back: LockTable =
        raftlock_node::codec::decode(&body).map_err(|e| format!("decode: {e}"))?;
    if &back != table {
        return Err("a table changed through a snapshot's encoding".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlock_core::{Command, SessionId};

    fn open(session: u128) -> Command {
        Command::OpenSession {
            session: SessionId(session),
            label: "t".into(),
            ttl_ms: 10_000,
            lock_delay_ms: 0,
        }
    }

    fn acquire(session: u128) -> Command {
        Command::Acquire {
            session: SessionId(session),
            seq: 0,
            name: "a".into(),
            wait: false,
        }
    }

    #[test]
    fn a_grant_with_another_entrys_token_is_caught() {
        let mut table = LockTable::new();
        let proposal = Proposal {
            time_ms: 1,
            commands: vec![open(1), acquire(1)],
        };
        let mut applied = table.apply(5, &proposal);
        assert_eq!(after_entry(&table, 5, &proposal, &applied), Ok(()));
        applied.responses[1] = Ok(Outcome::Granted {
            token: 4,
            reentrant: false,
        });
        assert!(after_entry(&table, 5, &proposal, &applied).is_err());
        applied.responses.pop();
        assert!(after_entry(&table, 5, &proposal, &applied).is_err());
    }

    #[test]
    fn a_different_replay_is_caught() {
        let start = LockTable::new();
        let mut end = start.clone();
        let entries = vec![(1, Proposal::single(1, open(1)))];
        let applied = vec![end.apply(1, &entries[0].1)];
        assert_eq!(replays_the_same(&start, &end, &entries, &applied), Ok(()));
        assert!(replays_the_same(&start, &start, &entries, &applied).is_err());
        assert_eq!(survives_a_snapshot(1, &end), Ok(()));
    }
}
