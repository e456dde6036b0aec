//! The secured section: fresh credentials, both clusters started again
//! with TLS and authentication on, workloads 1-4 (1, 16 and 64 workers on
//! their own names; 16 on one name) and the failovers run against both as
//! in the plain run, and the results set beside the plain run's.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::credentials::BenchCredentials;
use crate::report::Row;
use crate::run::{measure_failover, measure_throughput, start_clusters, Partial, Plan, WORKLOADS};
use crate::secured_report::{cost_rows, secured_rows, SecuredResults, SecuredSystem};
use crate::workloads::CycleResult;
use crate::Args;

/// How raftlock is secured here, for the report.
const RAFTLOCK_SECURITY: &str =
    "TLS on both ports, nodes authenticated by certificate, clients by bearer token";
/// How etcd is secured here, for the report.
const ETCD_SECURITY: &str = "TLS on both ports with client certificates required \
     (--client-cert-auth, --peer-client-cert-auth), auth enabled, clients logged in \
     as user `lock` with a JWT token (ES256)";

/// Workloads 1-4 of [`WORKLOADS`]: the uncontended and contended rows.
const SECURED_WORKLOADS: usize = 4;

/// Runs the section under `dir`/secured; `plain_rows` are the plain
/// run's comparison rows, for the cost of security.
pub async fn run(
    raftlock_bin: &Path,
    args: &Args,
    dir: &Path,
    plan: &Plan,
    plain_rows: &[Row],
) -> anyhow::Result<SecuredResults> {
    let started = std::time::Instant::now();
    let creds = BenchCredentials::create(&dir.join("credentials"), 3)
        .context("making the secured clusters' credentials")?;
    let creds = Arc::new(creds);
    eprintln!("raftlock-bench: with TLS + auth");
    let mut systems = start_clusters(raftlock_bin, args, &dir.join("secured"), Some(creds))
        .await
        .context("starting the secured clusters")?;
    let versions = [systems[0].version().await, systems[1].version().await];
    let mut partial = [Partial::default(), Partial::default()];
    let workloads = &WORKLOADS[..SECURED_WORKLOADS];
    measure_throughput(&systems, plan, workloads, &mut partial).await?;
    measure_failover(&mut systems, plan, args.quick, &mut partial).await?;
    drop(systems);

    let [r, e] = partial;
    let raftlock = finish("raftlock", &versions[0], r)?;
    let etcd = finish("etcd", &versions[1], e)?;
    eprintln!(
        "raftlock-bench: TLS + auth section done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let rows = secured_rows(&raftlock, &etcd);
    let cost = cost_rows(plain_rows, &rows);
    Ok(SecuredResults {
        raftlock_security: RAFTLOCK_SECURITY.into(),
        etcd_security: ETCD_SECURITY.into(),
        duration_seconds: started.elapsed().as_secs_f64(),
        rows,
        cost,
        raftlock,
        etcd,
    })
}

fn finish(name: &str, version: &str, p: Partial) -> anyhow::Result<SecuredSystem> {
    let [one_worker, workers_16, workers_64, contended_16]: [CycleResult; SECURED_WORKLOADS] = p
        .throughput
        .try_into()
        .map_err(|_| anyhow::anyhow!("{name}: missing secured workload results"))?;
    Ok(SecuredSystem {
        system: name.into(),
        version: version.into(),
        one_worker,
        workers_16,
        workers_64,
        contended_16,
        term_before_steady: p.term_before,
        term_after_steady: p.term_after,
        failover: p.failover,
    })
}
