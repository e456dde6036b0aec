//! A chaos run: the workload runs throughout while each round injects one
//! fault (chosen from a seeded RNG), heals it and waits for full health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raftlock_client::Client;
use raftlock_client::Role;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checker::{self, Availability};
use crate::history::{FaultEvent, History};
use crate::nodes::Nodes;
use crate::register::FencedRegister;
use crate::workload::{Workload, WorkloadConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Fault {
    KillLeader,
    PauseLeader,
    PartitionLeader,
    KillFollower,
    KillTwo,
    RollingRestart,
    PauseHolder,
    /// Power cuts keep only what each node fsynced (local backend under
    /// the power-loss shim): one node, a majority at once, every node.
    PowerCutOne,
    PowerCutMajority,
    PowerCutAll,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::PauseLeader => "pause-leader",
            Fault::PartitionLeader => "partition-leader",
            Fault::KillFollower => "kill-follower",
            Fault::KillTwo => "kill-two",
            Fault::RollingRestart => "rolling-restart",
            Fault::PauseHolder => "pause-holder",
            Fault::PowerCutOne => "power-cut-one",
            Fault::PowerCutMajority => "power-cut-majority",
            Fault::PowerCutAll => "power-cut-all",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        ALL.iter().copied().find(|f| f.name() == name)
    }
}

pub const ALL: [Fault; 10] = [
    Fault::KillLeader,
    Fault::PauseLeader,
    Fault::PartitionLeader,
    Fault::KillFollower,
    Fault::KillTwo,
    Fault::RollingRestart,
    Fault::PauseHolder,
    Fault::PowerCutOne,
    Fault::PowerCutMajority,
    Fault::PowerCutAll,
];

/// The faults that cut power.
pub const POWER_CUTS: [Fault; 3] = [
    Fault::PowerCutOne,
    Fault::PowerCutMajority,
    Fault::PowerCutAll,
];

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub rounds: usize,
    pub seed: u64,
    pub clients: usize,
    pub locks: Vec<String>,
    pub ttl: Duration,
    /// Faults to draw from; those the backend cannot do are left out.
    pub faults: Vec<Fault>,
    /// A round fails if the cluster is not healthy this long after healing.
    pub recovery_bound: Duration,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub rounds: usize,
    pub faults: BTreeMap<String, usize>,
    pub operations: usize,
    pub grants: usize,
    pub register_ops: usize,
    pub stale_refused: usize,
    pub violations: Vec<String>,
    pub availability: BTreeMap<String, Availability>,
    /// The raw history, for digging into a failure.
    #[serde(skip)]
    pub history: Option<Arc<History>>,
}

impl Report {
    pub fn print(&self) {
        println!("raftlock chaos report (seed {})", self.seed);
        println!("  rounds: {}", self.rounds);
        for (kind, n) in &self.faults {
            println!("    {kind:<18} {n}");
        }
        println!(
            "  lock operations: {} ({} grants); register operations: {} ({} refused for a stale token)",
            self.operations, self.grants, self.register_ops, self.stale_refused
        );
        println!("  unavailability per fault (longest time without a grant; heal -> full health):");
        for (kind, a) in &self.availability {
            println!(
                "    {kind:<18} no-grant p50 {:>6} ms  max {:>6} ms   health p50 {:>6} ms  max {:>6} ms",
                a.longest_gap.p50_ms,
                a.longest_gap.max_ms,
                a.heal_to_healthy.p50_ms,
                a.heal_to_healthy.max_ms
            );
        }
        println!("  violations: {}", self.violations.len());
        for v in &self.violations {
            println!("    {v}");
        }
    }
}

