//! The Watch stream on three real nodes: a watcher that follows a workload
//! through a leader crash sees every grant and release exactly once, in
//! log order, and the state it rebuilds from the stream equals the
//! cluster's own answer.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use raftlock_client::{ChangeKind, LeaveReason, LockChange, SessionOptions, Wait, WatchEvent};
use raftlock_core::{LeaveReason as CoreReason, LockEvent, LockMirror, LockMode};
use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::{WatchKind, WatchRequest};
use support::{serial, Cluster};

fn session_options(label: &str) -> SessionOptions {
    SessionOptions {
        ttl: Duration::from_secs(10),
        lock_delay: Duration::ZERO,
        label: label.into(),
    }
}

/// A change from the wire as the core's event, for the mirror.
fn core_event(change: &LockChange) -> LockEvent {
    let name = change.name.clone();
    let session = change.session_id.parse().expect("a session id");
    let mode = match change.mode() {
        raftlock_proto::v1::LockMode::Exclusive => LockMode::Exclusive,
        raftlock_proto::v1::LockMode::Shared => LockMode::Shared,
        raftlock_proto::v1::LockMode::Semaphore => LockMode::Semaphore {
            limit: change.limit,
        },
    };
    let token = change.fencing_token;
    match change.kind() {
        ChangeKind::Queued => LockEvent::Queued {
            name,
            session,
            mode,
        },
        ChangeKind::Granted => LockEvent::Granted {
            name,
            session,
            mode,
            token,
        },
        ChangeKind::Released => LockEvent::Released {
            name,
            session,
            token,
        },
        ChangeKind::Expired => LockEvent::Expired {
            name,
            session,
            token,
            available_at_ms: change.available_at_ms,
        },
        ChangeKind::LeftQueue => LockEvent::LeftQueue {
            name,
            session,
            reason: match change.reason() {
                LeaveReason::SessionClosed => CoreReason::SessionClosed,
                LeaveReason::SessionExpired => CoreReason::SessionExpired,
                _ => CoreReason::Cancelled,
            },
        },
        ChangeKind::Unspecified => panic!("a change of no kind: {change:?}"),
    }
}

/// What a watcher saw: the mirror of the watched state, and every change
/// after the first state, with its index.
#[derive(Default)]
struct Seen {
    mirror: LockMirror,
    synced: bool,
    changes: Vec<(u64, LockChange)>,
    resyncs: u32,
}

impl Seen {
    fn take(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Reset { resync, .. } => {
                self.mirror = LockMirror::new();
                self.resyncs += u32::from(resync);
            }
            WatchEvent::State { change, .. } => self.mirror.apply(&core_event(&change)).unwrap(),
            WatchEvent::Synced { .. } => self.synced = true,
            WatchEvent::Change { index, change } => {
                assert!(self.synced, "a change before the state was complete");
                if let Some((last, _)) = self.changes.last() {
                    assert!(index >= *last, "index {index} after {last}");
                }
                // The mirror refuses a change that does not fit: a gap or
                // a repeat fails here.
                self.mirror
                    .apply(&core_event(&change))
                    .unwrap_or_else(|e| panic!("change at {index}: {e}"));
                self.changes.push((index, change));
            }
        }
    }

    /// (name, session, token) of every change of `kind`.
    fn of_kind(&self, kind: ChangeKind) -> Vec<(String, String, u64)> {
        self.changes
            .iter()
            .filter(|(_, c)| c.kind() == kind)
            .map(|(_, c)| (c.name.clone(), c.session_id.clone(), c.fencing_token))
            .collect()
    }

    /// name -> [(session, token)] of the holders the stream built.
    fn holders(&self) -> BTreeMap<String, Vec<(String, u64)>> {
        self.mirror
            .locks()
            .iter()
            .filter(|(_, lock)| !lock.holders.is_empty())
            .map(|(name, lock)| {
                let holders = lock
                    .holders
                    .iter()
                    .map(|(session, _, token)| (session.to_string(), *token))
                    .collect();
                (name.clone(), holders)
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_change_once_through_a_leader_crash() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;

    // Something to see in the first state, and a lock outside the prefix.
    let client = cluster.client_with(cluster.endpoints(), Duration::from_secs(20));
    let keeper = client
        .open_session(session_options("keeper"))
        .await
        .unwrap();
    let kept = keeper.lock("w/kept", Wait::No).await.unwrap();
    keeper.lock("other/x", Wait::No).await.unwrap();

    // The watcher enters at the leader, so the crash breaks its stream.
    let watcher_client =
        cluster.client_with(cluster.endpoints_from(leader), Duration::from_secs(20));
    let mut watch = watcher_client.watch("w/");
    let mut seen = Seen::default();
    while !seen.synced {
        seen.take(next(&mut watch).await);
    }
    assert_eq!(
        seen.holders(),
        BTreeMap::from([(
            "w/kept".to_string(),
            vec![(keeper.id().to_string(), kept.token)]
        )])
    );

    let worker = client
        .open_session(session_options("worker"))
        .await
        .unwrap();
    let mut grants = Vec::new();
    let mut releases = Vec::new();
    for round in 0..40 {
        if round == 15 {
            cluster.kill(leader);
        }
        let name = format!("w/k{}", round % 3);
        let grant = worker.lock(&name, Wait::No).await.unwrap();
        // Taking a lock it still holds changes nothing: no event.
        if !grant.reentrant {
            grants.push((name.clone(), worker.id().to_string(), grant.token));
        }
        if round % 4 != 3 {
            worker.release(&name).await.unwrap();
            releases.push((name, worker.id().to_string(), grant.token));
        }
        // Let the watcher read along (and see the crash mid-stream).
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(1), watch.next()).await
        {
            seen.take(event.unwrap());
        }
    }
    keeper.release("w/kept").await.unwrap();
    releases.push(("w/kept".into(), keeper.id().to_string(), kept.token));

    // The cluster's own answer, which the stream must reach.
    let listed: BTreeMap<String, Vec<(String, u64)>> = client
        .list_locks("w/", 1000)
        .await
        .unwrap()
        .0
        .into_iter()
        .filter(|lock| !lock.holders.is_empty())
        .map(|lock| {
            let holders = lock
                .holders
                .iter()
                .map(|h| (h.session_id.clone(), h.fencing_token))
                .collect();
            (lock.name, holders)
        })
        .collect();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.of_kind(ChangeKind::Released).len() < releases.len()
        || seen.of_kind(ChangeKind::Granted).len() < grants.len()
    {
        assert!(tokio::time::Instant::now() < until, "the watch stalled");
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(event) => seen.take(event.expect("the watch goes on").expect("no watch error")),
            Err(_) => panic!(
                "the watch stalled: saw {} of {} grants, {} of {} releases, last index {:?}\n{}",
                seen.of_kind(ChangeKind::Granted).len(),
                grants.len(),
                seen.of_kind(ChangeKind::Released).len(),
                releases.len(),
                seen.changes.last().map(|c| c.0),
                cluster.logs()
            ),
        }
    }

    assert_eq!(seen.resyncs, 0, "the history covers a leader change");
    assert_eq!(seen.of_kind(ChangeKind::Granted), grants);
    assert_eq!(seen.of_kind(ChangeKind::Released), releases);
    // A grant's token is its log index.
    for (index, change) in &seen.changes {
        if change.kind() == ChangeKind::Granted {
            assert_eq!(*index, change.fencing_token);
        }
        assert!(
            change.name.starts_with("w/"),
            "{change:?} is outside the prefix"
        );
    }
    assert_eq!(seen.holders(), listed);
    assert!(!listed.is_empty());
}

