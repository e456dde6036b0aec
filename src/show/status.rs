//! `raftlock status`: every member's role, term and progress, asked of each
//! node directly, and whether the cluster has a leader and a majority.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raftlock_client::{client_addr, Client, Error, Role, StatusResponse};
use serde::Serialize;

use super::quotas::{self, QuotaReport};
use crate::exit;

#[derive(Serialize)]
struct MemberStatus {
    id: u64,
    /// The member's client address as the cluster knows it.
    addr: String,
    /// Where the other nodes reach it (the same as `addr` for a node
    /// without a peer port).
    peer_addr: String,
    /// Where this command reached it (a given endpoint or `addr`).
    endpoint: Option<String>,
    reachable: bool,
    role: String,
    term: Option<u64>,
    last_applied: Option<u64>,
    /// Entries behind the leader's log (applied index vs leader's last index).
    lag: Option<u64>,
    snapshot_index: Option<u64>,
    uptime_ms: Option<u64>,
    version: Option<String>,
    voter: bool,
    /// Why it could not be asked, when unreachable.
    error: Option<String>,
}

#[derive(Serialize)]
struct Unanswered {
    endpoint: String,
    error: String,
}

#[derive(Serialize)]
struct ClusterStatus {
    /// The leader of the highest term any answering node knows of.
    leader: Option<u64>,
    /// The leader itself answered, as leader of that term.
    leader_confirmed: bool,
    /// A majority of the voters answered.
    quorum: bool,
    members: Vec<MemberStatus>,
    /// Given endpoints that did not answer and are no known member's address.
    unanswered: Vec<Unanswered>,
    /// The node whose table the quotas come from.
    quotas_from: Option<u64>,
    /// Each quota's use against its limit.
    quotas: Vec<QuotaReport>,
}

/// A node's answer and the address it came from.
struct Seen {
    status: StatusResponse,
    endpoint: String,
}

/// How long each node gets to answer: it answers from memory, and one
/// that is down must not hold the command up.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Node id -> its answer.
type Answers = BTreeMap<u64, Seen>;
/// Member id -> its addresses and whether it votes.
type Members = BTreeMap<u64, Known>;

/// A member as the membership lists it.
struct Known {
    client: String,
    peer: String,
    voter: bool,
}

/// Asks every endpoint and every member the answering nodes know of.
/// Exits [`exit::OK`] only if the leader answers and a majority of the
/// voters do, so scripts (and the container health check) can use it;
/// [`exit::UNAVAILABLE`] if nothing answers at all.
pub async fn status(client: Client, json: bool) -> i32 {
    let (mut seen, failed, refused) = ask_endpoints(&client).await;
    if seen.is_empty() {
        // Refused as this caller: say so, not that nobody is there.
        if let Some(error) = refused {
            return exit::unavailable(&error);
        }
        return nobody_answers(&failed);
    }
    let members = membership(&seen);
    let errors = ask_other_members(&client, &members, &mut seen, &failed).await;
    let report = assemble(&seen, &members, &errors, &failed);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        print_table(&report, &seen);
    }
    if report.leader_confirmed && report.quorum {
        exit::OK
    } else {
        exit::UNHEALTHY
    }
}

/// The given endpoints' answers, why each of the others gave none, and
/// the first refusal of this client's credentials among those.
async fn ask_endpoints(client: &Client) -> (Answers, BTreeMap<String, String>, Option<Error>) {
    let mut seen = Answers::new();
    let mut failed = BTreeMap::new();
    let mut refused = None;
    for (endpoint, answer) in ask_all(client, client.endpoints(), ASK_TIMEOUT).await {
        match answer {
            Ok(status) => {
                seen.entry(status.id).or_insert(Seen { status, endpoint });
            }
            Err(e) => {
                failed.insert(endpoint, reason(&e));
                if refused.is_none() && exit::code(&e) != exit::UNAVAILABLE {
                    refused = Some(e);
                }
            }
        }
    }
    (seen, failed, refused)
}

fn nobody_answers(failed: &BTreeMap<String, String>) -> i32 {
    let what: Vec<String> = failed
        .iter()
        .map(|(e, why)| format!("{e} ({why})"))
        .collect();
    eprintln!("raftlock: no raftlock node answers at {}", what.join(", "));
    exit::UNAVAILABLE
}

