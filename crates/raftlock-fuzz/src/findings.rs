//! What the fuzzers found, each saved as a file under the findings
//! directory with what it takes to replay it, and the per-part tallies
//! the summary prints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One problem found: a panic, an absurd allocation, a broken invariant,
/// a node that crashed, hung or changed its table.
#[derive(Debug)]
pub struct Finding {
    pub title: String,
    pub detail: String,
    /// A command line that replays it.
    pub replay: String,
    /// The input, for findings that have one (printed as hex).
    pub input: Option<Vec<u8>>,
    pub file: Option<PathBuf>,
}

/// One part's tally.
#[derive(Debug, Default)]
pub struct PartReport {
    pub executions: u64,
    pub findings: Vec<Finding>,
    /// What the part did besides executions (corpus sizes, bytes sent).
    pub notes: Vec<String>,
}

impl PartReport {
    pub fn clean(&self) -> u64 {
        self.executions.saturating_sub(self.findings.len() as u64)
    }

    /// Records a finding and saves it under `dir` (as `<part>-<n>.txt`).
    pub fn found(&mut self, dir: &Path, part: &str, mut finding: Finding) {
        let n = self.findings.len() + 1;
        let path = dir.join(format!("{part}-{n}.txt"));
        let saved =
            std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, finding.render()));
        match saved {
            Ok(()) => finding.file = Some(path),
            Err(e) => eprintln!("could not save a finding to {}: {e}", path.display()),
        }
        self.findings.push(finding);
    }
}

impl Finding {
    pub fn new(title: impl Into<String>, detail: impl Into<String>, replay: String) -> Self {
        Finding {
            title: title.into(),
            detail: detail.into(),
            replay,
            input: None,
            file: None,
        }
    }

    pub fn with_input(mut self, input: &[u8]) -> Self {
        self.input = Some(input.to_vec());
        self
    }

    /// The saved file's text; `--replay-decode` reads its `kind:` and `hex:` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "title: {}", self.title);
        let _ = writeln!(out, "replay: {}", self.replay);
        if let Some(input) = &self.input {
            let _ = writeln!(out, "hex: {}", hex(input));
        }
        let _ = writeln!(out, "detail:\n{}", self.detail);
        out
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    text.trim()
        .as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => u8::from_str_radix(std::str::from_utf8(&[*hi, *lo]).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}
