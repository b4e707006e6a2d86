//! Random identifiers: request ids, metering record ids, consumption tokens.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Random bytes from the system's CSPRNG. The simulator cannot work without
/// randomness, but an id made of zeros is still better than a crash, so a
/// failing generator (which aws-lc documents as practically impossible)
/// degrades to zeros.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("system random number generator failed");
    }
    bytes
}

/// A random (version 4) UUID in its usual text form, like the ids AWS
/// returns for `MeteringRecordId` and `x-amzn-RequestId`.
pub(crate) fn uuid() -> String {
    let mut b = random::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = to_hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A random hex string of `2 * N` characters.
pub(crate) fn hex<const N: usize>() -> String {
    to_hex(&random::<N>())
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A uniform random number in `[0, 1)`, for probabilistic faults.
pub(crate) fn unit_interval() -> f64 {
    // 53 random bits make every f64 in [0, 1) with that spacing equally likely.
    let bits = u64::from_le_bytes(random::<8>()) >> 11;
    #[allow(
        clippy::cast_precision_loss,
        reason = "a 53-bit integer converts to f64 exactly"
    )]
    let value = bits as f64;
    value / 9_007_199_254_740_992.0 // 2^53
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(uuid(), uuid());
    }

    #[test]
    fn unit_interval_stays_in_range() {
        for _ in 0..1000 {
            let x = unit_interval();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn hex_has_the_requested_length() {
        assert_eq!(hex::<16>().len(), 32);
    }
}
