//! The wire fuzzer: two one-node clusters of the real binary, one
//! `--insecure` (plain HTTP/2 and protobuf from anyone) and one secure
//! (TLS, tokens, node certificates), and bursts of hostile traffic at
//! their client and peer ports. After every burst the node must answer a
//! valid client within a timeout, have logged no panic, and still show
//! the same lock table (the same holder with the same token). One burst
//! is one execution; a broken node is a finding, and is restarted.

mod bodies;
mod calls;
mod conn;
mod raw;
mod target;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use raftlock_node::codec;
use rand::rngs::StdRng;
use rand::Rng;

use self::bodies::Service;
use self::calls::CallContext;
use self::target::Target;
use crate::findings::{Finding, PartReport};
use crate::seed;

/// Longest one burst may take on the fuzzer's side.
const BURST_WITHIN: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Burst {
    RandomTcp,
    H2Frames,
    LockCalls,
    RaftCalls,
    ClusterCalls,
    Oversized,
    StreamFlood,
}

impl Burst {
    fn pick(rng: &mut StdRng) -> Burst {
        match rng.gen_range(0..16) {
            0..=2 => Burst::RandomTcp,
            3..=5 => Burst::H2Frames,
            6..=8 => Burst::LockCalls,
            9..=11 => Burst::RaftCalls,
            12 => Burst::ClusterCalls,
            13 | 14 => Burst::Oversized,
            _ => Burst::StreamFlood,
        }
    }
}

/// The peer port as a burst that wants its payloads decoded reaches it:
/// with the node's certificate on a secure node (mostly), else as anyone.
fn peer_dialer<'a>(rng: &mut StdRng, target: &'a Target) -> &'a conn::Dialer {
    match &target.peer_port_as_node {
        Some(as_node) if rng.gen_ratio(3, 4) => as_node,
        _ => &target.peer_port,
    }
}

/// Sends burst `kind` at `target`; returns the bytes (or streams) sent.
async fn send_burst(
    rng: &mut StdRng,
    kind: Burst,
    target: &Target,
    answers: &calls::Answers,
) -> anyhow::Result<u64> {
    let session_id = target.session_id();
    let on_peer = rng.gen_ratio(1, 3);
    let port = if on_peer {
        &target.peer_port
    } else {
        &target.client_port
    };
    let cx = |dialer| CallContext {
        dialer,
        admin_token: target.admin_token.as_deref(),
        session_id: &session_id,
        answers,
    };
    match kind {
        Burst::RandomTcp => raw::random_tcp(rng, port).await,
        Burst::H2Frames => raw::h2_frames(rng, port).await,
        Burst::LockCalls => {
            let services = [
                Service::Lock,
                Service::Lock,
                Service::Lock,
                Service::Unknown,
            ];
            calls::garbage_calls(rng, &cx(&target.client_port), &services).await
        }
        Burst::RaftCalls => {
            let dialer = peer_dialer(rng, target);
            calls::garbage_calls(
                rng,
                &cx(dialer),
                &[Service::Raft, Service::Raft, Service::Lock],
            )
            .await
        }
        Burst::ClusterCalls => {
            calls::garbage_calls(rng, &cx(&target.peer_port), &[Service::Cluster]).await
        }
        Burst::Oversized => {
            if rng.gen_ratio(1, 4) {
                let dialer = peer_dialer(rng, target);
                let path = "/raftlock.raft.v1.Raft/AppendEntries";
                calls::oversized(rng, &cx(dialer), path, RAFT_LIMIT).await
            } else {
                let path = "/raftlock.v1.Lock/Acquire";
                calls::oversized(rng, &cx(&target.client_port), path, CLIENT_LIMIT).await
            }
        }
        Burst::StreamFlood => {
            let path = if on_peer {
                "/raftlock.raft.v1.Raft/Vote"
            } else {
                "/raftlock.v1.Lock/Status"
            };
            calls::stream_flood(rng, &cx(port), path).await
        }
    }
}

/// The node's largest client message.
const CLIENT_LIMIT: usize = raftlock_node::MAX_CLIENT_MESSAGE;

/// The node's largest Raft message.
const RAFT_LIMIT: usize = raftlock_node::MAX_RAFT_MESSAGE;
// The decoder's own limit is above it: the message limit is the binding one.
const _: () = assert!(codec::MAX_DECODE_BYTES > RAFT_LIMIT as u64);

