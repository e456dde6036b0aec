//! Seeds: one run seed, printed at start, from which every part and every
//! execution derives its own, so a failure seen in CI replays from the
//! numbers in its report.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// splitmix64: spreads consecutive inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of execution `n` of part `part` in the run seeded `run`.
pub fn derive(run: u64, part: &str, n: u64) -> u64 {
    let tag = part.bytes().fold(0u64, |acc, b| mix(acc ^ u64::from(b)));
    mix(mix(run ^ tag) ^ n)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A run seed when none is given: the clock's nanoseconds and the pid.
pub fn fresh() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix(nanos ^ u64::from(std::process::id()))
}
