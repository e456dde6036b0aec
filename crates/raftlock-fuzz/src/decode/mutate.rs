//! Mutations of valid encodings: the ways hostile or damaged bytes differ
//! from good ones (flipped bits, lengths that lie, cut-off tails, pieces
//! of other messages).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Values a length or a tag field may be smashed to: the limits of the
/// field widths bincode uses, and just past the lengths that are there.
fn smash_value(rng: &mut StdRng, len: usize) -> u64 {
    *[
        u64::MAX,
        u64::MAX / 2,
        1 << 62,
        1 << 40,
        1 << 32,
        u64::from(u32::MAX),
        1 << 31,
        1 << 30,
        (1 << 30) + 1,
        1 << 24,
        len as u64 + 1,
        len as u64 * 2,
        rng.gen(),
    ]
    .choose(rng)
    .unwrap_or(&u64::MAX)
}

/// Random bytes, sometimes many.
pub fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.gen_range(0..10) {
        0 => rng.gen_range(256..8_192),
        _ => rng.gen_range(0..64),
    };
    (0..len).map(|_| rng.gen()).collect()
}

/// One to four mutations of `bytes`; `other` is a valid encoding to
/// splice from.
pub fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..rng.gen_range(1..=4) {
        mutate_once(rng, bytes, other);
    }
}

fn mutate_once(rng: &mut StdRng, bytes: &mut Vec<u8>, other: &[u8]) {
    let len = bytes.len();
    let at = if len == 0 { 0 } else { rng.gen_range(0..len) };
    match rng.gen_range(0..9) {
        0 if len > 0 => bytes[at] ^= 1 << rng.gen_range(0..8),
        1 if len > 0 => {
            bytes[at] = *[0u8, 1, 2, 0x7f, 0x80, 0xfe, 0xff]
                .choose(rng)
                .unwrap_or(&0)
        }
        2 => {
            let value = smash_value(rng, len);
            let width = if rng.gen() { 8 } else { 4 };
            let field = &value.to_le_bytes()[..width];
            for (i, b) in field.iter().enumerate() {
                match bytes.get_mut(at + i) {
                    Some(slot) => *slot = *b,
                    None => bytes.push(*b),
                }
            }
        }
        3 => {
            let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
            bytes.splice(at..at, extra);
        }
        4 if len > 0 => {
            let end = (at + rng.gen_range(1..=16)).min(len);
            bytes.drain(at..end);
        }
        5 => bytes.truncate(at),
        6 if !other.is_empty() => {
            let from = rng.gen_range(0..other.len());
            let to = rng.gen_range(from..=other.len());
            let cut = (at + rng.gen_range(0..=len - at)).min(len);
            bytes.splice(at..cut, other[from..to].iter().copied());
        }
        7 if len > 0 => {
            let end = (at + rng.gen_range(1..=32)).min(len);
            let chunk = bytes[at..end].to_vec();
            bytes.splice(at..at, chunk);
        }
        _ => bytes.push(rng.gen()),
    }
}
