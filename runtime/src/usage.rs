//! Usage attributed to tags (`UsageAllocations`): the slow path of
//! `#[metered(dim, tags = ...)]` and the explicit API.
//!
//! Tagged usage costs a lock and an allocation per call, unlike the
//! lock-free untagged path. At the end of each hour it is aggregated per tag
//! set and sent as the record's `UsageAllocations` (at most 5 tags each,
//! 2500 tag sets per record; untagged usage in the same hour is allocated to
//! `marketgate:untagged = true`).

use crate::denied::{DenialReason, Denied, Subject};
use crate::entitlement;

/// A `(key, value)` tag.
pub trait TagPair {
    /// The pair as owned strings.
    fn pair(&self) -> (String, String);
}

impl<K: AsRef<str>, V: AsRef<str>> TagPair for (K, V) {
    fn pair(&self) -> (String, String) {
        (self.0.as_ref().to_owned(), self.1.as_ref().to_owned())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> TagPair for &(K, V) {
    fn pair(&self) -> (String, String) {
        (self.0.as_ref().to_owned(), self.1.as_ref().to_owned())
    }
}

/// Collects a `tags = <expr>` expression.
pub fn tags<I>(tags: I) -> Vec<(String, String)>
where
    I: IntoIterator,
    I::Item: TagPair,
{
    tags.into_iter().map(|t| t.pair()).collect()
}

/// Records `quantity` units of `dimension`, attributed to `tags`, by name
/// (for dimensions known only at run time; `#[metered(dim, tags = ...)]`
/// checks the name at compile time).
///
/// ```
/// let result = marketgate::record_tagged_usage("api_calls", 3, &[("team", "search")]);
/// // Before start-up verification every dimension is denied.
/// assert!(result.is_err());
/// ```
///
/// # Errors
/// [`Denied`] when the active product does not meter `dimension` (or it is
/// not a dimension of the catalog): nothing is recorded.
pub fn record_tagged_usage<I>(dimension: &str, quantity: u64, tags: I) -> Result<(), Denied>
where
    I: IntoIterator,
    I::Item: TagPair,
{
    let found = entitlement::catalog()
        .and_then(|c| c.dimension_index(dimension).map(|i| (i, c.dimensions()[i])));
    let Some((index, name)) = found else {
        let reason = match entitlement::active_product() {
            Some(p) => DenialReason::NotInProduct { product: p.name() },
            None => DenialReason::NotVerified,
        };
        return Err(Denied::new(
            Subject::Dimension("(unknown dimension)"),
            reason,
        ));
    };
    if !entitlement::dimension_enabled(index) {
        let reason = match entitlement::active_product() {
            Some(p) => DenialReason::NotInProduct { product: p.name() },
            None => DenialReason::NotVerified,
        };
        return Err(Denied::new(Subject::Dimension(name), reason));
    }
    crate::metering::record_tagged(index, quantity, self::tags(tags));
    Ok(())
}
