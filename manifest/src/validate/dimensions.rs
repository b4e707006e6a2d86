//! The keys of custom-pricing products, which report usage with
//! `MeterUsage`: `dimensions`, and `max-unreported`, how long that usage may
//! stay unreported.

use toml::Spanned;

use super::names;
use crate::diagnostics::ProductDiagnostics;
use crate::model::{
    DEFAULT_MAX_UNREPORTED, MAX_MAX_UNREPORTED, MIN_MAX_UNREPORTED, Pricing, duration_name,
    pricing_name,
};

/// AWS Marketplace Seller Guide, "Configuring custom metering for container
/// products": custom metering covers "up to 24 different pricing dimensions
/// per product".
const MAX_DIMENSIONS_PER_PRODUCT: usize = 24;

/// The product's dimension names, which a custom-pricing product must have
/// and no other may.
pub(super) fn of(
    p: &mut ProductDiagnostics,
    pricing: Pricing,
    listed: Option<Spanned<Vec<Spanned<String>>>>,
) -> Vec<String> {
    match (listed, pricing) {
        (Some(dims), Pricing::Custom) => {
            let at = dims.span().start;
            let dims = dims.into_inner();
            if dims.is_empty() {
                p.error(at, "a custom-pricing product needs at least one dimension");
            }
            if dims.len() > MAX_DIMENSIONS_PER_PRODUCT {
                p.error(
                    at,
                    format_args!(
                        "it has {} dimensions; AWS Marketplace allows at most \
                         {MAX_DIMENSIONS_PER_PRODUCT} per product",
                        dims.len()
                    ),
                );
            }
            names::dimensions(p, &dims)
        }
        (None, Pricing::Custom) => {
            p.at_table(
                "a custom-pricing product needs `dimensions = [\"...\"]`: the API names of its \
                 pricing dimensions",
            );
            Vec::new()
        }
        (Some(dims), _) => {
            p.error(
                dims.span().start,
                format_args!(
                    "`dimensions` are only for `pricing = \"custom\"`, not `{}`; remove them or \
                     change the pricing",
                    pricing_name(pricing)
                ),
            );
            Vec::new()
        }
        (None, _) => Vec::new(),
    }
}

/// The product's `max-unreported` in seconds: what it sets, which only a
/// product with dimensions may, or the default.
pub(super) fn max_unreported(
    p: &mut ProductDiagnostics,
    pricing: Pricing,
    value: Option<Spanned<toml::Value>>,
) -> u32 {
    let default = whole_seconds(DEFAULT_MAX_UNREPORTED.as_secs());
    let Some(value) = value else {
        return default;
    };
    let at = value.span().start;
    if pricing != Pricing::Custom {
        p.error(
            at,
            format_args!(
                "`max-unreported` applies only to products with `dimensions` \
                 (`pricing = \"custom\"`); `pricing = \"{}\"` meters no usage, so remove it",
                pricing_name(pricing)
            ),
        );
        return default;
    }
    let value = value.into_inner();
    let shown = match &value {
        toml::Value::String(text) => format!("\"{}\"", text.escape_debug()),
        other => other.to_string(),
    };
    let Some(seconds) = value.as_str().and_then(duration_seconds) else {
        p.error(
            at,
            format_args!(
                "`max-unreported` must be a whole number of minutes or hours such as \"90m\" or \
                 \"2h\", got {shown}"
            ),
        );
        return default;
    };
    let (min, max) = (MIN_MAX_UNREPORTED.as_secs(), MAX_MAX_UNREPORTED.as_secs());
    let why = if seconds < min {
        "a shorter bound would deny buyers during a brief AWS throttling storm"
    } else if seconds > max {
        // MeterUsage refuses records more than 6 hours old
        // (TimestampOutOfBoundsException): older usage is never billed.
        "AWS MeterUsage refuses usage more than 6 hours old"
    } else {
        return whole_seconds(seconds);
    };
    p.error(
        at,
        format_args!(
            "`max-unreported` must be between {} and {}, got {shown}; {why}",
            duration_name(min),
            duration_name(max)
        ),
    );
    default
}

/// The seconds of `text` if it is `<digits>m` or `<digits>h` (saturating, so
/// that an absurdly long number is out of range rather than malformed).
fn duration_seconds(text: &str) -> Option<u64> {
    let (number, unit) = if let Some(n) = text.strip_suffix('m') {
        (n, 60)
    } else {
        (text.strip_suffix('h')?, 3600)
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        number
            .parse::<u64>()
            .unwrap_or(u64::MAX)
            .saturating_mul(unit),
    )
}

/// `seconds`, which is at most [`MAX_MAX_UNREPORTED`], as the model's `u32`.
fn whole_seconds(seconds: u64) -> u32 {
    u32::try_from(seconds).unwrap_or(u32::MAX)
}
