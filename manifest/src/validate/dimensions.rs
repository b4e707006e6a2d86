//! The key of custom-pricing products, which report usage with
//! `MeterUsage`: `dimensions`.

use toml::Spanned;

use super::names;
use crate::diagnostics::ProductDiagnostics;
use crate::model::{Pricing, pricing_name};

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
