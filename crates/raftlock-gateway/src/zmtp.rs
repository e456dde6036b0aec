//! Just enough of ZMTP 3 (ZeroMQ's wire protocol, RFC 23 and 37, NULL
//! security) to answer REQ and DEALER peers as a ROUTER socket does.
//!
//! Written here rather than taken from the `zeromq` crate (0.4.1) because
//! its source shows it trusting the peer: its decoder reserves whatever
//! length a frame header claims (so a 1 TB claim would fail the allocation
//! and abort), and its ROUTER `recv` reaches `todo!()` on a command frame
//! after the handshake. (Read in the source, not run against it.) Here every length a
//! peer sends is checked against a limit before anything is allocated, an
//! oversized message is read past in small pieces (so it can still be
//! answered), and every violation is an error for that connection only.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What we tell peers we are. REQ, DEALER and ROUTER peers accept it.
const SOCKET_TYPE: &[u8] = b"ROUTER";
const GREETING_LEN: usize = 64;
/// Commands are small: READY with an identity of at most 255 bytes, PING.
const MAX_COMMAND: u64 = 1024;
/// Frames per message: a REQ sends two (delimiter, body); proxies add a few.
pub const MAX_FRAMES: usize = 16;
/// Of a frame over the size limit, this much is kept, to answer it in the
/// right dialect.
const KEEP_OF_OVERSIZED: u64 = 64;

const FLAG_MORE: u8 = 0b001;
const FLAG_LONG: u8 = 0b010;
const FLAG_COMMAND: u8 = 0b100;

#[derive(Debug)]
pub enum ZmtpError {
    Io(io::Error),
    /// The peer broke the protocol; the connection is closed.
    Protocol(String),
}

impl std::error::Error for ZmtpError {}

impl std::fmt::Display for ZmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZmtpError::Io(e) => write!(f, "{e}"),
            ZmtpError::Protocol(why) => write!(f, "ZMTP protocol error: {why}"),
        }
    }
}

impl From<io::Error> for ZmtpError {
    fn from(e: io::Error) -> Self {
        ZmtpError::Io(e)
    }
}

fn protocol<T>(why: impl Into<String>) -> Result<T, ZmtpError> {
    Err(ZmtpError::Protocol(why.into()))
}

/// One message as received.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub frames: Vec<Vec<u8>>,
    /// Over a limit: the frame that did not fit is cut to its first bytes
    /// and later frames are dropped.
    pub oversized: bool,
}

impl Message {
    /// The routing envelope (up to and including the empty delimiter frame
    /// a REQ sends first; nothing if there is none) and the body after it.
    pub fn split_envelope(mut self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        match self.frames.iter().position(Vec::is_empty) {
            Some(delimiter) => {
                let body = self.frames.split_off(delimiter + 1);
                (self.frames, body)
            }
            None => (Vec::new(), self.frames),
        }
    }
}

/// Our greeting: ZMTP 3.0, NULL mechanism, not as-server.
fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Checks a peer's greeting: ZMTP 3.x with the NULL mechanism.
pub fn check_greeting(peer: &[u8; GREETING_LEN]) -> Result<(), ZmtpError> {
    if peer[0] != 0xff || peer[9] & 1 != 1 {
        return protocol("not a ZMTP 3 greeting");
    }
    if peer[10] < 3 {
        return protocol(format!("ZMTP {}.{} is not supported", peer[10], peer[11]));
    }
    let mechanism = &peer[12..32];
    if mechanism != b"NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0" {
        let shown = String::from_utf8_lossy(mechanism);
        return protocol(format!(
            "security mechanism {:?} is not supported (only NULL)",
            shown.trim_end_matches('\0')
        ));
    }
    Ok(())
}