/// What burst `burst_seed` is, which target it goes to, and the rng that
/// makes the rest of it.
fn plan(burst_seed: u64) -> (Burst, usize, StdRng) {
    let mut rng = seed::rng(burst_seed);
    let kind = Burst::pick(&mut rng);
    let target = rng.gen_range(0..2);
    (kind, target, rng)
}

#[derive(Default)]
struct Tally {
    bursts: BTreeMap<(Burst, &'static str), u64>,
    sent: u64,
    refused: u64,
    slow: u64,
    answers: calls::Answers,
}

/// Runs until `deadline`.
pub fn run(run_seed: u64, deadline: Instant, binary: &Path, findings_dir: &Path) -> PartReport {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let mut report = PartReport::default();
    match runtime {
        Ok(rt) => rt.block_on(run_bursts(
            run_seed,
            deadline,
            binary,
            findings_dir,
            &mut report,
        )),
        Err(e) => report.notes.push(format!("no tokio runtime: {e}")),
    }
    report
}

async fn start_targets(binary: &Path) -> Result<[Target; 2], String> {
    let insecure = Target::start(binary, false).await;
    let secure = Target::start(binary, true).await;
    match (insecure, secure) {
        (Ok(a), Ok(b)) => Ok([a, b]),
        (Err(e), _) | (_, Err(e)) => Err(format!("{e:#}")),
    }
}

async fn run_bursts(
    run_seed: u64,
    deadline: Instant,
    binary: &Path,
    findings_dir: &Path,
    report: &mut PartReport,
) {
    let mut targets = match start_targets(binary).await {
        Ok(targets) => targets,
        Err(e) => {
            let finding = Finding::new("wire: the nodes did not start", e, String::new());
            report.found(findings_dir, "wire", finding);
            return;
        }
    };
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let burst_seed = seed::derive(run_seed, "wire", report.executions);
        report.executions += 1;
        let (kind, which, mut rng) = plan(burst_seed);
        let target = &mut targets[which];
        *tally.bursts.entry((kind, target.name())).or_default() += 1;
        match tokio::time::timeout(
            BURST_WITHIN,
            send_burst(&mut rng, kind, target, &tally.answers),
        )
        .await
        {
            Ok(Ok(sent)) => tally.sent += sent,
            Ok(Err(_)) => tally.refused += 1,
            Err(_) => tally.slow += 1,
        }
        if let Err(problem) = target.check().await {
            let title = format!("{kind:?} burst broke the {}", target.name());
            let replay = format!("raftlock-fuzz --replay-wire {burst_seed}");
            let detail = format!("burst seed {burst_seed}\n{problem}");
            report.found(findings_dir, "wire", Finding::new(title, detail, replay));
            // A fresh node for the bursts that follow.
            match Target::start(binary, target.secure).await {
                Ok(fresh) => *target = fresh,
                Err(e) => {
                    report
                        .notes
                        .push(format!("could not restart the node: {e:#}"));
                    break;
                }
            }
        }
    }
    report.notes.extend(tally.notes());
}

impl Tally {
    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .bursts
            .iter()
            .map(|((kind, target), n)| format!("{n} {kind:?} bursts at the {target}"))
            .collect();
        notes.push(format!(
            "{} bytes/streams sent; {} bursts cut short by the node (refused or hung up); \
             {} took over {BURST_WITHIN:?} on the fuzzer's side",
            self.sent, self.refused, self.slow
        ));
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        notes.push("answers to calls (method, answer: count):".into());
        notes.extend(answers.iter().map(|(a, n)| format!("  {a}: {n}")));
        notes
    }
}

/// Starts both nodes, sends burst `burst_seed` again and checks the node.
pub fn replay(burst_seed: u64, binary: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut targets = start_targets(binary).await?;
        let (kind, which, mut rng) = plan(burst_seed);
        let target = &mut targets[which];
        println!("burst {burst_seed}: {kind:?} at the {}", target.name());
        let answers = calls::Answers::default();
        let burst = send_burst(&mut rng, kind, target, &answers);
        let sent = tokio::time::timeout(BURST_WITHIN, burst).await;
        println!(
            "sent: {sent:?}; answers: {:?}",
            answers.lock().map(|a| a.clone())
        );
        target
            .check()
            .await
            .map_err(|problem| format!("{problem}\n{}", target.logs()))
    })
}
