//! Bursts below gRPC: random bytes on a fresh connection (at the TLS
//! handshake on a secure port), and the HTTP/2 preface followed by frames
//! with random types, flags, stream ids and lying lengths.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::Dialer;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const WRITE_WITHIN: Duration = Duration::from_secs(3);

/// Writes `bytes`, then reads what the server says for a moment; errors
/// (the server hanging up) are expected and ignored.
async fn send_and_drain<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> u64 {
    let wrote = tokio::time::timeout(WRITE_WITHIN, stream.write_all(bytes)).await;
    let _ = tokio::time::timeout(WRITE_WITHIN, stream.flush()).await;
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(100), drain).await;
    match wrote {
        Ok(Ok(())) => bytes.len() as u64,
        _ => 0,
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = match rng.gen_range(0..10) {
        0 => rng.gen_range(1_024..max),
        _ => rng.gen_range(0..512),
    };
    (0..len).map(|_| rng.gen()).collect()
}

/// Random bytes on 1 to 6 TCP connections, sometimes behind a prefix that
/// gets them past the first check (a TLS record header, the HTTP/2
/// preface, an HTTP/1 request line). Returns the bytes sent.
pub async fn random_tcp(rng: &mut StdRng, dialer: &Dialer) -> anyhow::Result<u64> {
    let mut sent = 0;
    for _ in 0..rng.gen_range(1..=6) {
        let mut bytes = match rng.gen_range(0..5) {
            0 => vec![0x16, 0x03, rng.gen_range(0..5), rng.gen(), rng.gen()],
            1 => PREFACE.to_vec(),
            2 => b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n".to_vec(),
            _ => Vec::new(),
        };
        bytes.extend(random_bytes(rng, 65_536));
        let mut stream = dialer.tcp().await?;
        sent += send_and_drain(&mut stream, &bytes).await;
    }
    Ok(sent)
}

/// One HTTP/2 frame; `claimed` is the length its header states.
fn frame(claimed: u32, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = claimed.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn stream_id(rng: &mut StdRng) -> u32 {
    match rng.gen_range(0..5) {
        0 => 0,
        1 => u32::MAX,
        2 => 0x7fff_ffff,
        _ => rng.gen_range(0..20) * 2 + 1,
    }
}

fn random_frame(rng: &mut StdRng) -> Vec<u8> {
    let payload = random_bytes(rng, 20_000);
    let claimed = match rng.gen_range(0..8) {
        0 => rng.gen_range(0..1 << 24),
        1 => payload.len() as u32 + rng.gen_range(1..100),
        2 => (payload.len() as u32).saturating_sub(rng.gen_range(1..10)),
        _ => payload.len() as u32,
    };
    let kind = if rng.gen_ratio(1, 8) {
        rng.gen()
    } else {
        rng.gen_range(0..10)
    };
    frame(claimed, kind, rng.gen(), stream_id(rng), &payload)
}

/// A HEADERS frame without END_HEADERS, then CONTINUATION frames until a
/// limit should stop them (the "CONTINUATION flood").
fn continuation_flood(rng: &mut StdRng) -> Vec<u8> {
    let stream = 1;
    let chunk: Vec<u8> = (0..16_384).map(|_| rng.gen()).collect();
    let mut out = frame(chunk.len() as u32, 0x1, 0x0, stream, &chunk);
    for _ in 0..rng.gen_range(10..200) {
        out.extend(frame(chunk.len() as u32, 0x9, 0x0, stream, &chunk));
    }
    out
}

/// The preface, an empty SETTINGS frame (mostly), then garbage frames.
pub async fn h2_frames(rng: &mut StdRng, dialer: &Dialer) -> anyhow::Result<u64> {
    let mut bytes = PREFACE.to_vec();
    if rng.gen_ratio(4, 5) {
        bytes.extend(frame(0, 0x4, 0, 0, &[]));
    }
    if rng.gen_ratio(1, 6) {
        bytes.extend(continuation_flood(rng));
    } else {
        for _ in 0..rng.gen_range(1..40) {
            bytes.extend(random_frame(rng));
        }
    }
    let mut stream = dialer.stream().await?;
    Ok(send_and_drain(&mut stream, &bytes).await)
}
