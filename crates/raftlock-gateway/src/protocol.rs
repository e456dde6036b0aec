//! The lock-server text protocol, both dialects: parsing requests and
//! formatting replies. Pure: no I/O, no clock, no lock table.
//!
//! - The original `LockerServer` post uses `:` (`LOCK:name:id`), answers
//!   `UNLOCKED` and closes with `CLOSE:Closing Lock Server`.
//! - pypet's `LockerServer` uses `:::` and a fourth field, the request id
//!   (`LOCK:::name:::id:::request`), answers `RELEASED`, `CLOSED`, and
//!   `LOCK_ERROR:::...` when the holder asks again.
//!
//! A message containing `:::` is pypet's; anything else is the original's.

use std::fmt;

/// The longest request accepted, in bytes: a 512-byte lock name, a client
/// id, a request id and the delimiters fit with room to spare.
pub const MAX_REQUEST: usize = 2048;
/// The longest client id: it becomes the raftlock session's label, which
/// the cluster limits to 256 bytes.
pub const MAX_CLIENT_ID: usize = 200;
/// The longest lock name raftlock accepts, in bytes.
pub const MAX_LOCK_NAME: usize = 512;

const POST_DELIMITER: &str = ":";
const PYPET_DELIMITER: &str = ":::";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The original post's `LockerServer` (`:`).
    Post,
    /// pypet's `LockerServer` (`:::`, with a request id).
    Pypet,
}

impl Dialect {
    /// The dialect a (possibly partial, possibly non-UTF-8) message is in.
    pub fn of(bytes: &[u8]) -> Dialect {
        if bytes.windows(3).any(|w| w == PYPET_DELIMITER.as_bytes()) {
            Dialect::Pypet
        } else {
            Dialect::Post
        }
    }

    fn delimiter(self) -> &'static str {
        match self {
            Dialect::Post => POST_DELIMITER,
            Dialect::Pypet => PYPET_DELIMITER,
        }
    }
}

/// Who asks for which lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub client: String,
    /// pypet's request id (a timestamp); the post's dialect has none.
    pub request_id: Option<String>,
}

impl Target {
    /// ` (client id `x`, request id `y`)`, as pypet words its errors.
    pub fn who(&self) -> String {
        match &self.request_id {
            Some(request) => format!("client id `{}`, request id `{request}`", self.client),
            None => format!("client id `{}`", self.client),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Ping,
    /// Stop the server. pypet's carries a client id; the post's does not.
    Done,
    Lock(Target),
    Unlock(Target),
}

/// A reply; [`Reply::format`] spells it in a dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Pong,
    /// The answer to `DONE`.
    Closed,
    /// The lock is yours; `token` is shown only to clients that asked for it.
    Go {
        token: Option<u64>,
    },
    Wait,
    Released,
    LockError(String),
    ReleaseError(String),
    MsgError(String),
}

impl Reply {
    pub fn format(&self, dialect: Dialect) -> String {
        let d = dialect.delimiter();
        match (self, dialect) {
            (Reply::Pong, _) => "PONG".into(),
            (Reply::Closed, Dialect::Post) => "CLOSE:Closing Lock Server".into(),
            (Reply::Closed, Dialect::Pypet) => "CLOSED".into(),
            (Reply::Go { token: Some(token) }, Dialect::Pypet) => format!("GO{d}{token}"),
            // The post's client compares the whole reply with "GO".
            (Reply::Go { .. }, _) => "GO".into(),
            (Reply::Wait, _) => "WAIT".into(),
            (Reply::Released, Dialect::Post) => "UNLOCKED".into(),
            (Reply::Released, Dialect::Pypet) => "RELEASED".into(),
            (Reply::LockError(text), Dialect::Pypet) => format!("LOCK_ERROR{d}{text}"),
            // The post has no LOCK_ERROR; its client rejects any reply but
            // GO and WAIT, so a message error says the same to it.
            (Reply::LockError(text), Dialect::Post) => format!("MSG_ERROR{d}{text}"),
            (Reply::ReleaseError(text), _) => format!("RELEASE_ERROR{d}{text}"),
            (Reply::MsgError(text), _) => format!("MSG_ERROR{d}{text}"),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Post => "post",
            Dialect::Pypet => "pypet",
        })
    }
}

/// Parses one request. `Err` is the reply to send instead, in `Dialect`.
pub fn parse(bytes: &[u8]) -> (Dialect, Result<Request, Reply>) {
    let dialect = Dialect::of(bytes);
    if bytes.len() > MAX_REQUEST {
        let error = format!(
            "Request of {} bytes is over the {MAX_REQUEST}-byte limit",
            bytes.len()
        );
        return (dialect, Err(Reply::MsgError(error)));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        let error = format!(
            "Request `{}` is not UTF-8 text",
            String::from_utf8_lossy(bytes)
        );
        return (dialect, Err(Reply::MsgError(error)));
    };
    let parsed = match dialect {
        Dialect::Post => parse_post(text),
        Dialect::Pypet => parse_pypet(text),
    };
    (dialect, parsed)
}

