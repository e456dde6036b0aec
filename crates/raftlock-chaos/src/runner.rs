//! A chaos run: the workload runs throughout while each round injects one
//! fault (chosen from a seeded RNG), heals it and waits for full health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raftlock_client::Role;
use raftlock_client::{Client, ClientOptions, Transport};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checker::{self, Availability};
use crate::history::{Access, At, FaultEvent, History, LockEvent, LockOp, Outcome};
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
    /// How many of the clients read under shared locks (the rest write).
    pub readers: usize,
    pub locks: Vec<String>,
    pub ttl: Duration,
    /// Faults to draw from; those the backend cannot do are left out.
    pub faults: Vec<Fault>,
    /// A round fails if the cluster is not healthy this long after healing.
    pub recovery_bound: Duration,
    /// How the workload and the health probe reach the nodes.
    pub transport: Transport,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub rounds: usize,
    pub faults: BTreeMap<String, usize>,
    pub operations: usize,
    /// Lock operations whose outcome the client never learned.
    pub unknown_outcomes: usize,
    pub grants: usize,
    /// Of the grants, those to readers (shared).
    pub shared_grants: usize,
    pub register_ops: usize,
    pub stale_refused: usize,
    /// Readers' holds (each reads the register twice); those whose last
    /// read was refused as stale (a writer used the register after the
    /// reader's session had expired).
    pub reads: usize,
    pub reads_refused: usize,
    pub violations: Vec<String>,
    /// Checks that ran out of budget: neither passed nor failed.
    pub inconclusive: Vec<String>,
    /// How long the checker took on the whole history, and the states the
    /// writers' mutex search visited.
    pub checker_ms: u64,
    pub search_states: usize,
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
            "  lock operations: {} ({} grants, {} shared; {} with unknown outcome); register operations: {} ({} refused for a stale token)",
            self.operations,
            self.grants,
            self.shared_grants,
            self.unknown_outcomes,
            self.register_ops,
            self.stale_refused
        );
        println!(
            "  reader holds: {} ({} with the last read refused as stale)",
            self.reads, self.reads_refused
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
        println!(
            "  checker: {} ms, {} mutex-search states",
            self.checker_ms, self.search_states
        );
        println!("  inconclusive: {}", self.inconclusive.len());
        for i in &self.inconclusive {
            println!("    {i}");
        }
        println!("  violations: {}", self.violations.len());
        for v in &self.violations {
            println!("    {v}");
        }
    }
}

/// Runs the rounds against `nodes` and checks the history.
pub async fn run(nodes: &mut dyn Nodes, config: RunConfig) -> anyhow::Result<Report> {
    let faults = usable_faults(&config.faults, &*nodes);
    anyhow::ensure!(!faults.is_empty(), "no fault this backend can inject");
    let probe = Client::with_options(
        nodes.endpoints(),
        ClientOptions {
            transport: config.transport.clone(),
            ..ClientOptions::default()
        },
    )?;
    wait_healthy(&probe, nodes, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("cluster not healthy before the run: {e}"))?;

    let history = Arc::new(History::new());
    let register = Arc::new(FencedRegister::new(history.clone()));
    let workload = Workload::start(
        WorkloadConfig {
            clients: config.clients,
            readers: config.readers,
            locks: config.locks.clone(),
            ttl: config.ttl,
            endpoints: nodes.endpoints(),
            seed: config.seed,
            transport: config.transport.clone(),
        },
        history.clone(),
        register.clone(),
    );
    let mut run = Rounds {
        nodes,
        probe,
        rng: rand::rngs::StdRng::seed_from_u64(config.seed),
        history: history.clone(),
        workload: &workload,
        pause: config.ttl + PAUSE_PAST_TTL,
        config: &config,
        violations: Vec::new(),
        counts: BTreeMap::new(),
    };
    for round in 1..=config.rounds {
        tokio::time::sleep(BETWEEN_ROUNDS).await;
        let fault = faults[run.rng.gen_range(0..faults.len())];
        if !run.round(round, fault).await {
            break;
        }
    }
    let (violations, counts) = (run.violations, run.counts);
    // Let the last waits and releases finish before judging.
    tokio::time::sleep(SETTLE_BEFORE_JUDGING).await;
    tokio::task::spawn_blocking(move || workload.stop()).await?;
    Ok(judge(config.seed, history, &register, violations, counts))
}