/// A command frame's meaning, as far as we care.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// The handshake's READY, with the peer's Socket-Type.
    Ready { socket_type: Option<&'a [u8]> },
    /// A ZMTP 3.1 heartbeat; `context` is echoed in the PONG.
    Ping { context: &'a [u8] },
    /// The peer refuses us (ZMTP ERROR), with its reason.
    Error { reason: &'a [u8] },
    /// Anything else (PONG, SUBSCRIBE, ...): ignored.
    Other,
}

/// Parses a command frame's body, checking every length inside it.
pub fn parse_command(body: &[u8]) -> Result<Command<'_>, ZmtpError> {
    let Some((&name_len, rest)) = body.split_first() else {
        return protocol("empty command");
    };
    let Some((name, data)) = split_at_checked(rest, name_len as usize) else {
        return protocol("command name runs past the frame");
    };
    match name {
        b"READY" => {
            let mut socket_type = None;
            let mut props = data;
            while let Some((&key_len, rest)) = props.split_first() {
                let Some((key, rest)) = split_at_checked(rest, key_len as usize) else {
                    return protocol("READY property name runs past the frame");
                };
                let Some((len, rest)) = split_at_checked(rest, 4) else {
                    return protocol("READY property has no value length");
                };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let Some((value, rest)) = split_at_checked(rest, len) else {
                    return protocol("READY property value runs past the frame");
                };
                if key.eq_ignore_ascii_case(b"Socket-Type") {
                    socket_type = Some(value);
                }
                props = rest;
            }
            Ok(Command::Ready { socket_type })
        }
        b"PING" => {
            // A 2-byte TTL, then up to 16 bytes of context.
            let context = data.get(2..).unwrap_or_default();
            Ok(Command::Ping {
                context: &context[..context.len().min(16)],
            })
        }
        b"ERROR" => {
            let reason = match data.split_first() {
                Some((&len, rest)) => &rest[..rest.len().min(len as usize)],
                None => &[],
            };
            Ok(Command::Error { reason })
        }
        _ => Ok(Command::Other),
    }
}

fn split_at_checked(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (at <= bytes.len()).then(|| bytes.split_at(at))
}

/// `name` and `data` as a command body.
fn command_body(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    body.extend_from_slice(data);
    body
}

fn ready_body() -> Vec<u8> {
    let mut props = Vec::new();
    props.push(b"Socket-Type".len() as u8);
    props.extend_from_slice(b"Socket-Type");
    props.extend_from_slice(&(SOCKET_TYPE.len() as u32).to_be_bytes());
    props.extend_from_slice(SOCKET_TYPE);
    command_body(b"READY", &props)
}

/// Appends one frame (header and data) to `out`.
fn encode_frame(out: &mut Vec<u8>, flags: u8, data: &[u8]) {
    if data.len() > 255 {
        out.push(flags | FLAG_LONG);
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    } else {
        out.push(flags);
        out.push(data.len() as u8);
    }
    out.extend_from_slice(data);
}

/// A connection to one peer, after the handshake.
pub struct Connection<S> {
    io: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Greets the peer and exchanges READY. Only REQ and DEALER peers are
    /// accepted: they are the ones that send requests and await replies.
    pub async fn handshake(mut io: S) -> Result<Connection<S>, ZmtpError> {
        // All of ours at once: libzmq sends its signature and waits for ours.
        io.write_all(&greeting()).await?;
        io.flush().await?;
        let mut peer = [0u8; GREETING_LEN];
        io.read_exact(&mut peer).await?;
        check_greeting(&peer)?;
        let mut conn = Connection { io };
        conn.write_command(&ready_body()).await?;
        let (flags, len) = conn.read_header().await?;
        if flags & FLAG_COMMAND == 0 || len > MAX_COMMAND {
            return protocol("expected a READY command");
        }
        let body = conn.read_exact_vec(len).await?;
        match parse_command(&body)? {
            Command::Ready {
                socket_type: Some(kind),
            } if kind == b"REQ" || kind == b"DEALER" => Ok(conn),
            Command::Ready { socket_type } => {
                let kind = String::from_utf8_lossy(socket_type.unwrap_or_default()).into_owned();
                let reason = format!("a {kind:?} socket cannot talk to a ROUTER; use REQ");
                // Tell the peer why, as ZMTP's ERROR command, then hang up.
                let mut data = vec![reason.len().min(255) as u8];
                data.extend_from_slice(&reason.as_bytes()[..reason.len().min(255)]);
                let _ = conn.write_command(&command_body(b"ERROR", &data)).await;
                protocol(reason)
            }
            Command::Error { reason } => protocol(format!(
                "peer refused the handshake: {}",
                String::from_utf8_lossy(reason)
            )),
            _ => protocol("expected a READY command"),
        }
    }

    /// The next message, keeping at most `max_bytes` of frame data (more is
    /// read past and the message marked oversized). `None` when the peer
    /// closed the connection between messages. Heartbeat PINGs are answered
    /// on the way.
    pub async fn read_message(&mut self, max_bytes: usize) -> Result<Option<Message>, ZmtpError> {
        let mut message = Message::default();
        let mut kept = 0u64;
        loop {
            let mut first = [0u8; 1];
            if self.io.read(&mut first).await? == 0 {
                if message.frames.is_empty() && !message.oversized {
                    return Ok(None);
                }
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            let (flags, len) = self.read_len(first[0]).await?;
            if flags & FLAG_COMMAND != 0 {
                if len > MAX_COMMAND {
                    return protocol(format!("command of {len} bytes"));
                }
                let body = self.read_exact_vec(len).await?;
                if let Command::Ping { context } = parse_command(&body)? {
                    let pong = command_body(b"PONG", context);
                    self.write_command(&pong).await?;
                }
                continue;
            }
            let fits = !message.oversized
                && message.frames.len() < MAX_FRAMES
                && kept.saturating_add(len) <= max_bytes as u64;
            if fits {
                message.frames.push(self.read_exact_vec(len).await?);
                kept += len;
            } else {
                if !message.oversized && message.frames.len() < MAX_FRAMES {
                    let keep = len.min(KEEP_OF_OVERSIZED);
                    message.frames.push(self.read_exact_vec(keep).await?);
                    self.skip(len - keep).await?;
                } else {
                    self.skip(len).await?;
                }
                message.oversized = true;
            }
            if flags & FLAG_MORE == 0 {
                return Ok(Some(message));
            }
        }
    }

    /// Sends one message made of `frames`.
    pub async fn write_message(&mut self, frames: &[&[u8]]) -> Result<(), ZmtpError> {
        let mut out = Vec::with_capacity(frames.iter().map(|f| f.len() + 9).sum());
        for (i, frame) in frames.iter().enumerate() {
            let more = if i + 1 < frames.len() { FLAG_MORE } else { 0 };
            encode_frame(&mut out, more, frame);
        }
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn write_command(&mut self, body: &[u8]) -> Result<(), ZmtpError> {
        let mut out = Vec::with_capacity(body.len() + 9);
        encode_frame(&mut out, FLAG_COMMAND, body);
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn read_header(&mut self) -> Result<(u8, u64), ZmtpError> {
        let flags = self.io.read_u8().await?;
        self.read_len(flags).await
    }

    /// The frame length that follows `flags`; refuses reserved flag bits.
    async fn read_len(&mut self, flags: u8) -> Result<(u8, u64), ZmtpError> {
        if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0 {
            return protocol(format!("frame flags {flags:#04x} use reserved bits"));
        }
        let len = if flags & FLAG_LONG != 0 {
            self.io.read_u64().await?
        } else {
            self.io.read_u8().await? as u64
        };
        Ok((flags, len))
    }

    /// Reads `len` bytes; callers have bounded `len`.
    async fn read_exact_vec(&mut self, len: u64) -> Result<Vec<u8>, ZmtpError> {
        let mut data = vec![0u8; len as usize];
        self.io.read_exact(&mut data).await?;
        Ok(data)
    }

    /// Reads past `len` bytes without keeping them.
    async fn skip(&mut self, mut len: u64) -> Result<(), ZmtpError> {
        let mut sink = [0u8; 8192];
        while len > 0 {
            let want = len.min(sink.len() as u64) as usize;
            let got = self.io.read(&mut sink[..want]).await?;
            if got == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            len -= got as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    /// A REQ peer's greeting and READY, as libzmq sends them.
    fn req_hello(socket_type: &[u8]) -> Vec<u8> {
        let mut out = greeting().to_vec();
        out[11] = 1; // libzmq speaks 3.1
        let mut props = vec![11];
        props.extend_from_slice(b"Socket-Type");
        props.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
        props.extend_from_slice(socket_type);
        props.extend_from_slice(&[8]);
        props.extend_from_slice(b"Identity");
        props.extend_from_slice(&0u32.to_be_bytes());
        encode_frame(&mut out, FLAG_COMMAND, &command_body(b"READY", &props));
        out
    }

    fn frames(parts: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (data, more) in parts {
            encode_frame(&mut out, if *more { FLAG_MORE } else { 0 }, data);
        }
        out
    }

    /// A handshaken connection and the peer's end of it.
    async fn connected() -> (Connection<DuplexStream>, DuplexStream) {
        let (ours, mut peer) = duplex(1 << 16);
        peer.write_all(&req_hello(b"REQ")).await.unwrap();
        let conn = Connection::handshake(ours).await.unwrap();
        let mut theirs = vec![0u8; GREETING_LEN];
        peer.read_exact(&mut theirs).await.unwrap();
        check_greeting(theirs.as_slice().try_into().unwrap()).unwrap();
        let ready = ready_body();
        let mut header = [0u8; 2];
        peer.read_exact(&mut header).await.unwrap();
        assert_eq!(header, [FLAG_COMMAND, ready.len() as u8]);
        let mut body = vec![0u8; ready.len()];
        peer.read_exact(&mut body).await.unwrap();
        assert_eq!(
            parse_command(&body).unwrap(),
            Command::Ready {
                socket_type: Some(b"ROUTER")
            }
        );
        (conn, peer)
    }

    #[tokio::test]
    async fn a_req_request_and_its_reply() {
        let (mut conn, mut peer) = connected().await;
        peer.write_all(&frames(&[(b"", true), (b"PING", false)]))
            .await
            .unwrap();
        let message = conn.read_message(100).await.unwrap().unwrap();
        assert!(!message.oversized);
        let (envelope, body) = message.split_envelope();
        assert_eq!(envelope, vec![Vec::<u8>::new()]);
        assert_eq!(body, vec![b"PING".to_vec()]);
        let long = vec![b'x'; 300];
        conn.write_message(&[b"", &long]).await.unwrap();
        let mut got = vec![0u8; 2 + 1 + 8 + 300];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..3], &[FLAG_MORE, 0, FLAG_LONG]);
        assert_eq!(&got[3..11], &300u64.to_be_bytes());
        drop(peer);
        assert!(conn.read_message(100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_heartbeat_is_answered_between_messages() {
        let (mut conn, mut peer) = connected().await;
        let mut ping = Vec::new();
        encode_frame(
            &mut ping,
            FLAG_COMMAND,
            &command_body(b"PING", b"\0\x0actx"),
        );
        ping.extend(frames(&[(b"", true), (b"x", false)]));
        peer.write_all(&ping).await.unwrap();
        let message = conn.read_message(100).await.unwrap().unwrap();
        assert_eq!(message.frames, vec![b"".to_vec(), b"x".to_vec()]);
        let pong = command_body(b"PONG", b"ctx");
        let mut got = vec![0u8; 2 + pong.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[2..], &pong[..]);
    }

    #[tokio::test]
    async fn an_oversized_message_is_read_past_and_marked() {
        let (mut conn, mut peer) = connected().await;
        let big = vec![b'L'; 100_000];
        let writer = tokio::spawn(async move {
            peer.write_all(&frames(&[(b"", true), (&big, true), (b"tail", false)]))
                .await
                .unwrap();
            peer.write_all(&frames(&[(b"", true), (b"next", false)]))
                .await
                .unwrap();
            peer
        });
        let message = conn.read_message(2048).await.unwrap().unwrap();
        assert!(message.oversized);
        assert_eq!(message.frames.len(), 2);
        assert_eq!(message.frames[1], vec![b'L'; KEEP_OF_OVERSIZED as usize]);
        // The stream is still in step: the next message reads whole.
        let next = conn.read_message(2048).await.unwrap().unwrap();
        assert_eq!(next.frames, vec![b"".to_vec(), b"next".to_vec()]);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_huge_claimed_length_allocates_nothing() {
        let (mut conn, mut peer) = connected().await;
        // Claims 2^63 bytes, then hangs up after a few.
        let mut hostile = vec![FLAG_LONG];
        hostile.extend_from_slice(&(1u64 << 63).to_be_bytes());
        hostile.extend_from_slice(b"abc");
        peer.write_all(&hostile).await.unwrap();
        drop(peer);
        match conn.read_message(2048).await {
            Err(ZmtpError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn too_many_frames_is_oversized_not_unbounded() {
        let (mut conn, mut peer) = connected().await;
        let parts: Vec<(&[u8], bool)> = (0..1000).map(|i| (&b"f"[..], i < 999)).collect();
        peer.write_all(&frames(&parts)).await.unwrap();
        let message = conn.read_message(2048).await.unwrap().unwrap();
        assert!(message.oversized);
        assert!(message.frames.len() <= MAX_FRAMES);
    }

    #[tokio::test]
    async fn protocol_violations_end_the_connection_with_an_error() {
        let cases: [&[u8]; 3] = [
            &[0x80, 1, b'x'],                                    // reserved flag bit
            &[FLAG_COMMAND | FLAG_LONG, 0, 0, 0, 0, 0, 1, 0, 0], // a 64 KiB command
            &[FLAG_COMMAND, 3, 9, b'R', b'E'],                   // a command name past its frame
        ];
        for hostile in cases {
            let (mut conn, mut peer) = connected().await;
            peer.write_all(hostile).await.unwrap();
            let got = conn.read_message(2048).await;
            assert!(
                matches!(got, Err(ZmtpError::Protocol(_))),
                "{hostile:?}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn handshakes_that_are_refused() {
        let mut not_zmtp = b"GET / HTTP/1.1\r\n".to_vec();
        not_zmtp.resize(GREETING_LEN, b' ');
        let mut curve = req_hello(b"REQ");
        curve[12..17].copy_from_slice(b"CURVE");
        let mut old = req_hello(b"REQ");
        old[10] = 2;
        for (hello, why) in [
            (not_zmtp, "not a ZMTP 3 greeting"),
            (curve, "\"CURVE\" is not supported"),
            (old, "ZMTP 2.1 is not supported"),
            (
                req_hello(b"PUB"),
                "a \"PUB\" socket cannot talk to a ROUTER",
            ),
        ] {
            let (ours, mut peer) = duplex(1 << 16);
            peer.write_all(&hello).await.unwrap();
            match Connection::handshake(ours).await {
                Err(ZmtpError::Protocol(e)) => assert!(e.contains(why), "{e}"),
                Err(e) => panic!("{why}: {e}"),
                Ok(_) => panic!("{why}: accepted"),
            }
        }
    }

    #[test]
    fn commands_with_lengths_past_their_end_are_refused() {
        assert!(parse_command(b"").is_err());
        assert!(parse_command(b"\x05REA").is_err());
        let mut ready = command_body(b"READY", b"\x0bSocket-Type");
        assert!(parse_command(&ready).is_err(), "no value length");
        ready.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_command(&ready).is_err(), "value past the end");
        assert_eq!(
            parse_command(&command_body(b"READY", b"")).unwrap(),
            Command::Ready { socket_type: None }
        );
        assert_eq!(
            parse_command(b"\x04PING").unwrap(),
            Command::Ping { context: b"" }
        );
        assert_eq!(
            parse_command(b"\x05ERROR\x09too long").unwrap(),
            Command::Error {
                reason: b"too long"
            }
        );
        assert_eq!(parse_command(b"\x04PONGxyz").unwrap(), Command::Other);
    }

    #[test]
    fn a_message_without_a_delimiter_has_no_envelope() {
        let message = Message {
            frames: vec![b"a".to_vec(), b"b".to_vec()],
            oversized: false,
        };
        let (envelope, body) = message.split_envelope();
        assert!(envelope.is_empty());
        assert_eq!(body.len(), 2);
    }
}
