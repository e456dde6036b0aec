//! Random lock-table commands and proposals, for the state machine
//! fuzzer and as the valid values the decode fuzzer mutates. Most values
//! come from small pools, so commands meet (the same sessions, names and
//! owners recur); some are garbage or extreme, so the edges get hit.

use raftlock_core::{
    Command, Limits, LockMode, Proposal, Quota, SecretHash, SessionId, SessionOwner, MAX_LABEL_LEN,
    MAX_LOCK_DELAY_MS, MAX_NAME_LEN, MAX_SEMAPHORE_LIMIT, MAX_TTL_MS, MIN_TTL_MS,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

const NAMES: [&str; 6] = ["a", "b", "jobs/1", "jobs/2", "x/y/z", "db"];
const PRINCIPALS: [&str; 3] = ["", "alice", "bob"];

pub fn session(rng: &mut StdRng) -> SessionId {
    match rng.gen_range(0..20) {
        0 => SessionId(rng.gen()),
        1 => SessionId(u128::MAX),
        2 => SessionId(0),
        _ => SessionId(rng.gen_range(1..=6)),
    }
}

fn extreme_u64(rng: &mut StdRng) -> u64 {
    *[0, 1, u64::MAX, u64::MAX - 1, 1 << 63, u64::from(u32::MAX)]
        .choose(rng)
        .unwrap_or(&0)
}

fn garbage_string(rng: &mut StdRng, max_len: usize) -> String {
    match rng.gen_range(0..6) {
        0 => String::new(),
        1 => "é".repeat(rng.gen_range(1..=max_len)),
        2 => "x".repeat(max_len + rng.gen_range(0..3)),
        3 => "\0\n\t/..//".into(),
        4 => (0..rng.gen_range(1..40))
            .map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?'))
            .collect(),
        _ => "/".repeat(rng.gen_range(1..4)),
    }
}

pub fn name(rng: &mut StdRng) -> String {
    if rng.gen_ratio(1, 12) {
        garbage_string(rng, MAX_NAME_LEN)
    } else {
        (*NAMES.choose(rng).unwrap_or(&"a")).to_string()
    }
}

fn label(rng: &mut StdRng) -> String {
    if rng.gen_ratio(1, 10) {
        garbage_string(rng, MAX_LABEL_LEN)
    } else {
        format!("host-{}", rng.gen_range(0..3))
    }
}

fn ttl(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..10) {
        0 => extreme_u64(rng),
        1 => MIN_TTL_MS - 1,
        2 => MAX_TTL_MS + 1,
        _ => rng.gen_range(MIN_TTL_MS..=MAX_TTL_MS),
    }
}

fn lock_delay(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..10) {
        0 => extreme_u64(rng),
        1..=4 => 0,
        _ => rng.gen_range(0..=MAX_LOCK_DELAY_MS),
    }
}

fn seq(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..10) {
        0 => 0,
        1 => extreme_u64(rng),
        _ => rng.gen_range(1..100),
    }
}

fn mode(rng: &mut StdRng) -> LockMode {
    match rng.gen_range(0..6) {
        0 | 1 => LockMode::Exclusive,
        2 | 3 => LockMode::Shared,
        4 => LockMode::Semaphore {
            limit: rng.gen_range(1..4),
        },
        _ => LockMode::Semaphore {
            limit: *[0, MAX_SEMAPHORE_LIMIT, MAX_SEMAPHORE_LIMIT + 1, u32::MAX]
                .choose(rng)
                .unwrap_or(&0),
        },
    }
}

fn secret_hash(rng: &mut StdRng) -> SecretHash {
    if rng.gen_ratio(1, 10) {
        SecretHash(rng.gen())
    } else {
        SecretHash([rng.gen_range(0..2); 32])
    }
}

fn principal(rng: &mut StdRng) -> String {
    (*PRINCIPALS.choose(rng).unwrap_or(&"")).to_string()
}

pub fn limits(rng: &mut StdRng) -> Limits {
    let mut limits = Limits::default();
    for quota in Quota::ALL {
        if rng.gen_bool(0.5) {
            let value = match rng.gen_range(0..4) {
                0 => extreme_u64(rng),
                _ => rng.gen_range(0..8),
            };
            limits.set(quota, value);
        }
    }
    limits
}

/// A command a session sends (what [`Command::AsSession`] may wrap).
fn session_request(rng: &mut StdRng) -> Command {
    match rng.gen_range(0..5) {
        0 => Command::CloseSession {
            session: session(rng),
            seq: seq(rng),
        },
        1 => Command::Acquire {
            session: session(rng),
            seq: seq(rng),
            name: name(rng),
            wait: rng.gen(),
        },
        2 => Command::AcquireWith {
            session: session(rng),
            seq: seq(rng),
            name: name(rng),
            wait: rng.gen(),
            mode: mode(rng),
        },
        3 => Command::Release {
            session: session(rng),
            seq: seq(rng),
            name: name(rng),
        },
        _ => Command::CancelWait {
            session: session(rng),
            seq: seq(rng),
            name: name(rng),
        },
    }
}

/// Any command, every variant reachable.
pub fn command(rng: &mut StdRng) -> Command {
    match rng.gen_range(0..16) {
        0 | 1 => Command::OpenSession {
            session: session(rng),
            label: label(rng),
            ttl_ms: ttl(rng),
            lock_delay_ms: lock_delay(rng),
        },
        2 | 3 => Command::OpenSessionOwned {
            session: session(rng),
            label: label(rng),
            ttl_ms: ttl(rng),
            lock_delay_ms: lock_delay(rng),
            owner: SessionOwner {
                principal: principal(rng),
                secret_hash: secret_hash(rng),
            },
        },
        4 => Command::ExpireSession {
            session: session(rng),
        },
        5 => Command::Tick,
        6 => Command::SetLimits(limits(rng)),
        7..=9 => Command::AsSession {
            principal: principal(rng),
            secret_hash: secret_hash(rng),
            // Now and then a wrapper of a wrapper, or of a non-request.
            command: Box::new(match rng.gen_range(0..12) {
                0 => command(rng),
                _ => session_request(rng),
            }),
        },
        _ => session_request(rng),
    }
}

/// The next proposal's time: mostly a little after `now`, sometimes far
/// ahead, sometimes back in time (a new leader's clock may be behind).
pub fn time_after(rng: &mut StdRng, now: u64) -> u64 {
    match rng.gen_range(0..40) {
        0 => now.saturating_sub(rng.gen_range(0..10_000)),
        1 => now.saturating_add(rng.gen_range(0..MAX_TTL_MS * 2)),
        2 => extreme_u64(rng),
        _ => now.saturating_add(rng.gen_range(0..2_000)),
    }
}

pub fn proposal(rng: &mut StdRng, now: u64) -> Proposal {
    let count = match rng.gen_range(0..10) {
        0 => 0,
        1 => rng.gen_range(8..40),
        _ => rng.gen_range(1..6),
    };
    Proposal {
        time_ms: time_after(rng, now),
        commands: (0..count).map(|_| command(rng)).collect(),
    }
}
