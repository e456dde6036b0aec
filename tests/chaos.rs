//! The chaos suite's loopback variant, for quick feedback in `cargo test`:
//! three local nodes, a few rounds of kill -9 and SIGSTOP faults (of
//! leaders, followers and lock holders) under 16 clients, then the full
//! checker, all over TLS with tokens. Set RAFTLOCK_CHAOS_SEED to replay a
//! failure.

mod support;

use std::path::Path;
use std::time::Duration;

use raftlock_chaos::runner::ALL;
use raftlock_chaos::{run, Fault, LocalCluster, RunConfig};
use raftlock_client::{Credentials, Token, Transport};
use support::serial;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_chaos_finds_no_violation() {
    let _serial = serial().await;
    let seed = std::env::var("RAFTLOCK_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed {seed} (replay with RAFTLOCK_CHAOS_SEED={seed})");
    let mut nodes = LocalCluster::start_secure(Path::new(support::BIN), 3, &[]).unwrap();
    let credentials = nodes.credentials().expect("a secure cluster");
    let transport = Transport::Tls(Credentials {
        ca: credentials.ca(),
        token: Some(Token::new(credentials.admin_token.clone())),
        identity: None,
    });
    let faults: Vec<Fault> = ALL
        .into_iter()
        .filter(|f| !matches!(f, Fault::PartitionLeader | Fault::KillTwo))
        .collect();
    let report = run(
        &mut nodes,
        RunConfig {
            rounds: 5,
            seed,
            clients: 16,
            readers: 5,
            locks: vec!["L".into(), "hdf5:/home/shared/results.h5".into()],
            ttl: Duration::from_secs(2),
            faults,
            recovery_bound: Duration::from_secs(30),
            transport,
        },
    )
    .await
    .unwrap();
    report.print();
    assert_eq!(report.rounds, 5, "every round ran and recovered");
    assert!(
        report.grants > 50,
        "the workload made progress: {} grants",
        report.grants
    );
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {:#?}\n{}",
        report.violations,
        nodes.logs(20)
    );
}
