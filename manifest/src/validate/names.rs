//! What product names, product codes, feature names and dimension names may
//! be, and the checks of a product's `features` and `dimensions` lists.

use toml::Spanned;

use crate::diagnostics::ProductDiagnostics;

/// What a feature name may be, as messages state it.
pub(super) const FEATURE_RULE: &str = "1 to 64 ASCII letters, digits, `-`, `_`, `.` or `:`";

/// A product code as the AWS Marketplace Metering Service API reference
/// defines `ProductCode`: at most 255 characters matching
/// `^[-a-zA-Z0-9/=:_.@]*$`. An empty code is refused too.
pub(super) fn is_valid_code(code: &str) -> bool {
    is_ascii_word(code, 255, b"-/=:_.@")
}

/// A product's local alias, used in logs.
pub(super) fn is_valid_name(name: &str) -> bool {
    is_ascii_word(name, 64, b"-_")
}

/// A feature name ([`FEATURE_RULE`]).
pub(super) fn is_valid_feature(name: &str) -> bool {
    is_ascii_word(name, 64, b"-_.:")
}

/// Whether `text` is 1 to `max` ASCII letters, digits and `punctuation`.
fn is_ascii_word(text: &str, max: usize, punctuation: &[u8]) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(&b))
}

/// The Metering Service API reference allows any 1 to 255 characters as a
/// `UsageDimension` (pattern `[\s\S]+`); we also refuse control characters
/// and surrounding blanks, which are always typos.
pub(super) fn is_valid_dimension(name: &str) -> bool {
    (1..=255).contains(&name.len()) && !name.chars().any(char::is_control) && name.trim() == name
}

/// The product's `features`, each valid and listed once.
pub(super) fn features(p: &mut ProductDiagnostics, listed: Vec<Spanned<String>>) -> Vec<String> {
    let mut features = Vec::new();
    for feature in listed {
        let at = feature.span().start;
        let feature = feature.into_inner();
        if !is_valid_feature(&feature) {
            p.error(
                at,
                format_args!("feature `{feature}` must be {FEATURE_RULE}"),
            );
        } else if features.contains(&feature) {
            p.error(at, format_args!("feature `{feature}` is listed twice"));
        } else {
            features.push(feature);
        }
    }
    features
}

/// The product's `dimensions` (the API names of its pricing dimensions),
/// each valid and listed once.
pub(super) fn dimensions(p: &mut ProductDiagnostics, listed: &[Spanned<String>]) -> Vec<String> {
    let mut dimensions = Vec::new();
    for dim in listed {
        let d = dim.get_ref();
        if !is_valid_dimension(d) {
            p.error(
                dim.span().start,
                format_args!(
                    "dimension `{}` must be 1 to 255 characters without control characters or \
                     surrounding blanks (the dimension's API name in the listing)",
                    d.escape_debug()
                ),
            );
        } else if dimensions.contains(d) {
            p.error(
                dim.span().start,
                format_args!("dimension `{d}` is listed twice"),
            );
        } else {
            dimensions.push(d.clone());
        }
    }
    dimensions
}
