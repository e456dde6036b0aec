//! Bursts through a real HTTP/2 client (the `h2` crate): gRPC calls with
//! garbage bodies and headers, bodies above the server's size limit or
//! shorter than their length prefix, and floods of streams opened and
//! reset at once.

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderValue, Method, Request};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::bodies::{self, Service};
use super::conn::Dialer;

const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// What a call burst knows of the node it calls.
pub struct CallContext<'a> {
    pub dialer: &'a Dialer,
    pub admin_token: Option<&'a str>,
    pub session_id: &'a str,
    /// How the node answered the calls: gRPC status code -> count
    /// (proof that the garbage reached the services, not only the socket).
    pub answers: &'a Answers,
}

pub type Answers = std::sync::Mutex<std::collections::BTreeMap<String, u64>>;

fn count_answer(answers: &Answers, what: String) {
    let mut map = answers.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(what).or_default() += 1;
}

/// The gRPC status of an answer: from the trailers, else the headers
/// (a "trailers-only" answer), else what HTTP/2 said.
fn status_of(headers: &http::HeaderMap, trailers: Option<&http::HeaderMap>) -> String {
    let code = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"));
    match code.and_then(|c| c.to_str().ok()) {
        Some(code) => format!("grpc-status {code}"),
        None => "no grpc-status".into(),
    }
}

async fn connect(dialer: &Dialer) -> anyhow::Result<SendRequest<Bytes>> {
    let stream = dialer.stream().await?;
    let (client, connection) = h2::client::handshake(stream).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("x"))
}

/// Request headers: mostly what gRPC sends, sometimes not.
fn request(rng: &mut StdRng, path: &str, cx: &CallContext<'_>) -> Request<()> {
    let scheme = if cx.dialer.is_tls() { "https" } else { "http" };
    let uri = format!("{scheme}://{}{path}", cx.dialer.addr);
    let method = if rng.gen_ratio(1, 20) {
        Method::GET
    } else {
        Method::POST
    };
    let mut builder = Request::builder().method(method).uri(uri);
    let content_type = match rng.gen_range(0..12) {
        0 => None,
        1 => Some("text/plain"),
        2 => Some("application/grpc+json"),
        _ => Some("application/grpc"),
    };
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    if rng.gen_ratio(9, 10) {
        builder = builder.header("te", "trailers");
    }
    if rng.gen_ratio(1, 8) {
        let encoding = *["gzip", "identity", "zstd", "bogus"]
            .choose(rng)
            .unwrap_or(&"gzip");
        builder = builder.header("grpc-encoding", encoding);
    }
    if rng.gen_ratio(1, 8) {
        let timeout = *["1n", "99999999H", "0S", "x", "-5m"]
            .choose(rng)
            .unwrap_or(&"1n");
        builder = builder.header("grpc-timeout", timeout);
    }
    let auth = match (cx.admin_token, rng.gen_range(0..6)) {
        (Some(token), 0..=2) => Some(format!("Bearer {token}")),
        (_, 3) => Some(format!("Bearer {:032x}", rng.gen::<u128>())),
        (_, 4) => Some("Basic Zm9vOmJhcg==".to_string()),
        _ => None,
    };
    if let Some(auth) = auth {
        builder = builder.header("authorization", header_value(&auth));
    }
    builder.body(()).unwrap_or_else(|_| Request::new(()))
}

