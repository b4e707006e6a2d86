//! What the fuzz targets in `fuzz/` call: crate-private verifiers of
//! untrusted input, reachable only with the `fuzzing` feature. **Not public
//! API**, and never enabled in a binary you ship.

use crate::catalog::RegistrationKey;
use crate::signature;

pub use crate::signature::SignatureError;

/// What a verified `RegisterUsage` signature says (the crate's own claims
/// type, whose fields are crate-private).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationClaims {
    /// The product code AWS registered.
    pub product_code: String,
    /// The key version.
    pub public_key_version: u32,
    /// The nonce of the request.
    pub nonce: String,
    /// Issued-at, seconds since the epoch, if present.
    pub issued_at: Option<i64>,
}

/// The `RegisterUsage` signature check start-up runs: `token` verified
/// against `key` and the request's `product_code` and `nonce`.
///
/// # Errors
/// [`SignatureError`] on any defect, exactly as start-up sees it.
pub fn verify_registration(
    token: &str,
    key: &RegistrationKey,
    product_code: &str,
    nonce: &str,
) -> Result<RegistrationClaims, SignatureError> {
    signature::verify_registration(token, key, product_code, nonce).map(|c| RegistrationClaims {
        product_code: c.product_code,
        public_key_version: c.public_key_version,
        nonce: c.nonce,
        issued_at: c.issued_at,
    })
}

/// Recovers `bytes` as a metering journal file at the hour starting at
/// `now_hour` (epoch seconds, a multiple of 3600) and panics if recovery
/// breaks one of its properties: never a panic, only plausible hours, never
/// more usage than the intact frames brought in, unchanged by compaction.
pub fn recover_journal(bytes: &[u8], now_hour: i64) {
    crate::metering::fuzz_journal::check(bytes, now_hour);
}

/// Recovers `bytes` as the drawdown journal (`drawdown.journal`) a previous
/// run left and panics if recovery breaks one of its properties: never a
/// panic, only batches the runtime could have written, never a reused
/// `seq`, the same state when reopened.
pub fn recover_draw_journal(bytes: &[u8]) {
    crate::units::fuzz_journal::check(bytes);
}
