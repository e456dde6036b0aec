//! Three real nodes on loopback (real tonic, real sled in temp dirs):
//! following the leader, surviving its crash, catching up after a
//! restart, expiry handing a lock to its waiter, and refusals.

mod support;

use std::time::Duration;

use raftlock_client::{Error, SessionOptions, Wait};
use support::{serial, Cluster};

fn session_options(label: &str, ttl_secs: u64) -> SessionOptions {
    SessionOptions {
        ttl: Duration::from_secs(ttl_secs),
        lock_delay: Duration::ZERO,
        label: label.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_through_a_follower() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // This client knows only the follower; it must be led to the leader.
    let client = cluster.client_with(vec![cluster.endpoint(follower)], Duration::from_secs(10));
    let session = client
        .open_session(session_options("via-follower", 10))
        .await
        .unwrap();
    let grant = session
        .lock("hdf5:/home/shared/results.h5", Wait::No)
        .await
        .unwrap();
    assert!(grant.token > 0);

    let info = cluster
        .client()
        .get_lock("hdf5:/home/shared/results.h5")
        .await
        .unwrap()
        .unwrap();
    let holder = info.holder.unwrap();
    assert_eq!(holder.label, "via-follower");
    assert_eq!(holder.fencing_token, grant.token);
    session.close().await.unwrap();
    assert!(cluster
        .client()
        .get_lock("hdf5:/home/shared/results.h5")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_keeps_the_table_and_the_killed_node_catches_up() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let client = cluster.client_with(cluster.endpoints(), Duration::from_secs(20));
    let session = client
        .open_session(session_options("survivor", 10))
        .await
        .unwrap();
    let grant = session.lock("table", Wait::No).await.unwrap();
    let other = client
        .open_session(session_options("other", 10))
        .await
        .unwrap();
    for i in 0..20 {
        other.lock(&format!("filler-{i}"), Wait::No).await.unwrap();
    }

    cluster.kill(old_leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, old_leader);

    // The new leader has the same table, and the holder's session lived on.
    let info = client
        .get_lock("table")
        .await
        .unwrap()
        .expect("lock survives failover");
    let holder = info.holder.unwrap();
    assert_eq!(
        (holder.label.as_str(), holder.fencing_token),
        ("survivor", grant.token)
    );
    let (locks, _) = client.list_locks("filler-", 100).await.unwrap();
    assert_eq!(locks.len(), 20);
    session
        .release("table")
        .await
        .expect("holder can still release");
    assert!(client.get_lock("table").await.unwrap().is_none());
    assert!(session.lost_reason().is_none());

    // More writes while the old leader is down, then bring it back.
    for i in 20..40 {
        other.lock(&format!("filler-{i}"), Wait::No).await.unwrap();
    }
    let target = cluster.status(new_leader).await.unwrap().last_applied;
    cluster.spawn(old_leader);
    cluster
        .wait_applied(old_leader, target, Duration::from_secs(20))
        .await;
    let status = cluster.status(old_leader).await.unwrap();
    assert_eq!(
        status.locks, 40,
        "restarted node rebuilt the table from its data dir + catch-up"
    );
    other.close().await.unwrap();
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_loses_its_lock_to_the_waiter() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let doomed = client
        .open_session(session_options("doomed", 2))
        .await
        .unwrap();
    let first = doomed.lock("job", Wait::No).await.unwrap();

    let waiter = client
        .open_session(session_options("waiter", 10))
        .await
        .unwrap();
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.lock("job", Wait::For(Duration::from_secs(20))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = client.get_lock("job").await.unwrap().unwrap();
    assert_eq!(info.waiters.len(), 1, "waiter is queued");

    // The holder's process "dies": its keepalives stop.
    drop(doomed);
    let started = std::time::Instant::now();
    let second = waiting
        .await
        .unwrap()
        .expect("waiter gets the lock after expiry");
    assert!(
        second.token > first.token,
        "{} > {}",
        second.token,
        first.token
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "expired too early: {waited:?}"
    );
    let holder = client
        .get_lock("job")
        .await
        .unwrap()
        .unwrap()
        .holder
        .unwrap();
    assert_eq!(holder.label, "waiter");
    waiter.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_told_it_lost_the_lock() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints().join(",");
    let marker = cluster.dir().join("cmd-finished");
    // A `raftlock lock` process holding the lock, paused past its TTL.
    let mut holder = std::process::Command::new(support::BIN)
        .args([
            "--endpoints",
            &endpoints,
            "lock",
            "paused",
            "--ttl",
            "2",
            "--grace",
            "1",
            "--",
        ])
        .args(["sh", "-c", &format!("sleep 8; touch {}", marker.display())])
        .envs(cluster.cli_env())
        .spawn()
        .unwrap();
    let client = cluster.client();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.get_lock("paused").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < until,
            "holder never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = holder.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let other = client
        .open_session(session_options("other", 10))
        .await
        .unwrap();
    let grant = other
        .lock("paused", Wait::For(Duration::from_secs(10)))
        .await
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(76), "lock-lost exit code");
    assert!(
        !marker.exists(),
        "the command was stopped, not left running"
    );
    assert!(grant.token > 0);
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_and_harmless() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let owner = client
        .open_session(session_options("owner-host pid 1", 10))
        .await
        .unwrap();
    let intruder = client
        .open_session(session_options("intruder", 10))
        .await
        .unwrap();
    owner.lock("shared:file", Wait::No).await.unwrap();

    let refused = intruder.release("shared:file").await.unwrap_err();
    let holder = Error::NotHolder {
        name: "shared:file".into(),
        holder_label: "owner-host pid 1".into(),
        holder_session: owner.id().into(),
    };
    assert_eq!(refused, holder);
    assert!(
        refused.to_string().contains("owner-host pid 1"),
        "{refused}"
    );
    match intruder.lock("shared:file", Wait::No).await {
        Err(Error::NotAcquired { holder, .. }) => {
            assert_eq!(holder.as_deref(), Some("owner-host pid 1"))
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    assert!(matches!(
        intruder.release("nobody-holds-this").await,
        Err(Error::NotHeld { name }) if name == "nobody-holds-this"
    ));
    assert!(matches!(
        owner.lock("", Wait::No).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        owner.lock(&"n".repeat(513), Wait::No).await,
        Err(Error::InvalidArgument(_))
    ));
    // Over the 64 KiB message limit.
    assert!(matches!(
        owner.lock(&"n".repeat(100_000), Wait::No).await,
        Err(Error::InvalidArgument(_))
    ));
    let bad_ttl = client.open_session(SessionOptions {
        ttl: Duration::from_millis(10),
        ..SessionOptions::default()
    });
    assert!(matches!(bad_ttl.await, Err(Error::InvalidArgument(_))));

    // A session the cluster does not know: expired, closed or made up.
    let closed = client
        .open_session(session_options("closed", 10))
        .await
        .unwrap();
    closed.close().await.unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let mut raw =
        raftlock_proto::v1::lock_client::LockClient::new(cluster.client_port(leader).await);
    let unknown = raw
        .release(raftlock_proto::v1::ReleaseRequest {
            session_id: closed.id().into(),
            seq: 1,
            name: "shared:file".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    let garbage = raw
        .keep_alive(raftlock_proto::v1::KeepAliveRequest {
            session_id: "not-a-session".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(garbage.unwrap_err().code(), tonic::Code::InvalidArgument);

    // Raw garbage on the wire does not take a node down.
    for id in 1..=3 {
        use std::io::Write;
        let mut sock = std::net::TcpStream::connect(cluster.endpoint(id)).unwrap();
        let _ = sock.write_all(b"LOCK:name:with:colons:host__123\r\n\x00\xff garbage");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Nothing was lost and every node still answers.
    let holder = client
        .get_lock("shared:file")
        .await
        .unwrap()
        .unwrap()
        .holder
        .unwrap();
    assert_eq!(holder.label, "owner-host pid 1");
    for id in 1..=3 {
        assert!(cluster.status(id).await.is_some(), "node {id} still up");
    }
    owner.release("shared:file").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_catches_up_from_a_snapshot() {
    let _serial = serial().await;
    let mut cluster = Cluster::start_with(3, &["--snapshot-every", "100"]).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(lagging);

    let client = cluster.client();
    let session = client
        .open_session(session_options("bulk", 30))
        .await
        .unwrap();
    for i in 0..300 {
        session
            .lock(&format!("bulk/{i:03}"), Wait::No)
            .await
            .unwrap();
    }
    for i in 0..100 {
        session.release(&format!("bulk/{i:03}")).await.unwrap();
    }
    let leader_status = cluster.status(leader).await.unwrap();
    assert!(
        leader_status.snapshot_index >= 300,
        "leader snapshotted: {leader_status:?}"
    );

    // The log the lagging node needs is purged: it must install a snapshot.
    cluster.spawn(lagging);
    cluster
        .wait_applied(lagging, leader_status.last_applied, Duration::from_secs(20))
        .await;
    let status = cluster.status(lagging).await.unwrap();
    assert_eq!(status.locks, 200);
    assert!(
        status.snapshot_index >= 300,
        "caught up through a snapshot: {status:?}"
    );
    let (locks, _) = client.list_locks("bulk/", 1000).await.unwrap();
    assert_eq!(locks.len(), 200);
    assert_eq!(locks[0].name, "bulk/100");
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_wait_leaves_the_queue() {
    let _serial = serial().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let holder = client
        .open_session(session_options("holder", 10))
        .await
        .unwrap();
    let quitter = client
        .open_session(session_options("quitter", 10))
        .await
        .unwrap();
    holder.lock("q", Wait::No).await.unwrap();

    // The caller stops waiting by dropping the future, not by a timeout of ours.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(500), quitter.lock("q", Wait::Forever)).await;
    assert!(gave_up.is_err());
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let info = client.get_lock("q").await.unwrap().unwrap();
        if info.waiters.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "quitter still queued: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.release("q").await.unwrap();
    assert!(
        client.get_lock("q").await.unwrap().is_none(),
        "nobody was granted the abandoned wait"
    );
    assert!(!quitter.holds("q"));
}
