//! Bytes written by older versions still mean what they meant: log entries
//! (bincode 1.3 `Command`s), format-2 snapshot tables (before lock modes)
//! format-3 ones (before session owners) and format-4 ones (before quotas).
//!
//! `v2-table.hex` was written by raftlock at commit 446737e, before modes;
//! `v3-table.hex` by the lock table at commit 66c65dc, before owners;
//! `v4-table.hex` by the lock table at commit 8717ce2, before quotas.

use raftlock_core::{
    Command, Limits, LockMode, LockTable, LockTableV2, LockTableV3, LockTableV4, Outcome, Proposal,
    SecretHash, SessionId,
};

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `Command::Acquire { session: 0x11, seq: 7, name: "db", wait: true }`:
/// variant index 3 (u32), session (u128), seq (u64), name (u64 length and
/// bytes), wait (u8), all little-endian.
const OLD_ACQUIRE: &str = concat!(
    "03000000",
    "11000000000000000000000000000000",
    "0700000000000000",
    "0200000000000000",
    "6462",
    "01",
);

/// A `Proposal { time_ms: 42, commands: [that acquire, Tick] }` (Tick was
/// variant 6).
const OLD_PROPOSAL: &str = concat!(
    "2a00000000000000",
    "0200000000000000",
    "03000000110000000000000000000000000000000700000000000000020000000000000064620106000000",
);

fn old_acquire() -> Command {
    Command::Acquire {
        session: SessionId(0x11),
        seq: 7,
        name: "db".into(),
        wait: true,
    }
}

#[test]
fn an_old_acquire_entry_decodes_to_the_same_command() {
    let command: Command = bincode::deserialize(&unhex(OLD_ACQUIRE)).unwrap();
    assert_eq!(command, old_acquire());
    assert_eq!(bincode::serialize(&command).unwrap(), unhex(OLD_ACQUIRE));
    let proposal: Proposal = bincode::deserialize(&unhex(OLD_PROPOSAL)).unwrap();
    assert_eq!(
        proposal,
        Proposal {
            time_ms: 42,
            commands: vec![old_acquire(), Command::Tick],
        }
    );
}

#[test]
fn an_old_acquire_means_an_exclusive_acquire_with_mode() {
    let with_mode = Command::AcquireWith {
        session: SessionId(0x11),
        seq: 7,
        name: "db".into(),
        wait: true,
        mode: LockMode::Exclusive,
    };
    // A retry may come in either form: it is the same request.
    assert_eq!(old_acquire().request_digest(), with_mode.request_digest());
    let shared = Command::AcquireWith {
        session: SessionId(0x11),
        seq: 7,
        name: "db".into(),
        wait: true,
        mode: LockMode::Shared,
    };
    assert_ne!(old_acquire().request_digest(), shared.request_digest());

    let open = Command::OpenSession {
        session: SessionId(0x11),
        label: "a".into(),
        ttl_ms: 5_000,
        lock_delay_ms: 0,
    };
    let run = |acquire: Command| {
        let mut t = LockTable::new();
        t.apply(1, &Proposal::single(0, open.clone()));
        let (applied, events) = t.apply_with_events(2, &Proposal::single(0, acquire));
        (t, applied, events)
    };
    let (old_table, old_applied, old_events) = run(old_acquire());
    let (new_table, new_applied, new_events) = run(with_mode);
    assert_eq!(old_table, new_table);
    assert_eq!(old_applied, new_applied);
    assert_eq!(old_events, new_events);
    assert_eq!(
        old_table.held_by("db", SessionId(0x11)),
        Some((LockMode::Exclusive, 2))
    );
}

/// Sessions a (0x11) and b (0x22); a holds "db" (token 3) with b queued,
/// b holds "cache" (token 5).
#[test]
fn an_old_snapshot_table_converts_to_the_same_locks() {
    let bytes = unhex(include_str!("fixtures/v2-table.hex"));
    let old: LockTableV2 = bincode::deserialize(&bytes).unwrap();
    let mut t = LockTable::from(old);
    assert_eq!(t.check_consistent(), Ok(()));
    let (a, b) = (SessionId(0x11), SessionId(0x22));

    let db = t.lock("db").unwrap();
    assert_eq!(t.holder("db"), Some((a, 3)));
    assert_eq!(db.holders.len(), 1);
    assert_eq!(db.holders[0].mode, LockMode::Exclusive);
    assert_eq!(db.holders[0].since_ms, 110);
    assert_eq!(db.holders[0].label, "c17");
    assert_eq!(db.waiters.len(), 1);
    assert_eq!(
        (db.waiters[0].session, db.waiters[0].mode),
        (b, LockMode::Exclusive)
    );
    assert_eq!(t.held_by("cache", b), Some((LockMode::Exclusive, 5)));
    assert_eq!(t.now_ms(), 130);

    // Retry memory came along: a's first acquire answers as it did.
    let retry = Command::Acquire {
        session: a,
        seq: 1,
        name: "db".into(),
        wait: true,
    };
    let got = t.apply(6, &Proposal::single(140, retry));
    assert_eq!(
        got.responses[0],
        Ok(Outcome::Granted {
            token: 3,
            reentrant: false
        })
    );
    // And the table works on: a's release hands "db" to b.
    let release = Command::Release {
        session: a,
        seq: 2,
        name: "db".into(),
    };
    t.apply(7, &Proposal::single(150, release));
    assert_eq!(t.holder("db"), Some((b, 7)));
    assert_eq!(t.check_consistent(), Ok(()));

    // The new layout round-trips.
    let again: LockTable = bincode::deserialize(&bincode::serialize(&t).unwrap()).unwrap();
    assert_eq!(again, t);
}

