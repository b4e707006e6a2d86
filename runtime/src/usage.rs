//! Usage attributed to tags (`UsageAllocations`): the slow path of
//! `#[metered(dim, tags = ...)]` and the explicit API.
//!
//! Tagged usage costs a lock and an allocation per call, unlike the
//! lock-free untagged path. At the end of each hour it is aggregated per tag
//! set and sent as the record's `UsageAllocations` (at most 5 tags each,
//! 2500 tag sets per record; untagged usage in the same hour is allocated to
//! `marketgate:untagged = true`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::denied::{DenialReason, Denied, Subject};
use crate::entitlement;
use crate::status;

/// Tag set of tagged usage: sorted `(key, value)` pairs, keys unique; empty
/// means untagged.
pub(crate) type Tags = Vec<(String, String)>;

/// At most 5 tags per allocation (the Metering model's `TagList`).
const MAX_TAGS: usize = 5;

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
    record_tagged(index, quantity, self::tags(tags));
    Ok(())
}

static TAGGED: Mutex<Option<HashMap<(usize, Tags), u64>>> = Mutex::new(None);

/// Why a tag set was not used.
fn invalid_tags(tags: &Tags) -> Option<String> {
    let valid = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.bytes().all(|b| {
                // `^[a-zA-Z0-9+ -=._:\/@]+$`: ` -=` is the range 0x20..=0x3D.
                b.is_ascii_alphanumeric() || b"+._:/@".contains(&b) || (b' '..=b'=').contains(&b)
            })
    };
    if tags.len() > MAX_TAGS {
        return Some(format!(
            "{} tags; AWS allows at most {MAX_TAGS}",
            tags.len()
        ));
    }
    tags.iter()
        .find(|(k, v)| !valid(k, 100) || !valid(v, 256))
        .map(|(k, v)| format!("tag `{k}` = `{v}` does not match AWS's tag pattern or length"))
}

/// Records tagged usage (the slow path: a lock and an allocation). Invalid
/// tag sets are recorded untagged, never dropped, and reported.
pub fn record_tagged(index: usize, quantity: u64, mut tags: Tags) {
    if quantity == 0 {
        return;
    }
    tags.sort();
    tags.dedup_by(|a, b| a.0 == b.0);
    if let Some(why) = invalid_tags(&tags) {
        tracing::warn!(target: "marketgate", %why, "usage recorded without its tags");
        status::degrade(
            "invalid-tags",
            format!("usage recorded without tags: {why}"),
        );
        tags.clear();
    }
    let mut map = TAGGED.lock().unwrap_or_else(PoisonError::into_inner);
    *map.get_or_insert_with(HashMap::new)
        .entry((index, tags))
        .or_default() += quantity;
}

pub(crate) fn take_tagged() -> HashMap<(usize, Tags), u64> {
    TAGGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_aws_pattern_and_limits() {
        let ok: Tags = vec![("team".into(), "search & ranking (1)".into())];
        assert_eq!(invalid_tags(&ok), None);
        let bad: Tags = vec![("team".into(), "naïve".into())];
        assert!(invalid_tags(&bad).is_some());
        let many: Tags = (0..6).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(invalid_tags(&many).is_some());
    }
}
