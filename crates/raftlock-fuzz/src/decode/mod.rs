//! The decode fuzzer: bytes through [`decode_as`] for every type the node
//! decodes from its disk or a peer. Random bytes and mutations of valid
//! encodings; a panic, a decode that allocates more than [`ALLOC_CAP`], or
//! one that takes longer than [`SLOW_DECODE`] is a finding.

pub(crate) mod corpus;
pub(crate) mod mutate;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use raftlock_node::codec::{decode_as, Decoded};
use rand::rngs::StdRng;
use rand::Rng;

use crate::findings::{unhex, Finding, PartReport};
use crate::{alloc, panics, seed};

/// The most one decode may allocate, however hostile its bytes.
pub const ALLOC_CAP: usize = 100 << 20;
/// A decode slower than this is as bad as a hang for a node.
const SLOW_DECODE: Duration = Duration::from_secs(1);
/// Valid encodings kept per type.
const CORPUS_PER_KIND: usize = 24;
/// Distinct findings saved; repeats of one are only counted.
const MAX_SAVED: usize = 20;

/// What one decode did wrong, if anything. `accepted` counts the inputs
/// the node would have taken: mutations that still decode reach deepest.
fn judge(kind: Decoded, input: &[u8], accepted: &mut u64) -> Option<(String, String)> {
    let started = Instant::now();
    let (outcome, peak) = alloc::peak_during(|| panics::catch(|| decode_as(kind, input)));
    let took = started.elapsed();
    match outcome {
        Err(panic) => {
            let place = panic.lines().next().unwrap_or("").to_string();
            return Some((format!("decode of {kind:?} panicked: {place}"), panic));
        }
        Ok(Ok(())) => *accepted += 1,
        Ok(Err(_)) => {}
    }
    if peak > ALLOC_CAP {
        let title = format!("decode of {kind:?} allocated {} MiB", peak >> 20);
        return Some((title, format!("{} input bytes", input.len())));
    }
    if took > SLOW_DECODE {
        let title = format!("decode of {kind:?} took {took:?}");
        return Some((title, format!("{} input bytes", input.len())));
    }
    None
}

/// The valid encodings each execution starts from, and how many of them
/// the node accepts (all should be).
fn build_corpus(rng: &mut StdRng) -> (Vec<Vec<Vec<u8>>>, Vec<String>) {
    let mut notes = Vec::new();
    let corpus: Vec<Vec<Vec<u8>>> = Decoded::ALL
        .iter()
        .map(|kind| {
            let set: Vec<Vec<u8>> = (0..CORPUS_PER_KIND)
                .map(|_| corpus::valid(*kind, rng))
                .collect();
            let accepted = set.iter().filter(|b| decode_as(*kind, b).is_ok()).count();
            if accepted < set.len() {
                notes.push(format!(
                    "{kind:?}: only {accepted} of {} valid encodings accepted",
                    set.len()
                ));
            }
            set
        })
        .collect();
    (corpus, notes)
}

/// Runs until `deadline`; one decode is one execution.
pub fn run(run_seed: u64, deadline: Instant, findings_dir: &Path) -> PartReport {
    let mut report = PartReport::default();
    let mut corpus_rng = seed::rng(seed::derive(run_seed, "decode-corpus", 0));
    let (mut corpus, notes) = build_corpus(&mut corpus_rng);
    report.notes.extend(notes);
    let mut seen = BTreeSet::new();
    let mut repeats = 0u64;
    let mut accepted = 0u64;
    panics::capture();
    while Instant::now() < deadline {
        let exec_seed = seed::derive(run_seed, "decode", report.executions);
        let mut rng = seed::rng(exec_seed);
        report.executions += 1;
        let (kind, input) = input_for(&mut rng, &mut corpus);
        let Some((title, detail)) = judge(kind, &input, &mut accepted) else {
            continue;
        };
        if !seen.insert(title.clone()) || seen.len() > MAX_SAVED {
            repeats += 1;
            continue;
        }
        let n = report.findings.len() + 1;
        let file = findings_dir.join(format!("decode-{n}.txt"));
        let replay = format!("raftlock-fuzz --replay-decode {}", file.display());
        let detail = format!("kind: {kind:?}\n{detail}");
        report.found(
            findings_dir,
            "decode",
            Finding::new(title, detail, replay).with_input(&input),
        );
    }
    panics::restore();
    report.notes.push(format!(
        "{accepted} inputs decoded without error (mutations the node would accept)"
    ));
    if repeats > 0 {
        report
            .notes
            .push(format!("{repeats} more hits of the findings above"));
    }
    report
}

/// The kind and bytes of one execution. Now and then a fresh valid
/// encoding replaces one in the corpus, so the starting points vary.
fn input_for(rng: &mut StdRng, corpus: &mut [Vec<Vec<u8>>]) -> (Decoded, Vec<u8>) {
    let k = rng.gen_range(0..Decoded::ALL.len());
    let kind = Decoded::ALL[k];
    if rng.gen_ratio(1, 256) {
        let slot = rng.gen_range(0..CORPUS_PER_KIND);
        corpus[k][slot] = corpus::valid(kind, rng);
    }
    if rng.gen_ratio(1, 5) {
        return (kind, mutate::random_bytes(rng));
    }
    let mut bytes = corpus[k][rng.gen_range(0..CORPUS_PER_KIND)].clone();
    let donor_kind = if rng.gen_ratio(1, 4) {
        rng.gen_range(0..Decoded::ALL.len())
    } else {
        k
    };
    let donor = &corpus[donor_kind][rng.gen_range(0..CORPUS_PER_KIND)];
    mutate::mutate(rng, &mut bytes, donor);
    (kind, bytes)
}

/// Decodes the input saved in a finding file again; `Err` if it still fails.
pub fn replay(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .ok_or_else(|| format!("{}: no {name:?} line", file.display()))
    };
    let kind_name = field("kind:")?;
    let kind = Decoded::ALL
        .into_iter()
        .find(|k| format!("{k:?}") == kind_name)
        .ok_or_else(|| format!("unknown kind {kind_name:?}"))?;
    let input = unhex(field("hex:")?).ok_or("the hex line is not hex")?;
    panics::capture();
    let verdict = judge(kind, &input, &mut 0);
    panics::restore();
    match verdict {
        Some((title, detail)) => Err(format!("{title}\n{detail}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_valid_encoding_the_corpus_builds_is_accepted() {
        let mut rng = seed::rng(3);
        let (corpus, notes) = build_corpus(&mut rng);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(corpus.len(), Decoded::ALL.len());
    }

    #[test]
    fn mutations_change_the_bytes() {
        let mut rng = seed::rng(4);
        let valid = corpus::valid(Decoded::LogEntry, &mut rng);
        let changed = (0..200)
            .filter(|_| {
                let mut bytes = valid.clone();
                mutate::mutate(&mut rng, &mut bytes, &valid);
                bytes != valid
            })
            .count();
        assert!(
            changed > 180,
            "only {changed} of 200 mutations changed anything"
        );
    }

    #[test]
    fn a_saved_finding_replays_from_its_file() {
        let dir = std::env::temp_dir().join(format!("raftlock-fuzz-test-{}", std::process::id()));
        let mut report = PartReport::default();
        let finding = Finding::new("t", "kind: Vote\nx", String::new()).with_input(&[1, 2, 3]);
        report.found(&dir, "decode", finding);
        let file = report.findings[0].file.clone().expect("saved");
        // Three bytes are no vote: refused, without a panic, so it passes.
        assert_eq!(replay(&file), Ok(()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