/// How long a paused node or holder stays paused beyond its session TTL, so
/// its session surely expires meanwhile.
const PAUSE_PAST_TTL: Duration = Duration::from_millis(1500);
/// Quiet time before each fault, so every round starts from steady work.
const BETWEEN_ROUNDS: Duration = Duration::from_secs(1);
const SETTLE_BEFORE_JUDGING: Duration = Duration::from_millis(500);

/// The configured faults this backend can inject.
fn usable_faults(wanted: &[Fault], nodes: &dyn Nodes) -> Vec<Fault> {
    wanted
        .iter()
        .copied()
        .filter(|f| *f != Fault::PartitionLeader || nodes.can_partition())
        .filter(|f| *f != Fault::KillTwo || nodes.ids().len() >= 5)
        .filter(|f| !POWER_CUTS.contains(f) || nodes.can_cut_power())
        .collect()
}

/// The state the rounds share: the cluster, the workload and what went wrong.
struct Rounds<'a> {
    nodes: &'a mut dyn Nodes,
    probe: Client,
    rng: rand::rngs::StdRng,
    history: Arc<History>,
    workload: &'a Workload,
    pause: Duration,
    config: &'a RunConfig,
    violations: Vec<String>,
    counts: BTreeMap<String, usize>,
}

impl Rounds<'_> {
    /// One round: inject `fault`, heal it, wait for health and record it.
    /// False when the run cannot go on (no leader, or never healthy again).
    async fn round(&mut self, round: usize, fault: Fault) -> bool {
        let Some(leader) = leader(&self.probe, &*self.nodes).await else {
            self.violations
                .push(format!("round {round}: no leader before the fault"));
            return false;
        };
        let injected = self.history.now();
        let term_before = leader_term(&self.probe, &*self.nodes, leader).await;
        let injection = self.inject(fault, leader).await;
        let healed = self.history.now();
        *self.counts.entry(fault.name().to_string()).or_default() += 1;
        let target = match injection {
            Ok(target) => target,
            Err((target, e)) => {
                self.violations.push(format!(
                    "round {round} ({}): could not inject: {e:#}",
                    fault.name()
                ));
                target
            }
        };
        println!(
            "round {round}/{}: {} {:?}",
            self.config.rounds,
            fault.name(),
            target
        );
        let healthy = self.wait_recovered(round, fault).await;
        if fault == Fault::KillFollower && healthy.is_some() {
            self.check_leader_kept(round, leader, term_before).await;
        }
        self.history.faults.lock().unwrap().push(FaultEvent {
            kind: fault.name().to_string(),
            target,
            injected,
            healed: Some(healed),
            healthy,
        });
        healthy.is_some()
    }

    /// Injects and heals `fault`; the nodes (or client) it hit, also when
    /// it failed part way.
    async fn inject(
        &mut self,
        fault: Fault,
        leader: u64,
    ) -> Result<Vec<u64>, (Vec<u64>, anyhow::Error)> {
        let mut target = vec![leader];
        let result = self.inject_into(fault, leader, &mut target).await;
        match result {
            Ok(()) => Ok(target),
            Err(e) => Err((target, e)),
        }
    }

    async fn inject_into(
        &mut self,
        fault: Fault,
        leader: u64,
        target: &mut Vec<u64>,
    ) -> anyhow::Result<()> {
        let nodes = &mut *self.nodes;
        match fault {
            Fault::KillLeader => {
                nodes.kill(leader)?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                nodes.start(leader)?;
            }
            Fault::PauseLeader => {
                nodes.pause(leader)?;
                tokio::time::sleep(self.pause).await;
                nodes.resume(leader)?;
            }
            Fault::PartitionLeader => {
                nodes.partition(leader)?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                nodes.heal_partition(leader)?;
            }
            Fault::KillFollower => {
                let followers: Vec<u64> =
                    nodes.ids().into_iter().filter(|id| *id != leader).collect();
                *target = vec![followers[self.rng.gen_range(0..followers.len())]];
                nodes.kill(target[0])?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                nodes.start(target[0])?;
            }
            Fault::KillTwo => {
                *target = pick(&mut self.rng, nodes.ids(), 2);
                for id in target.iter() {
                    nodes.kill(*id)?;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
                for id in target.iter() {
                    nodes.start(*id)?;
                }
            }
            Fault::RollingRestart => {
                *target = nodes.ids();
                for id in nodes.ids() {
                    nodes.stop(id)?;
                    nodes.start(id)?;
                    wait_healthy(&self.probe, nodes, self.config.recovery_bound)
                        .await
                        .map_err(|e| anyhow::anyhow!("after restarting node {id}: {e}"))?;
                }
            }
            Fault::PowerCutOne | Fault::PowerCutMajority | Fault::PowerCutAll => {
                let all = nodes.ids().len();
                let cut = match fault {
                    Fault::PowerCutOne => 1,
                    Fault::PowerCutMajority => all / 2 + 1,
                    _ => all,
                };
                *target = pick(&mut self.rng, nodes.ids(), cut);
                // At a random moment: snapshots are built, installed and
                // the log purged all the time under --snapshot-every.
                let moment = self.rng.gen_range(0..1000);
                tokio::time::sleep(Duration::from_millis(moment)).await;
                for id in target.iter() {
                    nodes.cut_power(*id)?;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                for id in target.iter() {
                    nodes.start(*id)?;
                }
            }
            Fault::PauseHolder => {
                *target = self
                    .workload
                    .pause_a_holder(&mut self.rng, self.pause)
                    .map(|c| vec![c as u64])
                    .unwrap_or_default();
                tokio::time::sleep(self.pause + Duration::from_millis(500)).await;
            }
        }
        Ok(())
    }

    /// When the cluster was fully healthy again, or None (a violation).
    async fn wait_recovered(&mut self, round: usize, fault: Fault) -> Option<At> {
        match wait_healthy(&self.probe, &*self.nodes, self.config.recovery_bound).await {
            Ok(()) => Some(self.history.now()),
            Err(e) => {
                self.violations.push(format!(
                    "round {round} ({}): not healthy within {:?} of healing: {e}",
                    fault.name(),
                    self.config.recovery_bound
                ));
                None
            }
        }
    }

    /// A follower's restart must leave a healthy leader alone.
    async fn check_leader_kept(&mut self, round: usize, leader: u64, term_before: Option<u64>) {
        let now = leader_term(&self.probe, &*self.nodes, leader).await;
        if now != term_before || now.is_none() {
            self.violations.push(format!(
                "round {round} (kill-follower): node {leader} led in term {term_before:?} before \
                 the follower's restart and in term {now:?} after (None: no longer leads)"
            ));
        }
    }
}

/// `n` distinct ids drawn from `ids`.
fn pick(rng: &mut impl Rng, mut ids: Vec<u64>, n: usize) -> Vec<u64> {
    let mut picked = Vec::with_capacity(n);
    while picked.len() < n && !ids.is_empty() {
        picked.push(ids.remove(rng.gen_range(0..ids.len())));
    }
    picked
}

/// Checks the whole history and makes the report.
fn judge(
    seed: u64,
    history: Arc<History>,
    register: &FencedRegister,
    mut violations: Vec<String>,
    counts: BTreeMap<String, usize>,
) -> Report {
    let locks = history.locks.lock().unwrap().clone();
    let register_events = history.register.lock().unwrap().clone();
    let fault_events = history.faults.lock().unwrap().clone();
    let checking = std::time::Instant::now();
    let findings = checker::check_all(&locks, &register_events, &register.values());
    let checker_ms = checking.elapsed().as_millis() as u64;
    violations.extend(findings.violations);
    let granted: Vec<&LockEvent> = locks
        .iter()
        .filter(|e| e.op == LockOp::Acquire && matches!(e.outcome, Outcome::Ok(_)))
        .collect();
    let read_ends = register_events
        .iter()
        .filter(|e| e.access == Access::ReadEnd);
    Report {
        seed,
        rounds: fault_events.len(),
        faults: counts,
        operations: locks.len(),
        unknown_outcomes: locks
            .iter()
            .filter(|e| e.outcome == Outcome::Unknown)
            .count(),
        grants: granted.len(),
        shared_grants: granted.iter().filter(|e| e.shared).count(),
        register_ops: register_events.len(),
        stale_refused: register_events.iter().filter(|e| !e.accepted).count(),
        reads: read_ends.clone().count(),
        reads_refused: read_ends.filter(|e| !e.accepted).count(),
        violations,
        inconclusive: findings.inconclusive,
        checker_ms,
        search_states: findings.search_states,
        availability: checker::availability(&fault_events, &locks),
        history: Some(history),
    }
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