/// The post's server: `msg:name:id`, or a bare command.
fn parse_post(text: &str) -> Result<Request, Reply> {
    let fields: Vec<&str> = text.split(POST_DELIMITER).collect();
    let (command, target) = match fields.as_slice() {
        [command] => (*command, None),
        [command, name, client] => (*command, Some((*name, *client))),
        // The post's server unpacked exactly three fields and crashed here.
        _ => {
            return Err(Reply::MsgError(format!(
                "Request `{text}` has {} fields; write COMMAND:name:id \
                 (a lock name cannot contain `:` in this dialect)",
                fields.len()
            )))
        }
    };
    let target = |action: &str| match target {
        Some((name, client)) if !name.is_empty() && !client.is_empty() => {
            checked_target(name, client, None)
        }
        _ => Err(Reply::MsgError(format!(
            "Please provide name and id for {action}"
        ))),
    };
    match command {
        "PING" => Ok(Request::Ping),
        "DONE" => Ok(Request::Done),
        "LOCK" => target("locking").map(Request::Lock),
        "UNLOCK" => target("unlocking").map(Request::Unlock),
        _ => Err(Reply::MsgError(format!("MSG `{command}` not understood"))),
    }
}

/// pypet's server: exactly `msg:::name:::client:::request`.
fn parse_pypet(text: &str) -> Result<Request, Reply> {
    let fields: Vec<&str> = text.split(PYPET_DELIMITER).collect();
    let [command, name, client, request] = fields.as_slice() else {
        return Err(Reply::MsgError(format!(
            "Request `{text}` not understood (or wrong number of delimiters)"
        )));
    };
    let target = || checked_target(name, client, Some(request));
    match *command {
        "PING" => Ok(Request::Ping),
        "DONE" => Ok(Request::Done),
        "LOCK" => target().map(Request::Lock),
        "UNLOCK" => target().map(Request::Unlock),
        _ => Err(Reply::MsgError(format!(
            "Request `{text}` not understood (or wrong number of delimiters)"
        ))),
    }
}

