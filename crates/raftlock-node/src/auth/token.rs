//! Bearer tokens: how a new one is made, and the only form in which the
//! node and the auth file ever keep one (the hex of its SHA-256).
//!
//! A token is `rlt_` followed by the URL-safe base64 (no padding) of 32
//! bytes from the operating system's random source: 256 bits, so guessing
//! is hopeless and a plain hash (no salt, no stretching) is enough to keep
//! a stolen auth file from giving the tokens away.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What every token starts with, so one is easy to recognise in a leaked
/// paste or a secret scanner.
pub const TOKEN_PREFIX: &str = "rlt_";

/// A token's SHA-256: the key the node looks tokens up by.
pub type TokenHash = [u8; 32];

/// A new random token, for `raftlock auth add` and `rotate`.
pub fn generate() -> String {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret))
}

/// The SHA-256 of `token` as the client sent it.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// `hash`, as the lowercase hex the auth file stores.
pub fn hash_hex(token: &str) -> String {
    to_hex(&hash(token))
}

pub fn to_hex(hash: &TokenHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a `token_sha256` value: exactly 64 hex digits (either case).
pub fn parse_hex(text: &str) -> Option<TokenHash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (out, pair) in hash.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(hash)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_prefix_and_43_url_safe_characters_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let body = a.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(body.len(), 43);
        assert!(body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
    }

    #[test]
    fn the_hash_is_sha256_in_lowercase_hex() {
        // SHA-256("abc"), from FIPS 180-2.
        assert_eq!(
            hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused() {
        let h = hash("rlt_x");
        assert_eq!(parse_hex(&to_hex(&h)), Some(h));
        assert_eq!(parse_hex(&to_hex(&h).to_uppercase()), Some(h));
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex(&"0".repeat(63)), None);
        assert_eq!(parse_hex(&"0".repeat(65)), None);
        assert_eq!(parse_hex(&format!("{}g", "0".repeat(63))), None);
        // A multi-byte character must not be split into "digits".
        assert_eq!(parse_hex(&format!("é{}", "0".repeat(62))), None);
    }
}
