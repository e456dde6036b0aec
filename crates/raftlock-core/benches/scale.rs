//! How the cost of one command grows with the table: each command is timed
//! on tables of 1k, 100k and 1M sessions (each holding one lock of its
//! own), and queue operations behind 1k and 100k waiters on one lock.
//! The claim it supports: per-command cost is flat (O(1) or O(log n)) as
//! the table grows.
//!
//! `cargo bench -p raftlock-core --bench scale` (plain `std::time`, no
//! harness). Each figure is the best of several rounds of many commands,
//! in nanoseconds per command, so other work on the machine inflates it
//! least. `SCALE_MAX=100000` skips the 1M table.

use std::hint::black_box;
use std::time::Instant;

use raftlock_core::{Command, Limits, LockTable, Proposal, SessionId, MAX_LIMIT};

const ROUNDS: usize = 5;
const PER_ROUND: u64 = 5_000;

struct Bench {
    table: LockTable,
    index: u64,
    seq: u64,
    next_session: u128,
}

impl Bench {
    fn new() -> Self {
        let mut b = Bench {
            table: LockTable::new(),
            index: 0,
            seq: 0,
            next_session: 1,
        };
        let roomy = Limits {
            sessions: 1 << 24,
            sessions_per_principal: 1 << 24,
            holds_per_session: 1 << 20,
            waits_per_session: 1 << 20,
            waiters_per_lock: 1 << 24,
            locks: 1 << 24,
            retained_answers: MAX_LIMIT,
            claims: MAX_LIMIT,
        };
        b.run(Command::SetLimits(roomy));
        b
    }

    fn run(&mut self, command: Command) {
        self.index += 1;
        let applied = self.table.apply(self.index, &Proposal::single(0, command));
        black_box(applied);
    }

    fn open(&mut self) -> SessionId {
        let session = SessionId(self.next_session);
        self.next_session += 1;
        self.run(Command::OpenSession {
            session,
            label: "bench".into(),
            ttl_ms: 60_000,
            lock_delay_ms: 0,
        });
        session
    }

    fn acquire(&mut self, session: SessionId, name: &str) -> Command {
        self.seq += 1;
        Command::Acquire {
            session,
            seq: self.seq,
            name: name.into(),
            wait: true,
        }
    }

    fn release(&mut self, session: SessionId, name: &str) -> Command {
        self.seq += 1;
        Command::Release {
            session,
            seq: self.seq,
            name: name.into(),
        }
    }

    fn cancel(&mut self, session: SessionId, name: &str) -> Command {
        self.seq += 1;
        Command::CancelWait {
            session,
            seq: self.seq,
            name: name.into(),
        }
    }

    /// Grows the table to `sessions` sessions, each holding its own lock.
    fn fill(&mut self, sessions: u64) {
        while (self.table.session_count() as u64) < sessions {
            let s = self.open();
            let name = format!("held/{}", s.0);
            let acquire = self.acquire(s, &name);
            self.run(acquire);
        }
    }

    /// Best time per command over the rounds: each round prepares
    /// `PER_ROUND` commands with `prepare` (untimed) and applies them.
    fn time(&mut self, mut prepare: impl FnMut(&mut Bench) -> Vec<Command>) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let commands = prepare(self);
            let n = commands.len() as f64;
            let start = Instant::now();
            for command in commands {
                self.run(command);
            }
            best = best.min(start.elapsed().as_nanos() as f64 / n);
        }
        best
    }
}

/// Per-command costs on a table of `sessions` sessions.
fn table_row(sessions: u64) -> Vec<f64> {
    let mut b = Bench::new();
    b.fill(sessions);
    let client = b.open();
    // Each round takes fresh names; the previous round's are let go first
    // (untimed), so the table keeps its size.
    let mut round = 0;
    let mut taken: Vec<String> = Vec::new();
    let acquire = b.time(|b| {
        for name in std::mem::take(&mut taken) {
            let release = b.release(client, &name);
            b.run(release);
        }
        round += 1;
        taken = (0..PER_ROUND)
            .map(|i| format!("free/{round}/{i}"))
            .collect();
        taken.iter().map(|n| b.acquire(client, n)).collect()
    });
    for name in std::mem::take(&mut taken) {
        let release = b.release(client, &name);
        b.run(release);
    }
    let release = b.time(|b| {
        // The locks the acquires above took (every round takes them again).
        let names: Vec<String> = (0..PER_ROUND).map(|i| format!("free/{i}")).collect();
        for name in &names {
            let again = b.acquire(client, name);
            b.run(again);
        }
        names.iter().map(|n| b.release(client, n)).collect()
    });
    let mut opened: Vec<SessionId> = Vec::new();
    let open = b.time(|b| {
        for session in std::mem::take(&mut opened) {
            b.run(Command::CloseSession { session, seq: 0 });
        }
        (0..PER_ROUND)
            .map(|_| {
                let session = SessionId(b.next_session);
                b.next_session += 1;
                opened.push(session);
                Command::OpenSession {
                    session,
                    label: "bench".into(),
                    ttl_ms: 60_000,
                    lock_delay_ms: 0,
                }
            })
            .collect()
    });
    for session in opened {
        b.run(Command::CloseSession { session, seq: 0 });
    }
    let expire = b.time(|b| {
        (0..PER_ROUND)
            .map(|i| {
                let s = b.open();
                let name = format!("doomed/{i}");
                let acquire = b.acquire(s, &name);
                b.run(acquire);
                Command::ExpireSession { session: s }
            })
            .collect()
    });
    vec![acquire, release, open, expire]
}

