//! `raftlock-chaos`: runs the chaos suite against a local or docker-compose
//! cluster and exits non-zero on any violation. See docs/chaos.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use raftlock_chaos::docker::DockerCluster;
use raftlock_chaos::runner::ALL;
use raftlock_chaos::{run, Fault, LocalCluster, Nodes, RunConfig};
use raftlock_client::Transport;

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// `raftlock server` processes on loopback (kill -9 and SIGSTOP only).
    Local,
    /// The docker-compose cluster (`scripts/cluster up` first).
    Docker,
}

#[derive(Parser)]
#[command(
    name = "raftlock-chaos",
    about = "Failover chaos suite with a safety checker"
)]
struct Args {
    #[arg(long, value_enum, default_value = "local")]
    backend: Backend,
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Seed for choosing faults and client timing; printed, so a failure can be replayed.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How many of the clients are readers (shared locks on the same
    /// names); default a third of them.
    #[arg(long)]
    readers: Option<usize>,
    /// Lock names to contend on, comma-separated.
    #[arg(long, default_value = "L", value_delimiter = ',')]
    locks: Vec<String>,
    /// Session TTL in seconds.
    #[arg(long, default_value_t = 3)]
    ttl: u64,
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Faults to draw from, comma-separated (default: all the backend can do).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Local backend: the raftlock binary.
    #[arg(long, default_value = "target/release/raftlock")]
    binary: PathBuf,
    /// Local backend: run every node under this power-loss shim (the
    /// raftlock-powerloss shared object), which enables the power-cut faults.
    #[arg(long, value_name = "SHIM")]
    power_loss: Option<PathBuf>,
    /// Local backend: `--snapshot-every` for the nodes (small values make
    /// faults land during snapshot builds, installs and log purges).
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the whole history (lock, register and fault events) as JSON here.
    #[arg(long)]
    history: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = runtime.block_on(async move {
        match main_async(args).await {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("raftlock-chaos: {e:#}");
                2
            }
        }
    });
    std::process::exit(code);
}

async fn main_async(args: Args) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("raftlock-chaos: seed {seed} (replay with --seed {seed})");
    let faults: Vec<Fault> = if args.faults.is_empty() {
        ALL.to_vec()
    } else {
        args.faults
            .iter()
            .map(|f| Fault::parse(f).ok_or_else(|| anyhow::anyhow!("unknown fault {f:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    let (mut nodes, transport): (Box<dyn Nodes>, Transport) = match args.backend {
        Backend::Local => {
            let every = args.snapshot_every.map(|n| n.to_string());
            let extra: Vec<&str> = match &every {
                Some(n) => vec!["--snapshot-every", n],
                None => Vec::new(),
            };
            let cluster = match &args.power_loss {
                Some(shim) => {
                    LocalCluster::start_under_power_loss(&args.binary, args.nodes, &extra, shim)?
                }
                None => LocalCluster::start_secure(&args.binary, args.nodes, &extra)?,
            };
            // The cluster's own credentials, made for it: not whatever
            // profile the machine's user has.
            let transport = cluster.admin_transport();
            (Box::new(cluster), transport)
        }
        // The environment or the profile (which `scripts/cluster up`
        // writes) says how to reach the nodes, as for any client.
        Backend::Docker => (
            Box::new(DockerCluster::attach(args.nodes)?),
            Transport::Discover,
        ),
    };
    let config = RunConfig {
        rounds: args.rounds,
        seed,
        clients: args.clients,
        readers: args.readers.unwrap_or(args.clients / 3).min(args.clients),
        locks: args.locks,
        ttl: Duration::from_secs(args.ttl),
        faults,
        recovery_bound: Duration::from_secs(60),
        transport,
    };
    let report = run(nodes.as_mut(), config).await?;
    report.print();
    // What the faults hit: snapshot work is where storage bugs hide.
    if let (Some(built), Some(installed)) = (
        nodes.count_in_logs("snapshot built"),
        nodes.count_in_logs("snapshot installed"),
    ) {
        println!("  node logs: {built} snapshots built, {installed} installed from a leader");
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    if let (Some(path), Some(history)) = (args.history, &report.history) {
        let dump = serde_json::json!({
            "locks": *history.locks.lock().unwrap(),
            "register": *history.register.lock().unwrap(),
            "faults": *history.faults.lock().unwrap(),
        });
        std::fs::write(&path, serde_json::to_string(&dump)?)?;
    }
    Ok(report.violations.is_empty())
}
