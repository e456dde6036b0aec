//! `raftlock watch`: prints the locks under a prefix, then every change to
//! them as it is applied, one line (or one JSON object) each, until
//! interrupted.

use std::io::Write;

use raftlock_client::{ChangeKind, Client, LeaveReason, LockChange, WatchEvent};
use serde_json::json;

use crate::exit;

pub async fn run(client: Client, prefix: String, json: bool) -> i32 {
    let mut watch = client.watch(&prefix);
    let mut stdout = std::io::stdout();
    while let Some(event) = watch.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => return exit::unavailable(&e),
        };
        let line = if json {
            json_line(&event)
        } else {
            text_line(&event)
        };
        // A closed stdout (`| head`) ends the watch quietly.
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return exit::OK;
        }
    }
    exit::OK
}

fn kind_name(change: &LockChange) -> &'static str {
    match change.kind() {
        ChangeKind::Queued => "queued",
        ChangeKind::Granted => "granted",
        ChangeKind::Released => "released",
        ChangeKind::Expired => "expired",
        ChangeKind::LeftQueue => "left-queue",
        ChangeKind::Unspecified => "unknown",
    }
}

fn mode_name(change: &LockChange) -> String {
    match change.mode().as_str_name() {
        "LOCK_MODE_SEMAPHORE" => format!("semaphore/{}", change.limit),
        other => other.trim_start_matches("LOCK_MODE_").to_lowercase(),
    }
}

fn reason_name(change: &LockChange) -> &'static str {
    match change.reason() {
        LeaveReason::Cancelled => "cancelled",
        LeaveReason::SessionClosed => "session-closed",
        LeaveReason::SessionExpired => "session-expired",
        LeaveReason::Unspecified => "",
    }
}

/// `INDEX KIND NAME session=ID [mode=..] [token=..] ...`; a state line
/// says `state` before its kind. Names are written escaped (`{:?}`), so
/// none can break a line or drive the terminal.
fn text_line(event: &WatchEvent) -> String {
    let (index, change, state) = match event {
        WatchEvent::Reset { index, resync } => {
            let what = if *resync { "resync" } else { "reset" };
            return format!("{index} {what}");
        }
        WatchEvent::Synced { index } => return format!("{index} synced"),
        WatchEvent::State { index, change } => (index, change, "state "),
        WatchEvent::Change { index, change } => (index, change, ""),
    };
    let mut line = format!(
        "{index} {state}{} {:?} session={}",
        kind_name(change),
        change.name,
        change.session_id
    );
    match change.kind() {
        ChangeKind::Queued => line += &format!(" mode={}", mode_name(change)),
        ChangeKind::Granted => {
            line += &format!(" mode={} token={}", mode_name(change), change.fencing_token)
        }
        ChangeKind::Released => line += &format!(" token={}", change.fencing_token),
        ChangeKind::Expired => {
            line += &format!(
                " token={} available_at_ms={}",
                change.fencing_token, change.available_at_ms
            )
        }
        ChangeKind::LeftQueue => line += &format!(" reason={}", reason_name(change)),
        ChangeKind::Unspecified => {}
    }
    line
}

fn json_line(event: &WatchEvent) -> String {
    let value = match event {
        WatchEvent::Reset { index, resync } => {
            json!({"index": index, "event": "reset", "resync": resync})
        }
        WatchEvent::Synced { index } => json!({"index": index, "event": "synced"}),
        WatchEvent::State { index, change } | WatchEvent::Change { index, change } => {
            let mut value = json!({
                "index": index,
                "event": kind_name(change),
                "state": matches!(event, WatchEvent::State { .. }),
                "name": change.name,
                "session": change.session_id,
            });
            let fields = value.as_object_mut().expect("an object");
            match change.kind() {
                ChangeKind::Queued | ChangeKind::Granted => {
                    fields.insert("mode".into(), json!(mode_name(change)));
                }
                ChangeKind::LeftQueue => {
                    fields.insert("reason".into(), json!(reason_name(change)));
                }
                _ => {}
            }
            if matches!(
                change.kind(),
                ChangeKind::Granted | ChangeKind::Released | ChangeKind::Expired
            ) {
                fields.insert("token".into(), json!(change.fencing_token));
            }
            if change.kind() == ChangeKind::Expired {
                fields.insert("available_at_ms".into(), json!(change.available_at_ms));
            }
            value
        }
    };
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted() -> LockChange {
        let mut change = LockChange {
            name: "jobs/a\n".into(),
            session_id: "s1".into(),
            fencing_token: 7,
            limit: 3,
            ..Default::default()
        };
        change.set_kind(ChangeKind::Granted);
        change.set_mode(raftlock_proto::v1::LockMode::Semaphore);
        change
    }

    #[test]
    fn lines_say_index_kind_name_session_mode_and_token() {
        let event = WatchEvent::Change {
            index: 9,
            change: granted(),
        };
        assert_eq!(
            text_line(&event),
            r#"9 granted "jobs/a\n" session=s1 mode=semaphore/3 token=7"#
        );
        let state = WatchEvent::State {
            index: 4,
            change: granted(),
        };
        assert!(text_line(&state).starts_with("4 state granted"));
        let resync = WatchEvent::Reset {
            index: 4,
            resync: true,
        };
        assert_eq!(text_line(&resync), "4 resync");
    }

    #[test]
    fn json_lines_keep_the_exact_name() {
        let line = json_line(&WatchEvent::Change {
            index: 9,
            change: granted(),
        });
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["name"], "jobs/a\n");
        assert_eq!(value["event"], "granted");
        assert_eq!(value["token"], 7);
        assert_eq!(value["mode"], "semaphore/3");
        assert_eq!(value["state"], false);
    }
}
