//! Randomness from the system generator (aws-lc-rs): tokens, nonces and
//! the jitter that spreads retries.

use std::fmt::Write as _;
use std::time::SystemTime;

#[cfg(all(feature = "testing", feature = "dev"))]
thread_local! {
    /// The state of this thread's deterministic generator, when seeded.
    static SEEDED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Makes this thread's random values a fixed sequence from `seed`, or the
/// system generator's again with `None`. Testing builds only: the fault
/// simulation replays a run exactly from its seed.
#[cfg(all(feature = "testing", feature = "dev"))]
pub(crate) fn seed_thread(seed: Option<u64>) {
    SEEDED.with(|s| s.set(seed));
}

/// Fills `bytes` from the system generator (or, in testing builds, from
/// this thread's seeded sequence).
fn fill(bytes: &mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified> {
    #[cfg(all(feature = "testing", feature = "dev"))]
    if let Some(mut state) = SEEDED.with(std::cell::Cell::get) {
        for chunk in bytes.chunks_mut(8) {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        SEEDED.with(|s| s.set(Some(state)));
        return Ok(());
    }
    aws_lc_rs::rand::fill(bytes)
}

/// `count` random bytes as lowercase hex.
pub(crate) fn random_hex(count: usize) -> String {
    let mut bytes = vec![0u8; count];
    // A failing system RNG must not yield a predictable nonce or token.
    if fill(&mut bytes).is_err() {
        let fallback = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = fallback.to_le_bytes().repeat(count.div_ceil(16));
        bytes.truncate(count);
        tracing::error!(target: "marketgate", "system random number generator failed");
    }
    bytes
        .iter()
        .fold(String::with_capacity(count * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A random fraction in [0.5, 1.0) for "equal jitter": spreads retries of
/// many tasks without ever retrying immediately.
pub(crate) fn jitter() -> f64 {
    let mut byte = [0u8; 2];
    // A failure of the system RNG only loses the jitter, not the retry.
    let _ = fill(&mut byte);
    0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0
}

/// A random fraction in [0.0, 1.0): where in a window to place something.
pub(crate) fn fraction() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}
