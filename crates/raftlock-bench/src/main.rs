//! `raftlock-bench`: starts a 3-node raftlock cluster and a 3-member etcd
//! cluster on loopback, runs the same lock workloads against both
//! (alternating), and prints one comparison table; then (full run, or
//! `--tls`) the same with TLS and authentication on both, and the cost of
//! it to each. `--json` and `--png` write it out too. See docs/benchmarks.md.

mod chart;
mod credentials;
mod etcd_api;
mod etcd_auth;
mod etcd_cluster;
mod failover;
mod memory;
mod procs;
mod raftlock_cluster;
mod report;
mod run;
mod secured;
mod secured_report;
mod sessions;
mod stats;
mod system;
mod text_table;
mod workloads;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "raftlock-bench",
    about = "Benchmark raftlock against etcd's lock API, side by side, on loopback clusters"
)]
pub struct Args {
    /// A short run for CI: ~2 s per workload, 2 failovers, 10k locks held.
    #[arg(long)]
    quick: bool,
    /// Also run workloads 1-4 and the failovers again with TLS and
    /// authentication on both systems, and show what it costs each. A full
    /// run always does; a --quick run only with this.
    #[arg(long)]
    tls: bool,
    /// Write the results (rows, raw numbers, machine) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the ratios as a bar chart (PNG) here.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Keep the clusters' data and logs here instead of a temporary
    /// directory that is removed at the end.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The raftlock binary (default: `raftlock` next to this binary).
    #[arg(long)]
    raftlock_bin: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Extra argument for every `raftlock server` (repeat for more), e.g.
    /// --raftlock-arg=--heartbeat-ms=50.
    #[arg(long, allow_hyphen_values = true)]
    raftlock_arg: Vec<String>,
    /// Extra argument for every etcd member (repeat for more).
    #[arg(long, allow_hyphen_values = true)]
    etcd_arg: Vec<String>,
    /// Warm-up before each timed workload, seconds (default 2; 0.5 quick).
    #[arg(long)]
    warmup: Option<f64>,
    /// Measured time of each timed workload, seconds (default 10; 1.5 quick).
    #[arg(long)]
    measure: Option<f64>,
    /// Leader kills per system (default 5; 2 quick).
    #[arg(long)]
    failovers: Option<usize>,
    /// Locks held in the memory step (default 100000; 10000 quick).
    #[arg(long)]
    hold_locks: Option<usize>,
    /// Sessions (etcd: leases) holding them (default 1000; 100 quick).
    #[arg(long)]
    hold_sessions: Option<usize>,
    /// Start no clusters: run only the cycle workload (for
    /// `--warmup` + `--measure` seconds) against the raftlock cluster at
    /// these endpoints, and print its result as JSON. For profiling a node.
    #[arg(long, value_delimiter = ',')]
    against: Vec<String>,
    /// Workers for `--against`.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// With `--against`: every worker cycles one shared name (the
    /// contended workload) instead of its own.
    #[arg(long)]
    shared_name: bool,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    // The run future stays on this (main) thread, which spawns the server
    // processes: they are tied to it by PR_SET_PDEATHSIG.
    let result = runtime.block_on(async {
        tokio::select! {
            result = run::run(args) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("raftlock-bench: {e:#}");
        std::process::exit(1);
    }
}
