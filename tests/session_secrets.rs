//! Sessions bound to their opener, on real nodes: a call made with a
//! session's public id but without its secret (none, a made-up one,
//! another session's) is refused with PERMISSION_DENIED and changes
//! nothing; the secret appears in no read, no error, no log line and not
//! in the node's data directory (snapshots included).

mod support;

use std::path::Path;
use std::time::Duration;

use raftlock_proto::v1::lock_client::LockClient;
use raftlock_proto::v1::*;
use raftlock_proto::ErrorKind;
use support::{serial, AuthedChannel, Cluster};
use tonic::Code;

const NAME: &str = "secrets/db";

fn acquire(id: &str, secret: &str, seq: u64) -> AcquireRequest {
    AcquireRequest {
        session_id: id.into(),
        session_secret: secret.into(),
        seq,
        name: NAME.into(),
        ..Default::default()
    }
}

async fn open(raw: &mut LockClient<AuthedChannel>, label: &str) -> OpenSessionResponse {
    let request = OpenSessionRequest {
        ttl_ms: 60_000,
        label: label.into(),
        ..Default::default()
    };
    raw.open_session(request).await.unwrap().into_inner()
}

/// Asserts `result` is the refusal of a caller that does not own the
/// session, and returns its message.
fn denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) -> String {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    assert_eq!(
        ErrorKind::of(&status),
        Some(ErrorKind::NotSessionOwner),
        "{what}"
    );
    assert!(
        status.message().ends_with("needs the session's secret"),
        "{what}: {}",
        status.message()
    );
    status.message().to_string()
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push(bytes);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Every call that acts as session `id`, made with `wrong` for its
/// secret: each must be refused. Returns the refusals' messages.
async fn act_without_the_secret(
    raw: &mut LockClient<AuthedChannel>,
    id: &str,
    wrong: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let release = ReleaseRequest {
        session_id: id.into(),
        session_secret: wrong.into(),
        seq: 10,
        name: NAME.into(),
    };
    seen.push(denied(raw.release(release).await, "release"));
    let close = CloseSessionRequest {
        session_id: id.into(),
        session_secret: wrong.into(),
        seq: 11,
    };
    seen.push(denied(raw.close_session(close).await, "close"));
    let keep_alive = KeepAliveRequest {
        session_id: id.into(),
        session_secret: wrong.into(),
    };
    seen.push(denied(raw.keep_alive(keep_alive).await, "keepalive"));
    // The owner's own request number: its answer (the token) must not leak.
    seen.push(denied(
        raw.acquire(acquire(id, wrong, 1)).await,
        "replayed acquire",
    ));
    seen.push(denied(raw.acquire(acquire(id, wrong, 12)).await, "acquire"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_opener_acts_as_its_session_and_its_secret_is_shown_nowhere() {
    let _serial = serial().await;
    // Snapshots every few entries, so the data directory holds one too.
    let cluster = Cluster::start_with(3, &["--snapshot-every", "10"]).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let mut raw = LockClient::new(cluster.client_port(leader).await);

    let owner = open(&mut raw, "owner").await;
    let other = open(&mut raw, "other").await;
    assert_eq!(owner.session_secret.len(), 64);
    assert_ne!(owner.session_secret, other.session_secret);
    let (id, secret) = (owner.session_id.as_str(), owner.session_secret.as_str());
    let granted = raw
        .acquire(acquire(id, secret, 1))
        .await
        .unwrap()
        .into_inner();
    assert!(granted.acquired);

    let made_up = "ab".repeat(32);
    let mut seen = Vec::new();
    for wrong in ["", made_up.as_str(), other.session_secret.as_str()] {
        seen.extend(act_without_the_secret(&mut raw, id, wrong).await);
    }
    assert!(seen[0].starts_with(&format!("session {id} belongs to another caller: release")));

    // Nothing changed: the owner still holds the lock with its token.
    let lock = raw
        .get_lock(GetLockRequest { name: NAME.into() })
        .await
        .unwrap()
        .into_inner()
        .lock
        .expect("still held");
    let holder = lock.holder.clone().expect("a holder");
    assert_eq!(
        (holder.session_id.as_str(), holder.fencing_token),
        (id, granted.fencing_token)
    );
    seen.push(format!("{lock:?}"));
    let list = raw
        .list_locks(ListLocksRequest {
            prefix: "secrets/".into(),
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    seen.push(format!("{list:?}"));

    // The owner is still in charge; its retry still gets its first answer.
    let keep_alive = KeepAliveRequest {
        session_id: id.into(),
        session_secret: secret.into(),
    };
    raw.keep_alive(keep_alive).await.unwrap();
    let retry = raw
        .acquire(acquire(id, secret, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.fencing_token, granted.fencing_token);
    let release = ReleaseRequest {
        session_id: id.into(),
        session_secret: secret.into(),
        seq: 20,
        name: NAME.into(),
    };
    raw.release(release).await.unwrap();
    // Enough entries for a snapshot on every node.
    for seq in 21..40 {
        raw.acquire(acquire(id, secret, seq)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut files = Vec::new();
    files_under(cluster.dir(), &mut files);
    assert!(files.len() > 3, "node logs and data found");
    let all_logs = cluster.logs();
    for secret in [secret, other.session_secret.as_str()] {
        for text in &seen {
            assert!(!text.contains(secret), "secret shown in {text}");
        }
        // Logs and data (log, snapshots) hold neither the secret's text
        // nor its bytes.
        for bytes in &files {
            assert!(!contains(bytes, secret.as_bytes()));
            assert!(!contains(bytes, &unhex(secret)));
        }
        assert!(!all_logs.contains(secret));
    }
}
