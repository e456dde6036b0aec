//! The state machine fuzzer: random entries of random commands through
//! [`LockTable::apply`], for as long as it is given. After every entry
//! the table must pass its own consistency check and the fencing-token
//! rules; after every episode, the same entries applied to a copy of the
//! starting table must give the same answers and the same table, and the
//! table must survive a snapshot's encoding. A panic anywhere is a finding.

mod checks;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use raftlock_core::{Applied, LockTable, Proposal};
use rand::rngs::StdRng;
use rand::Rng;

use crate::findings::{Finding, PartReport};
use crate::{gen, panics, seed};

/// Distinct findings saved; repeats of one are only counted.
const MAX_SAVED: usize = 20;

/// One episode: the entries applied, in order, with their log indexes.
struct Episode {
    entries: Vec<(u64, Proposal)>,
    applied: Vec<Applied>,
}

/// Runs episodes until `deadline`; one episode is one execution.
pub fn run(run_seed: u64, deadline: Instant, findings_dir: &Path) -> PartReport {
    let mut report = PartReport::default();
    let mut entries = 0u64;
    let mut seen = BTreeSet::new();
    let mut repeats = 0u64;
    panics::capture();
    while Instant::now() < deadline {
        let episode_seed = seed::derive(run_seed, "table", report.executions);
        report.executions += 1;
        let (outcome, count) = run_episode(episode_seed, false);
        entries += count;
        if let Err(problem) = outcome {
            let first_line = problem.lines().next().unwrap_or("").to_string();
            // One file per kind of problem: the numbers differ between hits.
            let kind: String = first_line.chars().filter(|c| !c.is_ascii_digit()).collect();
            if !seen.insert(kind) || seen.len() > MAX_SAVED {
                repeats += 1;
                continue;
            }
            let replay = format!("raftlock-fuzz --replay-table {episode_seed}");
            let finding = Finding::new(format!("lock table: {first_line}"), problem, replay);
            report.found(findings_dir, "table", finding);
        }
    }
    panics::restore();
    report
        .notes
        .push(format!("{entries} entries applied and checked"));
    if repeats > 0 {
        report
            .notes
            .push(format!("{repeats} more episodes hit the findings above"));
    }
    report
}

/// Replays one episode, printing its entries; `Err` names what broke.
pub fn replay(episode_seed: u64) -> Result<(), String> {
    panics::capture();
    let (outcome, _) = run_episode(episode_seed, true);
    panics::restore();
    outcome
}

/// One episode from `episode_seed`: the result, and how many entries ran.
fn run_episode(episode_seed: u64, verbose: bool) -> (Result<(), String>, u64) {
    let mut rng = seed::rng(episode_seed);
    let start = LockTable::new();
    let mut table = start.clone();
    let mut episode = Episode {
        entries: Vec::new(),
        applied: Vec::new(),
    };
    let length = rng.gen_range(1..300);
    let mut index = first_index(&mut rng);
    for _ in 0..length {
        let proposal = gen::proposal(&mut rng, table.now_ms());
        if verbose {
            println!("entry {index}: {proposal:?}");
        }
        let step = apply_checked(&mut table, index, &proposal);
        episode.entries.push((index, proposal));
        match step {
            Ok(applied) => episode.applied.push(applied),
            Err(problem) => return (Err(describe(&episode, &problem)), count(&episode)),
        }
        index = next_index(&mut rng, index);
    }
    let end = checks::replays_the_same(&start, &table, &episode.entries, &episode.applied)
        .and_then(|()| {
            let last = episode.entries.last().map_or(0, |(index, _)| *index);
            checks::survives_a_snapshot(last, &table)
        });
    let end = end.map_err(|problem| describe(&episode, &problem));
    (end, count(&episode))
}

fn count(episode: &Episode) -> u64 {
    episode.entries.len() as u64
}

fn first_index(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..10) {
        0 => rng.gen_range(1..u64::MAX / 2),
        _ => rng.gen_range(1..100),
    }
}

/// Entries the table never sees (blank and membership ones) leave gaps.
fn next_index(rng: &mut StdRng, index: u64) -> u64 {
    let step = match rng.gen_range(0..20) {
        0 => rng.gen_range(2..1_000),
        _ => 1,
    };
    index.saturating_add(step)
}

/// Applies one entry, catching a panic, and checks the table after it.
fn apply_checked(
    table: &mut LockTable,
    index: u64,
    proposal: &Proposal,
) -> Result<Applied, String> {
    let applied = panics::catch(|| table.apply(index, proposal))
        .map_err(|panic| format!("apply panicked at index {index}: {panic}"))?;
    checks::after_entry(table, index, proposal, &applied)?;
    Ok(applied)
}

/// The problem and the entries up to it (the last few in full).
fn describe(episode: &Episode, problem: &str) -> String {
    const SHOWN: usize = 20;
    let skip = episode.entries.len().saturating_sub(SHOWN);
    let mut text = format!(
        "{problem}\n\n{} entries applied; the last {}:\n",
        episode.entries.len(),
        episode.entries.len() - skip
    );
    for (index, proposal) in &episode.entries[skip..] {
        text.push_str(&format!("  {index}: {proposal:?}\n"));
    }
    text
}