/// Runs the rounds against `nodes` and checks the history.
pub async fn run(nodes: &mut dyn Nodes, config: RunConfig) -> anyhow::Result<Report> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let faults: Vec<Fault> = config
        .faults
        .iter()
        .copied()
        .filter(|f| *f != Fault::PartitionLeader || nodes.can_partition())
        .filter(|f| *f != Fault::KillTwo || nodes.ids().len() >= 5)
        .filter(|f| !POWER_CUTS.contains(f) || nodes.can_cut_power())
        .collect();
    anyhow::ensure!(!faults.is_empty(), "no fault this backend can inject");
    let probe = Client::new(nodes.endpoints())?;
    let mut violations = Vec::new();
    wait_healthy(&probe, nodes, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("cluster not healthy before the run: {e}"))?;

    let history = Arc::new(History::new());
    let register = Arc::new(FencedRegister::new(history.clone()));
    let workload = Workload::start(
        WorkloadConfig {
            clients: config.clients,
            locks: config.locks.clone(),
            ttl: config.ttl,
            endpoints: nodes.endpoints(),
            seed: config.seed,
        },
        history.clone(),
        register.clone(),
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let pause = config.ttl + Duration::from_millis(1500);
    for round in 1..=config.rounds {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let fault = faults[rng.gen_range(0..faults.len())];
        let leader = leader(&probe, nodes).await;
        let followers: Vec<u64> = nodes
            .ids()
            .into_iter()
            .filter(|id| Some(*id) != leader)
            .collect();
        let Some(leader) = leader else {
            violations.push(format!("round {round}: no leader before the fault"));
            break;
        };
        let injected = history.now();
        let term_before = leader_term(&probe, nodes, leader).await;
        let mut target = vec![leader];
        let step: anyhow::Result<()> = async {
            match fault {
                Fault::KillLeader => {
                    nodes.kill(leader)?;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    nodes.start(leader)?;
                }
                Fault::PauseLeader => {
                    nodes.pause(leader)?;
                    tokio::time::sleep(pause).await;
                    nodes.resume(leader)?;
                }
                Fault::PartitionLeader => {
                    nodes.partition(leader)?;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    nodes.heal_partition(leader)?;
                }
                Fault::KillFollower => {
                    target = vec![followers[rng.gen_range(0..followers.len())]];
                    nodes.kill(target[0])?;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    nodes.start(target[0])?;
                }
                Fault::KillTwo => {
                    let mut ids = nodes.ids();
                    let a = ids.remove(rng.gen_range(0..ids.len()));
                    let b = ids.remove(rng.gen_range(0..ids.len()));
                    target = vec![a, b];
                    nodes.kill(a)?;
                    nodes.kill(b)?;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    nodes.start(a)?;
                    nodes.start(b)?;
                }
                Fault::RollingRestart => {
                    target = nodes.ids();
                    for id in nodes.ids() {
                        nodes.stop(id)?;
                        nodes.start(id)?;
                        wait_healthy(&probe, nodes, config.recovery_bound)
                            .await
                            .map_err(|e| anyhow::anyhow!("after restarting node {id}: {e}"))?;
                    }
                }
                Fault::PowerCutOne | Fault::PowerCutMajority | Fault::PowerCutAll => {
                    let mut ids = nodes.ids();
                    let cut = match fault {
                        Fault::PowerCutOne => 1,
                        Fault::PowerCutMajority => ids.len() / 2 + 1,
                        _ => ids.len(),
                    };
                    target.clear();
                    while target.len() < cut {
                        target.push(ids.remove(rng.gen_range(0..ids.len())));
                    }
                    // At a random moment: snapshots are built, installed and
                    // the log purged all the time under --snapshot-every.
                    let moment = rng.gen_range(0..1000);
                    tokio::time::sleep(Duration::from_millis(moment)).await;
                    for id in &target {
                        nodes.cut_power(*id)?;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    for id in &target {
                        nodes.start(*id)?;
                    }
                }
                Fault::PauseHolder => {
                    target = workload
                        .pause_a_holder(&mut rng, pause)
                        .map(|c| vec![c as u64])
                        .unwrap_or_default();
                    tokio::time::sleep(pause + Duration::from_millis(500)).await;
                }
            }
            Ok(())
        }
        .await;
        let healed = history.now();
        *counts.entry(fault.name().to_string()).or_default() += 1;
        println!(
            "round {round}/{}: {} {:?}",
            config.rounds,
            fault.name(),
            target
        );
        if let Err(e) = step {
            violations.push(format!(
                "round {round} ({}): could not inject: {e:#}",
                fault.name()
            ));
        }
        let healthy = match wait_healthy(&probe, nodes, config.recovery_bound).await {
            Ok(()) => Some(history.now()),
            Err(e) => {
                violations.push(format!(
                    "round {round} ({}): not healthy within {:?} of healing: {e}",
                    fault.name(),
                    config.recovery_bound
                ));
                None
            }
        };
        // A follower's restart must leave a healthy leader alone.
        if fault == Fault::KillFollower && healthy.is_some() {
            let now = leader_term(&probe, nodes, leader).await;
            if now != term_before || now.is_none() {
                violations.push(format!(
                    "round {round} (kill-follower): node {leader} led in term {:?} before the \
                     follower's restart and in term {now:?} after (None: no longer leads)",
                    term_before
                ));
            }
        }
        history.faults.lock().unwrap().push(FaultEvent {
            kind: fault.name().to_string(),
            target,
            injected,
            healed: Some(healed),
            healthy,
        });
        if healthy.is_none() {
            break;
        }
    }
    // Let the last waits and releases finish before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || workload.stop()).await?;

    let locks = history.locks.lock().unwrap().clone();
    let register_events = history.register.lock().unwrap().clone();
    let fault_events = history.faults.lock().unwrap().clone();
    violations.extend(checker::check_fencing(&register_events));
    violations.extend(checker::check_updates(&register_events, &register.values()));
    violations.extend(checker::check_mutual_exclusion(&locks));
    violations.extend(checker::check_tokens_grow(&locks));
    Ok(Report {
        seed: config.seed,
        rounds: fault_events.len(),
        faults: counts,
        operations: locks.len(),
        grants: locks
            .iter()
            .filter(|e| {
                e.op == crate::history::LockOp::Acquire
                    && matches!(e.outcome, crate::history::Outcome::Ok(_))
            })
            .count(),
        register_ops: register_events.len(),
        stale_refused: register_events.iter().filter(|e| !e.accepted).count(),
        violations,
        availability: checker::availability(&fault_events, &locks),
        history: Some(history.clone()),
    })
}

/// The node every reachable member calls leader, if they agree.
pub async fn leader(probe: &Client, nodes: &dyn Nodes) -> Option<u64> {
    for _ in 0..100 {
        let mut leaders = Vec::new();
        for id in nodes.ids() {
            if let Ok(s) = probe
                .node_status(&nodes.endpoint(id), Duration::from_millis(500))
                .await
            {
                if s.role() == Role::Leader {
                    leaders.push(s.id);
                }
            }
        }
        if leaders.len() == 1 {
            return Some(leaders[0]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The term node `id` leads in, if it answers and leads.
async fn leader_term(probe: &Client, nodes: &dyn Nodes, id: u64) -> Option<u64> {
    let s = probe
        .node_status(&nodes.endpoint(id), Duration::from_millis(500))
        .await
        .ok()?;
    (s.role() == Role::Leader).then_some(s.term)
}

/// Healthy: every node answers, all name the same leader, which says it
/// leads, and every node has applied what the leader had applied when
/// the check began.
pub async fn wait_healthy(
    probe: &Client,
    nodes: &dyn Nodes,
    within: Duration,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + within;
    let mut why = String::from("not checked");
    let mut target: Option<u64> = None;
    while tokio::time::Instant::now() < until {
        let mut statuses = Vec::new();
        for id in nodes.ids() {
            match probe
                .node_status(&nodes.endpoint(id), Duration::from_millis(500))
                .await
            {
                Ok(s) => statuses.push(s),
                Err(e) => why = format!("node {id} unreachable: {e}"),
            }
        }
        if statuses.len() == nodes.ids().len() {
            let leaders: Vec<u64> = statuses
                .iter()
                .filter(|s| s.role() == Role::Leader)
                .map(|s| s.id)
                .collect();
            let agreed = statuses
                .iter()
                .all(|s| s.has_leader && leaders.first() == Some(&s.leader_id));
            if leaders.len() == 1 && agreed {
                let leader_applied = statuses
                    .iter()
                    .find(|s| s.id == leaders[0])
                    .map_or(0, |s| s.last_applied);
                let goal = *target.get_or_insert(leader_applied);
                let lagging: Vec<u64> = statuses
                    .iter()
                    .filter(|s| s.last_applied < goal)
                    .map(|s| s.id)
                    .collect();
                if lagging.is_empty() {
                    return Ok(());
                }
                why = format!("nodes {lagging:?} behind index {goal}");
            } else {
                why = format!("leaders {leaders:?}, agreement {agreed}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(why)
}
