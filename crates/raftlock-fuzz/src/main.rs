//! `raftlock-fuzz`: fuzzers that run on stable Rust, time-bounded and
//! deterministic from one seed. Three parts:
//! - `decode`: bytes through the node's decoders of disk and peer data;
//! - `table`: random command sequences through the lock table;
//! - `wire`: hostile bytes, HTTP/2 and gRPC at a running node's ports.
//!
//! Prints per part the executions, the findings and how to replay each
//! (saved under the findings directory); exits 1 on any finding.

mod alloc;
mod decode;
mod findings;
mod gen;
mod panics;
mod seed;
mod table;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::findings::PartReport;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Decode,
    Table,
    Wire,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Decode => "decode",
            Part::Table => "table",
            Part::Wire => "wire",
        }
    }

    /// Its share of the time when every part runs: the wire part also
    /// starts two nodes and waits for them.
    fn weight(self) -> u64 {
        match self {
            Part::Decode | Part::Table => 3,
            Part::Wire => 4,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Fuzz raftlock's decoders, lock table and wire on stable Rust")]
struct Args {
    /// Total seconds, split between the parts.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// The run seed (printed at start; give it again to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Which parts to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "decode,table,wire"
    )]
    parts: Vec<Part>,
    /// The server binary the wire part starts.
    #[arg(long, default_value = "target/release/raftlock")]
    binary: PathBuf,
    /// Where findings are saved.
    #[arg(long, default_value = "target/fuzz-findings")]
    findings: PathBuf,
    /// Decode the input saved in a decode finding file again.
    #[arg(long, conflicts_with_all = ["replay_table", "replay_wire"])]
    replay_decode: Option<PathBuf>,
    /// Run one state machine episode again, printing its entries.
    #[arg(long, conflicts_with = "replay_wire")]
    replay_table: Option<u64>,
    /// Send one wire burst again (its seed, from a wire finding) and check the node.
    #[arg(long)]
    replay_wire: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(outcome) = replay(&args) {
        return match outcome {
            Ok(()) => {
                println!("replayed: no failure");
                ExitCode::SUCCESS
            }
            Err(problem) => {
                println!("replayed: {problem}");
                ExitCode::FAILURE
            }
        };
    }
    let run_seed = args.seed.unwrap_or_else(seed::fresh);
    println!(
        "raftlock-fuzz: seed {run_seed} ({}s; replay with --seed {run_seed})",
        args.secs
    );
    let total_weight: u64 = args.parts.iter().map(|p| p.weight()).sum::<u64>().max(1);
    let mut reports = Vec::new();
    for part in &args.parts {
        let share = Duration::from_secs(args.secs) * part.weight() as u32 / total_weight as u32;
        let started = Instant::now();
        let deadline = started + share;
        let report = match part {
            Part::Decode => decode::run(run_seed, deadline, &args.findings),
            Part::Table => table::run(run_seed, deadline, &args.findings),
            Part::Wire => wire::run(run_seed, deadline, &args.binary, &args.findings),
        };
        print_part(part.name(), &report, started.elapsed());
        reports.push(report);
    }
    let found: usize = reports.iter().map(|r| r.findings.len()).sum();
    if found > 0 {
        println!("raftlock-fuzz: {found} finding(s); seed {run_seed}");
        ExitCode::FAILURE
    } else {
        println!("raftlock-fuzz: no findings; seed {run_seed}");
        ExitCode::SUCCESS
    }
}

fn replay(args: &Args) -> Option<Result<(), String>> {
    if let Some(file) = &args.replay_decode {
        return Some(decode::replay(file));
    }
    if let Some(episode) = args.replay_table {
        return Some(table::replay(episode));
    }
    args.replay_wire
        .map(|burst| wire::replay(burst, &args.binary))
}

fn print_part(name: &str, report: &PartReport, took: Duration) {
    println!(
        "[{name}] {} executions in {:.1}s, {} without a finding, {} finding(s)",
        report.executions,
        took.as_secs_f64(),
        report.clean(),
        report.findings.len()
    );
    for note in &report.notes {
        println!("[{name}]   {note}");
    }
    for finding in &report.findings {
        println!("[{name}] FINDING: {}", finding.title);
        println!("[{name}]   replay: {}", finding.replay);
        if let Some(file) = &finding.file {
            println!("[{name}]   saved: {}", file.display());
        }
        if let Some(input) = &finding.input {
            let hex = findings::hex(input);
            let shown = &hex[..hex.len().min(160)];
            let more = if hex.len() > 160 { "..." } else { "" };
            println!("[{name}]   input ({} bytes): {shown}{more}", input.len());
        }
    }
}