fn checked_target(name: &str, client: &str, request: Option<&str>) -> Result<Target, Reply> {
    if name.is_empty() || name.len() > MAX_LOCK_NAME {
        return Err(Reply::MsgError(format!(
            "Lock name must be 1 to {MAX_LOCK_NAME} bytes, not {}",
            name.len()
        )));
    }
    if client.is_empty() || client.len() > MAX_CLIENT_ID {
        return Err(Reply::MsgError(format!(
            "Client id must be 1 to {MAX_CLIENT_ID} bytes, not {}",
            client.len()
        )));
    }
    Ok(Target {
        name: name.to_string(),
        client: client.to_string(),
        request_id: request.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, client: &str, request: Option<&str>) -> Target {
        Target {
            name: name.into(),
            client: client.into(),
            request_id: request.map(Into::into),
        }
    }

    fn ok(text: &str) -> (Dialect, Request) {
        let (dialect, parsed) = parse(text.as_bytes());
        (
            dialect,
            parsed.unwrap_or_else(|e| panic!("{text:?}: {e:?}")),
        )
    }

    /// The error reply `text` gets, as sent.
    fn refused(bytes: &[u8]) -> String {
        let (dialect, parsed) = parse(bytes);
        match parsed {
            Err(reply) => reply.format(dialect),
            Ok(request) => panic!("{bytes:?} parsed as {request:?}"),
        }
    }

    #[test]
    fn post_requests() {
        assert_eq!(ok("PING"), (Dialect::Post, Request::Ping));
        assert_eq!(ok("DONE"), (Dialect::Post, Request::Done));
        assert_eq!(
            ok("LOCK:_DEFAULT_:host__12"),
            (
                Dialect::Post,
                Request::Lock(target("_DEFAULT_", "host__12", None))
            )
        );
        assert_eq!(
            ok("UNLOCK:x:host__12"),
            (
                Dialect::Post,
                Request::Unlock(target("x", "host__12", None))
            )
        );
        // The post's server looked only at the command of a 3-field PING.
        assert_eq!(ok("PING:a:b"), (Dialect::Post, Request::Ping));
    }

    #[test]
    fn pypet_requests() {
        assert_eq!(
            ok("LOCK:::_DEFAULT_:::host__12:::1700000000.5"),
            (
                Dialect::Pypet,
                Request::Lock(target("_DEFAULT_", "host__12", Some("1700000000.5")))
            )
        );
        assert_eq!(
            ok("UNLOCK:::a:b:::c:::1"),
            (
                Dialect::Pypet,
                Request::Unlock(target("a:b", "c", Some("1")))
            )
        );
        assert_eq!(ok("PING:::_DEFAULT_:::c:::1").1, Request::Ping);
        assert_eq!(ok("DONE:::_DEFAULT_:::c:::1").1, Request::Done);
    }

    #[test]
    fn malformed_post_requests_get_the_posts_errors() {
        assert_eq!(
            refused(b"LOCK"),
            "MSG_ERROR:Please provide name and id for locking"
        );
        assert_eq!(
            refused(b"UNLOCK::id"),
            "MSG_ERROR:Please provide name and id for unlocking"
        );
        assert_eq!(refused(b"HELLO"), "MSG_ERROR:MSG `HELLO` not understood");
        assert_eq!(refused(b""), "MSG_ERROR:MSG `` not understood");
        // A `:` inside the name: the post's server crashed on this.
        assert!(refused(b"LOCK:a:b:id").starts_with("MSG_ERROR:Request `LOCK:a:b:id` has 4 fields"));
        assert!(refused(b"LOCK:a").starts_with("MSG_ERROR:Request `LOCK:a` has 2 fields"));
    }

    #[test]
    fn malformed_pypet_requests_get_pypets_errors() {
        assert_eq!(
            refused(b"LOCK:::a:::b"),
            "MSG_ERROR:::Request `LOCK:::a:::b` not understood (or wrong number of delimiters)"
        );
        assert_eq!(
            refused(b"NOPE:::a:::b:::c"),
            "MSG_ERROR:::Request `NOPE:::a:::b:::c` not understood (or wrong number of delimiters)"
        );
        assert_eq!(
            refused(b"LOCK::::::b:::c"),
            "MSG_ERROR:::Lock name must be 1 to 512 bytes, not 0"
        );
        assert_eq!(
            refused(b"LOCK:::a::::::c"),
            "MSG_ERROR:::Client id must be 1 to 200 bytes, not 0"
        );
    }

    #[test]
    fn hostile_bytes_get_an_error_reply() {
        assert_eq!(
            refused(b"LOCK:\xff\xfe:id"),
            "MSG_ERROR:Request `LOCK:\u{fffd}\u{fffd}:id` is not UTF-8 text"
        );
        assert!(refused(b"LOCK:::\xc0:::id:::1").starts_with("MSG_ERROR:::Request `"));
        let huge = vec![b'A'; MAX_REQUEST + 1];
        assert_eq!(
            refused(&huge),
            "MSG_ERROR:Request of 2049 bytes is over the 2048-byte limit"
        );
        let long_name = format!("LOCK:{}:id", "n".repeat(MAX_LOCK_NAME + 1));
        assert_eq!(
            refused(long_name.as_bytes()),
            "MSG_ERROR:Lock name must be 1 to 512 bytes, not 513"
        );
        let long_id = format!("LOCK:::n:::{}:::1", "i".repeat(MAX_CLIENT_ID + 1));
        assert_eq!(
            refused(long_id.as_bytes()),
            "MSG_ERROR:::Client id must be 1 to 200 bytes, not 201"
        );
        // NUL bytes and control characters are text, and only text.
        assert_eq!(refused(b"\0\0\0"), "MSG_ERROR:MSG `\0\0\0` not understood");
    }

    #[test]
    fn every_reply_in_both_dialects() {
        use Dialect::*;
        let cases: [(Reply, &str, &str); 10] = [
            (Reply::Pong, "PONG", "PONG"),
            (Reply::Closed, "CLOSE:Closing Lock Server", "CLOSED"),
            (Reply::Go { token: None }, "GO", "GO"),
            (Reply::Go { token: Some(42) }, "GO", "GO:::42"),
            (Reply::Wait, "WAIT", "WAIT"),
            (Reply::Released, "UNLOCKED", "RELEASED"),
            (
                Reply::LockError("x".into()),
                "MSG_ERROR:x",
                "LOCK_ERROR:::x",
            ),
            (
                Reply::ReleaseError("x".into()),
                "RELEASE_ERROR:x",
                "RELEASE_ERROR:::x",
            ),
            (Reply::MsgError("x".into()), "MSG_ERROR:x", "MSG_ERROR:::x"),
            (Reply::MsgError(String::new()), "MSG_ERROR:", "MSG_ERROR:::"),
        ];
        for (reply, post, pypet) in cases {
            assert_eq!(reply.format(Post), post, "{reply:?}");
            assert_eq!(reply.format(Pypet), pypet, "{reply:?}");
        }
    }

    #[test]
    fn dialect_is_told_by_the_delimiter_even_in_garbage() {
        assert_eq!(Dialect::of(b"\xff:::\xff"), Dialect::Pypet);
        assert_eq!(Dialect::of(b"\xff::\xff"), Dialect::Post);
        assert_eq!(Dialect::of(b""), Dialect::Post);
    }

    #[test]
    fn who_names_the_client_as_pypet_does() {
        assert_eq!(
            target("n", "c", Some("7")).who(),
            "client id `c`, request id `7`"
        );
        assert_eq!(target("n", "c", None).who(), "client id `c`");
    }
}