/// A gRPC length-prefixed message: flag, big-endian length, body.
fn grpc_frame(flag: u8, claimed: u32, body: &[u8]) -> Bytes {
    let mut out = vec![flag];
    out.extend(claimed.to_be_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The frames of one request body: mostly one honest message; sometimes
/// a compressed flag, a lying length, two messages, or none.
fn framed(rng: &mut StdRng, body: &[u8]) -> Vec<Bytes> {
    let len = body.len() as u32;
    match rng.gen_range(0..12) {
        0 => vec![grpc_frame(1, len, body)],
        1 => vec![grpc_frame(rng.gen(), len, body)],
        2 => vec![grpc_frame(
            0,
            len.saturating_add(rng.gen_range(1..1_000)),
            body,
        )],
        3 => vec![grpc_frame(0, len / 2, body)],
        4 => vec![grpc_frame(0, len, body), grpc_frame(0, len, body)],
        5 => vec![],
        6 => vec![Bytes::copy_from_slice(&body[..body.len().min(3)])],
        _ => vec![grpc_frame(0, len, body)],
    }
}

/// Sends one request and reads its answer for a moment.
async fn send(
    client: &SendRequest<Bytes>,
    request: Request<()>,
    frames: Vec<Bytes>,
    answers: &Answers,
) -> anyhow::Result<u64> {
    let label = request.uri().path().rsplit('/').take(2).collect::<Vec<_>>();
    let label = format!(
        "{}/{}",
        label.get(1).unwrap_or(&""),
        label.first().unwrap_or(&"")
    );
    let mut client = tokio::time::timeout(ANSWER_WITHIN, client.clone().ready()).await??;
    let (response, mut stream) = client.send_request(request, false)?;
    let mut sent = 0;
    for f in frames {
        sent += f.len() as u64;
        stream.send_data(f, false)?;
    }
    stream.send_data(Bytes::new(), true)?;
    let read = async {
        let (head, mut body) = response.await?.into_parts();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await?;
        Ok::<_, h2::Error>(status_of(&head.headers, trailers.as_ref()))
    };
    let answer = match tokio::time::timeout(ANSWER_WITHIN, read).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => match e.reason() {
            Some(reason) => format!("stream reset ({reason:?})"),
            None => "connection error".into(),
        },
        Err(_) => "no answer within 2s".into(),
    };
    count_answer(answers, format!("{label} {answer}"));
    Ok(sent)
}

/// 1 to 20 calls on one connection to methods of `services`.
pub async fn garbage_calls(
    rng: &mut StdRng,
    cx: &CallContext<'_>,
    services: &[Service],
) -> anyhow::Result<u64> {
    let client = connect(cx.dialer).await?;
    let mut sent = 0;
    for _ in 0..rng.gen_range(1..=20) {
        let service = *services.choose(rng).unwrap_or(&Service::Unknown);
        let (path, body) = bodies::call(rng, service, cx.session_id);
        let request = request(rng, &path, cx);
        let frames = framed(rng, &body);
        sent += send(&client, request, frames, cx.answers)
            .await
            .unwrap_or(0);
    }
    Ok(sent)
}

/// One call whose message is above `limit` (the server's largest), sent
/// whole or only claimed by its length prefix, or one whose prefix claims
/// more than the body that follows before the stream ends.
pub async fn oversized(
    rng: &mut StdRng,
    cx: &CallContext<'_>,
    path: &str,
    limit: usize,
) -> anyhow::Result<u64> {
    let client = connect(cx.dialer).await?;
    let request = request(rng, path, cx);
    let filler: u8 = rng.gen();
    let frames = match rng.gen_range(0..4) {
        // Whole: the server must refuse it without holding it all at once.
        0 => {
            let size = limit + rng.gen_range(1..4_096);
            let body = vec![filler; size];
            vec![grpc_frame(0, size as u32, &body)]
        }
        // Claimed only: a header promising more than the limit.
        1 => vec![grpc_frame(0, u32::MAX, &[filler; 64])],
        2 => vec![grpc_frame(0, (limit + 1) as u32, &[filler; 1_024])],
        // Truncated: a promise under the limit that the body breaks.
        _ => {
            let claimed = rng.gen_range(100..limit as u32);
            let body = vec![filler; rng.gen_range(0..claimed as usize)];
            vec![grpc_frame(0, claimed, &body)]
        }
    };
    send(&client, request, frames, cx.answers).await
}

/// Opens streams and resets each at once (the "rapid reset" pattern), or
/// opens many and leaves them open until the connection drops.
pub async fn stream_flood(
    rng: &mut StdRng,
    cx: &CallContext<'_>,
    path: &str,
) -> anyhow::Result<u64> {
    let client = connect(cx.dialer).await?;
    let reset_each = rng.gen_ratio(2, 3);
    let count = rng.gen_range(50..1_500);
    let mut open = Vec::new();
    let mut opened = 0;
    for _ in 0..count {
        let Ok(Ok(mut ready)) = tokio::time::timeout(ANSWER_WITHIN, client.clone().ready()).await
        else {
            break;
        };
        let request = request(rng, path, cx);
        let Ok((response, mut stream)) = ready.send_request(request, false) else {
            break;
        };
        opened += 1;
        if reset_each {
            stream.send_reset(h2::Reason::CANCEL);
        } else {
            open.push((response, stream));
        }
    }
    drop(open);
    Ok(opened)
}
