//! Randomness from the system generator (aws-lc-rs): tokens, nonces and
//! the jitter that spreads retries.

use std::fmt::Write as _;
use std::time::SystemTime;

/// `count` random bytes as lowercase hex.
pub(crate) fn random_hex(count: usize) -> String {
    let mut bytes = vec![0u8; count];
    // A failing system RNG must not yield a predictable nonce or token.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
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
    let _ = aws_lc_rs::rand::fill(&mut byte);
    0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0
}

/// A random fraction in [0.0, 1.0): where in a window to place something.
pub(crate) fn fraction() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}