/// The wire contract: from 0 a state first; from a retained index the
/// changes after it; from an index the node no longer has history for (it
/// restarted from a snapshot) a resync; from an index it never applied, a
/// refusal that sends the watcher elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_the_history_and_resyncs_when_it_is_gone() {
    let _serial = serial().await;
    let mut cluster = Cluster::start_with(1, &["--snapshot-every", "10"]).await;
    let client = cluster.client();
    let session = client.open_session(session_options("s")).await.unwrap();
    let first = session.lock("r/a", Wait::No).await.unwrap();
    for _ in 0..15 {
        session.release("r/a").await.unwrap();
        session.lock("r/a", Wait::No).await.unwrap();
    }

    let mut stream = raw_watch(&cluster, "r/", first.token - 1).await.unwrap();
    let replayed = stream.message().await.unwrap().unwrap();
    assert_eq!(replayed.kind(), WatchKind::Changes);
    assert_eq!(replayed.index, first.token);
    assert_eq!(replayed.changes[0].kind(), ChangeKind::Granted);
    drop(stream);

    // After a restart the node's history starts at its snapshot.
    cluster.stop(1);
    cluster.spawn(1);
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let mut stream = raw_watch(&cluster, "r/", first.token - 1).await.unwrap();
    let reset = stream.message().await.unwrap().unwrap();
    assert_eq!((reset.kind(), reset.resync), (WatchKind::Reset, true));
    let state = stream.message().await.unwrap().unwrap();
    assert_eq!(state.kind(), WatchKind::State);
    assert_eq!(state.changes.len(), 1, "r/a is held: {state:?}");
    let synced = stream.message().await.unwrap().unwrap();
    assert_eq!(
        (synced.kind(), synced.index),
        (WatchKind::Synced, reset.index)
    );

    let ahead = raw_watch(&cluster, "r/", 1 << 40)
        .await
        .expect_err("an index never applied is refused");
    assert_eq!(ahead.code(), tonic::Code::Unavailable);
}

async fn next(watch: &mut raftlock_client::Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a watch event within 20 s")
        .expect("the watch goes on")
        .expect("no watch error")
}

/// A Watch call on node 1 through the generated stub, no resuming client.
async fn raw_watch(
    cluster: &Cluster,
    prefix: &str,
    from_index: u64,
) -> Result<tonic::Streaming<raftlock_proto::v1::WatchResponse>, tonic::Status> {
    let mut channel = LockClient::new(cluster.client_port(1).await);
    channel
        .watch(WatchRequest {
            prefix: prefix.into(),
            from_index,
        })
        .await
        .map(tonic::Response::into_inner)
}
