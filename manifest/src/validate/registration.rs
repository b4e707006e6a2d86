//! The keys of hourly and monthly products, which are verified with
//! `RegisterUsage`: `public-key` and `public-key-version`.

use toml::Spanned;

use crate::diagnostics::ProductDiagnostics;
use crate::keys::PublicKey;
use crate::model::{Pricing, Tier};

/// Reads and parses a `public-key` file, given as written in the manifest;
/// the error is a complete message.
pub(crate) type ReadKey<'k> = dyn FnMut(&str) -> Result<PublicKey, String> + 'k;

/// Whether products priced `pricing` are verified with `RegisterUsage`.
pub(super) fn registers(pricing: Pricing) -> bool {
    matches!(pricing, Pricing::Hourly | Pricing::Monthly)
}

/// The `RegisterUsage` key version and key of a product, which a paid hourly
/// or monthly product must have and no other may.
pub(super) fn key(
    p: &mut ProductDiagnostics,
    tier: Tier,
    pricing: Pricing,
    public_key: Option<Spanned<String>>,
    version: Option<Spanned<i64>>,
    read_key: &mut ReadKey,
) -> Option<(u32, PublicKey)> {
    if !registers(pricing) {
        if let Some(key) = public_key {
            p.error(
                key.span().start,
                "`public-key` is only for hourly and monthly products (RegisterUsage); remove it",
            );
        }
        if let Some(v) = version {
            p.error(
                v.span().start,
                "`public-key-version` is only for hourly and monthly products; remove it",
            );
        }
        return None;
    }
    match (public_key, version) {
        (None, None) if tier == Tier::Free => None,
        (None, _) => {
            p.at_table(
                "a paid hourly or monthly product needs `public-key = \"keys/<name>.pem\"` and \
                 `public-key-version`: the RegisterUsage key AWS Marketplace gave you with the \
                 product code. Without it the RegisterUsage signature cannot be verified and a \
                 fake AWS endpoint could unlock paid features",
            );
            None
        }
        (Some(key), None) => {
            p.error(
                key.span().start,
                "`public-key` needs `public-key-version = <n>` (the version AWS Marketplace \
                 shows with the key)",
            );
            None
        }
        (Some(key), Some(version)) => {
            // `RegisterUsage`'s `PublicKeyVersion` is a 32-bit Integer of at
            // least 1 (AWS Marketplace Metering Service API reference).
            let Some(number) = u32::try_from(*version.get_ref())
                .ok()
                .filter(|v| (1..=0x7fff_ffff).contains(v))
            else {
                p.error(
                    version.span().start,
                    "`public-key-version` must be a whole number of at least 1",
                );
                return None;
            };
            match read_key(key.get_ref()) {
                Ok(parsed) => Some((number, parsed)),
                Err(message) => {
                    p.error(key.span().start, message);
                    None
                }
            }
        }
    }
}