/// The membership as the most up-to-date answering node has it.
fn membership(seen: &Answers) -> Members {
    seen.values()
        .map(|s| &s.status)
        .max_by_key(|s| (s.role() == Role::Leader, s.term, s.last_applied))
        .map(|s| {
            s.members
                .iter()
                .map(|m| {
                    let known = Known {
                        client: client_addr(m).to_string(),
                        peer: m.addr.clone(),
                        voter: m.voter,
                    };
                    (m.id, known)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asks the members no given endpoint led to at their own address, unless
/// that is a given endpoint that already failed; adds their answers to
/// `seen`. Returns why each member that did not answer did not.
async fn ask_other_members(
    client: &Client,
    members: &Members,
    seen: &mut Answers,
    failed: &BTreeMap<String, String>,
) -> BTreeMap<u64, String> {
    let mut errors = BTreeMap::new();
    let mut missing = Vec::new();
    for (id, known) in members {
        if seen.contains_key(id) {
            continue;
        }
        match failed.get(&known.client) {
            Some(why) => {
                errors.insert(*id, why.clone());
            }
            None => missing.push(known.client.clone()),
        }
    }
    for (addr, answer) in ask_all(client, &missing, ASK_TIMEOUT).await {
        let id = members
            .iter()
            .find(|(_, m)| m.client == addr)
            .map(|(id, _)| *id);
        match answer {
            Ok(status) => {
                seen.entry(status.id).or_insert(Seen {
                    status,
                    endpoint: addr,
                });
            }
            Err(e) => {
                errors.extend(id.map(|id| (id, reason(&e))));
            }
        }
    }
    errors
}

/// Judges what the answers say: the leader, the quorum, each member.
fn assemble(
    seen: &Answers,
    members: &Members,
    errors: &BTreeMap<u64, String>,
    failed: &BTreeMap<String, String>,
) -> ClusterStatus {
    // Every answering node names the leader of its term, if it knows one;
    // the highest term wins (an old leader may not know it was replaced).
    let leader = seen
        .values()
        .filter(|s| s.status.has_leader)
        .map(|s| (s.status.term, s.status.leader_id))
        .max();
    let leader_confirmed = leader.is_some_and(|(term, id)| {
        seen.get(&id)
            .is_some_and(|s| s.status.role() == Role::Leader && s.status.term == term)
    });
    let leader_last = leader
        .filter(|_| leader_confirmed)
        .and_then(|(_, id)| seen.get(&id))
        .map(|s| s.status.last_log_index);
    let voters: Vec<u64> = members
        .iter()
        .filter(|(_, m)| m.voter)
        .map(|(id, _)| *id)
        .collect();
    let answering = voters.iter().filter(|v| seen.contains_key(v)).count();
    let ids: BTreeSet<u64> = members.keys().chain(seen.keys()).copied().collect();
    let member_addrs: BTreeSet<&str> = members.values().map(|m| m.client.as_str()).collect();
    // The leader's table is the newest; without it, the most applied one.
    let quota_source = (leader.filter(|_| leader_confirmed))
        .and_then(|(_, id)| seen.get(&id))
        .or_else(|| seen.values().max_by_key(|s| s.status.last_applied));
    ClusterStatus {
        quotas_from: quota_source.map(|s| s.status.id),
        quotas: quota_source.map_or_else(Vec::new, |s| quotas::quotas_of(&s.status)),
        leader: leader.map(|(_, id)| id),
        leader_confirmed,
        quorum: !voters.is_empty() && answering * 2 > voters.len(),
        members: ids
            .into_iter()
            .map(|id| {
                let known = members.get(&id);
                match seen.get(&id) {
                    Some(s) => answered(s, known, leader_last),
                    None => unreachable(id, known, errors.get(&id)),
                }
            })
            .collect(),
        unanswered: failed
            .iter()
            .filter(|(endpoint, _)| !member_addrs.contains(endpoint.as_str()))
            .map(|(endpoint, error)| Unanswered {
                endpoint: endpoint.clone(),
                error: error.clone(),
            })
            .collect(),
    }
}

fn answered(seen: &Seen, known: Option<&Known>, leader_last: Option<u64>) -> MemberStatus {
    let s = &seen.status;
    // A node from before the split reports no peer address: its one
    // address serves both.
    let own_peer = if s.peer_addr.is_empty() {
        &s.addr
    } else {
        &s.peer_addr
    };
    MemberStatus {
        id: s.id,
        addr: known.map_or_else(|| s.addr.clone(), |k| k.client.clone()),
        peer_addr: known.map_or_else(|| own_peer.clone(), |k| k.peer.clone()),
        endpoint: Some(seen.endpoint.clone()),
        reachable: true,
        role: s.role().label().into(),
        term: Some(s.term),
        last_applied: Some(s.last_applied),
        lag: leader_last.map(|last| last.saturating_sub(s.last_applied)),
        snapshot_index: Some(s.snapshot_index),
        uptime_ms: Some(s.uptime_ms),
        version: Some(s.version.clone()),
        voter: known.is_some_and(|k| k.voter),
        error: None,
    }
}

fn unreachable(id: u64, known: Option<&Known>, error: Option<&String>) -> MemberStatus {
    MemberStatus {
        id,
        addr: known.map(|k| k.client.clone()).unwrap_or_default(),
        peer_addr: known.map(|k| k.peer.clone()).unwrap_or_default(),
        endpoint: None,
        reachable: false,
        role: "unreachable".into(),
        term: None,
        last_applied: None,
        lag: None,
        snapshot_index: None,
        uptime_ms: None,
        version: None,
        voter: known.is_some_and(|k| k.voter),
        error: error.cloned(),
    }
}

/// The report for people: a row per member, who does not answer, and
/// what that means for the leader and the quorum.
fn print_table(report: &ClusterStatus, seen: &Answers) {
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    println!(
        "{:<4} {:<22} {:<22} {:<11} {:>5} {:>10} {:>7} {:>10} {:>9}  {:<8} REACHABLE",
        "ID",
        "ADDRESS",
        "PEER ADDRESS",
        "ROLE",
        "TERM",
        "APPLIED",
        "LAG",
        "SNAPSHOT",
        "UPTIME",
        "VERSION"
    );
    for m in &report.members {
        println!(
            "{:<4} {:<22} {:<22} {:<11} {:>5} {:>10} {:>7} {:>10} {:>9}  {:<8} {}",
            m.id,
            m.addr,
            m.peer_addr,
            m.role,
            dash(m.term),
            dash(m.last_applied),
            dash(m.lag),
            dash(m.snapshot_index),
            m.uptime_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{}s", ms / 1000)),
            m.version.as_deref().unwrap_or("-"),
            if m.reachable { "yes" } else { "no" }
        );
    }
    for m in report.members.iter().filter(|m| !m.reachable) {
        let why = m.error.as_deref().unwrap_or("not asked");
        println!("node {} does not answer at {}: {why}", m.id, m.addr);
    }
    for u in &report.unanswered {
        println!("no answer at {}: {}", u.endpoint, u.error);
    }
    print_verdict(report, seen);
    if let Some(node) = report.quotas_from {
        quotas::print(&report.quotas, node);
    }
}

/// The leader and quorum lines under the table.
fn print_verdict(report: &ClusterStatus, seen: &Answers) {
    let voters = report.members.iter().filter(|m| m.voter).count();
    let answering = report
        .members
        .iter()
        .filter(|m| m.voter && m.reachable)
        .count();
    match report.leader {
        Some(id) if report.leader_confirmed => println!("leader: node {id}"),
        Some(id) => {
            let reporters: Vec<String> = seen
                .values()
                .filter(|s| s.status.has_leader && s.status.leader_id == id)
                .map(|s| s.status.id.to_string())
                .collect();
            println!(
                "leader: node {id}, as node {} reports (node {id} itself does not answer here)",
                reporters.join(", ")
            );
        }
        None => println!("leader: none (no quorum, or an election is under way)"),
    }
    if !report.quorum {
        if report.leader.is_some() {
            println!(
                "quorum: not confirmed from here ({answering} of {voters} voters answer; \
                 give each node's endpoint to see them all)"
            );
        } else {
            println!("quorum: LOST ({answering} of {voters} voters answer, none knows a leader)");
        }
    }
}

/// Each address's own status, asked in parallel.
async fn ask_all(
    client: &Client,
    addrs: &[String],
    timeout: Duration,
) -> Vec<(String, Result<StatusResponse, Error>)> {
    let tasks: Vec<_> = addrs
        .iter()
        .map(|addr| {
            let client = client.clone();
            let addr = addr.clone();
            tokio::spawn(async move {
                let answer = client.node_status(&addr, timeout).await;
                (addr, answer)
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        if let Ok(answer) = task.await {
            out.push(answer);
        }
    }
    out
}

/// The reason alone: node_status errors already name the address.
fn reason(e: &Error) -> String {
    match e {
        Error::Unavailable(text) => text
            .split_once(": ")
            .map_or(text.as_str(), |(_, why)| why)
            .to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlock_client::Member;

    fn member(id: u64) -> Member {
        Member {
            id,
            addr: format!("node{id}:7999"),
            voter: true,
            client_addr: format!("node{id}:7899"),
        }
    }

    fn answer(id: u64, role: Role, term: u64, leader: Option<u64>) -> Seen {
        Seen {
            status: StatusResponse {
                id,
                addr: format!("node{id}:7899"),
                role: role.into(),
                term,
                last_applied: 10,
                last_log_index: 12,
                has_leader: leader.is_some(),
                leader_id: leader.unwrap_or(0),
                members: (1..=3).map(member).collect(),
                ..StatusResponse::default()
            },
            endpoint: format!("127.0.0.1:{}", 7898 + id),
        }
    }

    fn members() -> Members {
        let known = |id: u64| Known {
            client: format!("node{id}:7899"),
            peer: format!("node{id}:7999"),
            voter: true,
        };
        (1..=3).map(|id| (id, known(id))).collect()
    }

    #[test]
    fn both_addresses_of_a_member_are_shown() {
        let seen = BTreeMap::from([(2, answer(2, Role::Leader, 5, Some(2)))]);
        let report = assemble(
            &seen,
            &membership(&seen),
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        let node1 = &report.members[0];
        assert_eq!(
            (node1.addr.as_str(), node1.peer_addr.as_str()),
            ("node1:7899", "node1:7999")
        );
        let node2 = &report.members[1];
        assert_eq!(
            (node2.addr.as_str(), node2.peer_addr.as_str()),
            ("node2:7899", "node2:7999")
        );
    }

    #[test]
    fn a_follower_alone_names_its_leader_without_confirming_it() {
        // Only node 2 answers (the others' addresses do not resolve here).
        let seen = BTreeMap::from([(2, answer(2, Role::Follower, 15, Some(3)))]);
        let errors = BTreeMap::from([(1, "dns error".to_string()), (3, "dns error".to_string())]);
        let report = assemble(&seen, &members(), &errors, &BTreeMap::new());
        assert_eq!(report.leader, Some(3));
        assert!(!report.leader_confirmed);
        assert!(!report.quorum);
        let unreachable: Vec<u64> = report
            .members
            .iter()
            .filter(|m| !m.reachable)
            .map(|m| m.id)
            .collect();
        assert_eq!(unreachable, vec![1, 3], "shown, not dropped");
        let node3 = &report.members[2];
        assert_eq!((node3.term, node3.last_applied), (None, None));
        assert_eq!(node3.error.as_deref(), Some("dns error"));
    }

    #[test]
    fn the_newest_term_names_the_leader() {
        // Node 1 still thinks it leads term 4; nodes 2 and 3 moved on.
        let seen = BTreeMap::from([
            (1, answer(1, Role::Leader, 4, Some(1))),
            (2, answer(2, Role::Follower, 5, Some(3))),
            (3, answer(3, Role::Leader, 5, Some(3))),
        ]);
        let report = assemble(&seen, &members(), &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(report.leader, Some(3));
        assert!(report.leader_confirmed);
        assert!(report.quorum);
        assert_eq!(report.members[1].lag, Some(2));
    }

    #[test]
    fn a_dead_endpoint_that_is_no_member_address_is_listed() {
        let seen = BTreeMap::from([
            (2, answer(2, Role::Follower, 5, Some(3))),
            (3, answer(3, Role::Leader, 5, Some(3))),
        ]);
        let failed = BTreeMap::from([("127.0.0.1:7899".to_string(), "refused".to_string())]);
        let errors = BTreeMap::from([(1, "dns error".to_string())]);
        let report = assemble(&seen, &members(), &errors, &failed);
        assert!(report.quorum && report.leader_confirmed);
        assert_eq!(report.unanswered.len(), 1);
        assert_eq!(report.unanswered[0].endpoint, "127.0.0.1:7899");
    }
}
