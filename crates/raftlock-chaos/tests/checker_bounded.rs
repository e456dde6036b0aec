//! The checker always finishes: on a history shaped like a power-loss run
//! (hundreds of operations whose outcome is unknown, across readers and
//! writers) it stays within its search budget and takes well under the
//! generous bound asserted here; on a history built to make the writers'
//! search exponential it stops at its budget, says so, and the direct
//! rules still report the overlap that the search could not reach.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use raftlock_chaos::checker::{check_all, check_all_within};
use raftlock_chaos::history::{Access, LockEvent, LockOp, Outcome, RegisterEvent};
use raftlock_chaos::linearizability::SEARCH_BUDGET;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Builds histories one lock event or register event at a time, with a
/// fresh client id for each session incarnation.
#[derive(Default)]
struct Builder {
    locks: Vec<LockEvent>,
    register: Vec<RegisterEvent>,
    next_client: u64,
    value: u64,
    token: u64,
}

impl Builder {
    fn client(&mut self) -> u64 {
        self.next_client += 1;
        self.next_client
    }

    fn lock(
        &mut self,
        client: u64,
        shared: bool,
        op: LockOp,
        at: (u64, Option<u64>),
        outcome: Outcome,
    ) {
        self.locks.push(LockEvent {
            client,
            lock: "L".into(),
            op,
            shared,
            invoked: ms(at.0),
            completed: at.1.map(ms),
            outcome,
        });
    }

    fn use_register(
        &mut self,
        client: u64,
        at: u64,
        token: u64,
        access: Access,
        write: Option<u64>,
    ) {
        self.register.push(RegisterEvent {
            client,
            lock: "L".into(),
            at: ms(at),
            token,
            access,
            write,
            accepted: true,
            seen: (write.is_none()).then_some(self.value),
        });
        if let Some(v) = write {
            self.value = v;
        }
    }

    /// A writer's whole hold, from `at`: 40 ms of history.
    fn writer_hold(&mut self, at: u64) {
        let c = self.client();
        self.token += 1;
        let t = self.token;
        self.lock(
            c,
            false,
            LockOp::Acquire,
            (at, Some(at + 5)),
            Outcome::Ok(Some(t)),
        );
        self.use_register(c, at + 10, t, Access::Exclusive, None);
        let v = self.value + 1;
        self.use_register(c, at + 20, t, Access::Exclusive, Some(v));
        self.lock(
            c,
            false,
            LockOp::Release,
            (at + 30, Some(at + 35)),
            Outcome::Ok(None),
        );
    }

    /// Readers holding together from `at`, granted by one entry: 40 ms.
    fn reader_holds(&mut self, at: u64, readers: u64) {
        self.token += 1;
        let t = self.token;
        let clients: Vec<u64> = (0..readers).map(|_| self.client()).collect();
        for (i, c) in clients.iter().enumerate() {
            let i = i as u64;
            self.lock(
                *c,
                true,
                LockOp::Acquire,
                (at, Some(at + 5)),
                Outcome::Ok(Some(t)),
            );
            self.use_register(*c, at + 10 + i, t, Access::ReadStart, None);
        }
        for (i, c) in clients.iter().enumerate() {
            let i = i as u64;
            self.use_register(*c, at + 20 + i, t, Access::ReadEnd, None);
            self.lock(
                *c,
                true,
                LockOp::Release,
                (at + 30, Some(at + 35)),
                Outcome::Ok(None),
            );
        }
    }

    /// A power cut at `at`: every one of `clients` has an acquire in
    /// flight that never gets an answer, and abandons its session; some
    /// also had a release in flight.
    fn power_cut(&mut self, at: u64, clients: u64) {
        for i in 0..clients {
            let c = self.client();
            let shared = i % 3 == 0;
            self.lock(
                c,
                shared,
                LockOp::Acquire,
                (at + i % 7, None),
                Outcome::Unknown,
            );
            self.lock(c, shared, LockOp::Expired, (at + 8, None), Outcome::Unknown);
        }
    }

    fn finals(&self) -> HashMap<String, u64> {
        HashMap::from([("L".to_string(), self.value)])
    }
}

#[test]
fn a_power_loss_shaped_history_is_checked_within_budget() {
    let mut b = Builder::default();
    let mut at = 0;
    // 15 cuts of 16 clients each: 480 operations with unknown outcomes,
    // between stretches of ordinary writers and readers.
    for _ in 0..15 {
        for _ in 0..3 {
            b.writer_hold(at);
            at += 40;
            b.reader_holds(at, 4);
            at += 40;
        }
        b.power_cut(at, 16);
        at += 5_000;
    }
    let unknown = b
        .locks
        .iter()
        .filter(|e| e.outcome == Outcome::Unknown)
        .count();
    assert!(unknown >= 200, "{unknown} unknown outcomes");

    let started = Instant::now();
    let findings = check_all(&b.locks, &b.register, &b.finals());
    let took = started.elapsed();
    assert!(findings.violations.is_empty(), "{:?}", findings.violations);
    assert!(
        findings.search_states <= SEARCH_BUDGET,
        "{} states",
        findings.search_states
    );
    // Milliseconds in practice; the bound only has to catch a runaway.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    println!(
        "{} lock events ({unknown} unknown), {} register events: {} states, {took:?}, inconclusive {:?}",
        b.locks.len(),
        b.register.len(),
        findings.search_states,
        findings.inconclusive
    );
}

#[test]
fn an_exponential_search_stops_at_its_budget_and_the_direct_rules_still_report() {
    let mut b = Builder::default();
    // 40 writers whose acquire and expiry never got an answer, all
    // concurrent: the search may place any subset of them...
    b.power_cut(0, 40);
    let writers: Vec<LockEvent> = b.locks.iter().filter(|e| !e.shared).cloned().collect();
    b.locks = writers;
    // ...before two writers that certainly held together, which no order
    // explains, so it would try them all.
    for (client, token) in [(1000, 50), (1001, 51)] {
        b.lock(
            client,
            false,
            LockOp::Acquire,
            (100, Some(110)),
            Outcome::Ok(Some(token)),
        );
    }
    for client in [1000, 1001] {
        b.lock(
            client,
            false,
            LockOp::Release,
            (200, Some(210)),
            Outcome::Ok(None),
        );
    }

    let budget = 20_000;
    let started = Instant::now();
    let findings = check_all_within(&b.locks, &b.register, &b.finals(), budget);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        findings.search_states <= budget,
        "{}",
        findings.search_states
    );
    assert_eq!(findings.inconclusive.len(), 1, "{:?}", findings);
    assert!(
        findings.inconclusive[0].contains("inconclusive: budget exhausted"),
        "{}",
        findings.inconclusive[0]
    );
    assert_eq!(findings.violations.len(), 1, "{:?}", findings.violations);
    assert!(
        findings.violations[0].contains("client 1001 (exclusive) held it from 110ms to 200ms"),
        "{}",
        findings.violations[0]
    );
}