/// Queue costs behind `waiters` waiters on one lock.
fn queue_row(waiters: u64) -> Vec<f64> {
    let mut b = Bench::new();
    let holder = b.open();
    let acquire = b.acquire(holder, "hot");
    b.run(acquire);
    let mut queued = Vec::new();
    for _ in 0..waiters {
        let s = b.open();
        let acquire = b.acquire(s, "hot");
        b.run(acquire);
        queued.push(s);
    }
    let extra: Vec<SessionId> = (0..PER_ROUND).map(|_| b.open()).collect();
    // Join the back of the queue, then leave it again.
    let join = b.time(|b| {
        for s in &extra {
            let leave = b.cancel(*s, "hot");
            b.run(leave);
        }
        extra.iter().map(|s| b.acquire(*s, "hot")).collect()
    });
    let leave = b.time(|b| {
        for s in &extra {
            let join = b.acquire(*s, "hot");
            b.run(join);
        }
        extra.iter().map(|s| b.cancel(*s, "hot")).collect()
    });
    // A waiter in the middle of the queue asks again where it stands,
    // then leaves and joins the back (the queue keeps its length).
    let middle = queued[queued.len() / 2];
    let rank = b.time(|b| (0..PER_ROUND).map(|_| b.acquire(middle, "hot")).collect());
    let requeue = b.time(|b| {
        let mut commands = Vec::new();
        for s in queued.iter().take(PER_ROUND as usize / 2) {
            commands.push(b.cancel(*s, "hot"));
            commands.push(b.acquire(*s, "hot"));
        }
        commands
    });
    vec![join, leave, rank, requeue]
}

fn print_table(title: &str, size_label: &str, columns: &[&str], rows: &[(u64, Vec<f64>)]) {
    println!("\n{title} (ns per command, best of {ROUNDS} rounds of {PER_ROUND})");
    print!("| {size_label:>10} |");
    for c in columns {
        print!(" {c:>18} |");
    }
    println!();
    print!("| {:->10} |", "");
    for _ in columns {
        print!(" {:->18} |", "");
    }
    println!();
    for (size, figures) in rows {
        print!("| {size:>10} |");
        for f in figures {
            print!(" {f:>18.0} |");
        }
        println!();
    }
}

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes of resident memory per item that `grow` adds, `count` items.
fn bytes_per(count: u64, grow: impl FnOnce(&mut Bench)) -> f64 {
    let mut b = Bench::new();
    let before = resident_bytes();
    grow(&mut b);
    let after = resident_bytes();
    // Kept, not freed: memory handed back to the allocator would be
    // reused by the next measurement and hide its growth.
    std::mem::forget(black_box(b));
    after.saturating_sub(before) as f64 / count as f64
}

/// What each quota's unit costs in memory, measured as resident growth.
fn memory_rows() {
    const N: u64 = 200_000;
    let session = bytes_per(N, |b| {
        for _ in 0..N {
            b.open();
        }
    });
    let held = bytes_per(N, |b| {
        let s = b.open();
        for i in 0..N {
            let acquire = b.acquire(s, &format!("lock/{i:08}"));
            b.run(acquire);
        }
    });
    let session_waiting = bytes_per(N, |b| {
        let holder = b.open();
        let acquire = b.acquire(holder, "hot");
        b.run(acquire);
        for _ in 0..N {
            let s = b.open();
            let acquire = b.acquire(s, "hot");
            b.run(acquire);
        }
    });
    let session_answering = bytes_per(N, |b| {
        for i in 0..N / 64 {
            let s = b.open();
            let name = format!("x/{i:08}");
            for _ in 0..64 {
                let again = b.acquire(s, &name);
                b.run(again);
            }
        }
    });
    let waiter = session_waiting - session;
    let answer = session_answering - (session + held) / 64.0;
    println!("\nResident memory per item ({N} items, lock names of 13 bytes, empty labels)");
    println!("| item | bytes |");
    println!("| --- | ---: |");
    println!("| open session, no answers | {session:.0} |");
    println!("| held name (lock entry, holder, session's list) | {held:.0} |");
    println!("| waiter (session's own cost taken off) | {waiter:.0} |");
    println!("| remembered answer (cost of its session and lock taken off) | {answer:.0} |");
}

fn main() {
    if std::env::var("SCALE_MEMORY").is_ok() {
        memory_rows();
        return;
    }
    let max: u64 = std::env::var("SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rows = Vec::new();
    for sessions in [1_000, 100_000, 1_000_000] {
        if sessions <= max {
            rows.push((sessions, table_row(sessions)));
        }
    }
    print_table(
        "Commands on a table of N sessions, each holding a lock",
        "sessions",
        &[
            "acquire (free)",
            "release",
            "open session",
            "expire (1 lock)",
        ],
        &rows,
    );
    let mut rows = Vec::new();
    for waiters in [1_000, 100_000] {
        if waiters <= max {
            rows.push((waiters, queue_row(waiters)));
        }
    }
    print_table(
        "Queue commands behind N waiters on one lock",
        "waiters",
        &[
            "join the back",
            "cancel at the back",
            "re-ask (middle)",
            "cancel+rejoin front",
        ],
        &rows,
    );
}