#[test]
fn a_truncated_old_table_is_an_error() {
    let bytes = unhex(include_str!("fixtures/v2-table.hex"));
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(bincode::deserialize::<LockTableV2>(&bytes[..cut]).is_err());
    }
}

/// Sessions alpha (0x11) and beta (0x22); alpha holds "db" (token 3) with
/// beta queued, beta holds "pool" shared (token 5). Written before owners.
#[test]
fn a_format_3_table_loads_with_sessions_anyone_may_act_as() {
    let bytes = unhex(include_str!("fixtures/v3-table.hex"));
    let old: LockTableV3 = bincode::deserialize(&bytes).unwrap();
    let mut t = LockTable::from(old);
    assert_eq!(t.check_consistent(), Ok(()));
    let (a, b) = (SessionId(0x11), SessionId(0x22));
    assert_eq!(t.holder("db"), Some((a, 3)));
    assert_eq!(t.held_by("pool", b), Some((LockMode::Shared, 5)));
    assert_eq!(t.session_owner(a), Some(None));
    assert_eq!(t.session_owner(b), Some(None));

    // An owner-less session accepts any caller: alpha's release, sent as
    // some principal with some secret, hands "db" to beta.
    let release = Command::AsSession {
        principal: "anyone".into(),
        secret_hash: SecretHash([9; 32]),
        command: Box::new(Command::Release {
            session: a,
            seq: 2,
            name: "db".into(),
        }),
    };
    let got = t.apply(6, &Proposal::single(140, release));
    assert_eq!(got.responses, vec![Ok(Outcome::Released)]);
    assert_eq!(t.holder("db"), Some((b, 6)));

    // The new layout round-trips, and is not the old one.
    let again: LockTable = bincode::deserialize(&bincode::serialize(&t).unwrap()).unwrap();
    assert_eq!(again, t);
}

#[test]
fn a_truncated_format_3_table_is_an_error() {
    let bytes = unhex(include_str!("fixtures/v3-table.hex"));
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(bincode::deserialize::<LockTableV3>(&bytes[..cut]).is_err());
    }
}

/// alpha (0x11, owned by "alice") holds "db" (token 3) with beta (0x22, no
/// owner) queued; beta holds "pool" shared (token 5); gamma (0x33) held
/// "gone" and expired at 170 with a 60 s lock-delay. Written before quotas.
#[test]
fn a_format_4_table_loads_with_the_default_limits() {
    let bytes = unhex(include_str!("fixtures/v4-table.hex"));
    // Not readable as the present layout: the limits are missing.
    assert!(bincode::deserialize::<LockTable>(&bytes).is_err());
    let old: LockTableV4 = bincode::deserialize(&bytes).unwrap();
    let mut t = LockTable::from(old);
    assert_eq!(t.check_consistent_at(8), Ok(()));
    assert_eq!(t.limits(), Limits::default());
    let (a, b) = (SessionId(0x11), SessionId(0x22));
    assert_eq!(t.holder("db"), Some((a, 3)));
    assert_eq!(t.held_by("pool", b), Some((LockMode::Shared, 5)));
    assert_eq!(t.session_owner(a).unwrap().unwrap().principal, "alice");
    assert_eq!(t.session_owner(b), Some(None));
    assert_eq!(t.next_delay_end_ms(), Some(60_170));
    assert_eq!(t.lock("db").unwrap().waiters[0].session, b);
    // The counters are rebuilt from the data.
    let usage = t.quota_usage();
    assert_eq!(usage.get(raftlock_core::Quota::Sessions), 2);
    assert_eq!(usage.get(raftlock_core::Quota::Locks), 3);
    assert_eq!(usage.get(raftlock_core::Quota::HoldsPerSession), 2);
    assert_eq!(usage.get(raftlock_core::Quota::WaitersPerLock), 1);
    assert_eq!(t.stats().holds, 2);
    assert_eq!(t.stats().waiters, 1);

    // Retry memory came along, and the queue works on.
    let retry = Command::AcquireWith {
        session: b,
        seq: 2,
        name: "db".into(),
        wait: true,
        mode: LockMode::Exclusive,
    };
    let got = t.apply(9, &Proposal::single(200, retry));
    assert_eq!(got.responses, vec![Ok(Outcome::Queued { position: 0 })]);
    let close = Command::CloseSession { session: a, seq: 0 };
    t.apply(10, &Proposal::single(210, close));
    assert_eq!(t.holder("db"), Some((b, 10)));
    assert_eq!(t.check_consistent_at(10), Ok(()));

    let again: LockTable = bincode::deserialize(&bincode::serialize(&t).unwrap()).unwrap();
    assert_eq!(again, t);
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(bincode::deserialize::<LockTableV4>(&bytes[..cut]).is_err());
    }
}
