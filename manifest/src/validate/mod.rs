//! The rules of `Marketplace.toml`: from its TOML shapes to a `Catalog`, or
//! one message per problem found.
//!
//! Each product is checked on its own (`product`, with the syntax of names
//! in `names`), including the keys of its pricing model (`registration` for
//! hourly and monthly, `dimensions` for custom, with its `max-unreported`,
//! `contract` for contract).
//! Then the products are checked against each other, and their features and
//! dimensions get their indices (`catalog`).

mod catalog;
mod contract;
mod dimensions;
mod names;
mod pending;
mod product;
mod registration;

use std::collections::BTreeMap;

use crate::diagnostics::Diagnostics;
use crate::model::{Catalog, FILE_NAME};
use crate::raw::RawManifest;

use registration::ReadKey;

/// The catalog `raw` describes, if it breaks no rule; each problem is
/// reported to `diagnostics`. `read_key` reads the `public-key` files.
pub(crate) fn manifest(
    raw: RawManifest,
    diagnostics: &mut Diagnostics,
    read_key: &mut ReadKey,
) -> Option<Catalog> {
    if raw.product.is_empty() {
        diagnostics.error(
            0,
            None,
            format_args!(
                "{FILE_NAME} declares no products; add at least one `[[product]]` with name, \
                 code, tier and pricing"
            ),
        );
        return None;
    }
    let mut pending = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut codes: BTreeMap<String, String> = BTreeMap::new();
    for (i, raw) in raw.product.into_iter().enumerate() {
        let start = raw.span().start;
        let Some(p) = product::product(diagnostics, i, start, raw.into_inner(), read_key) else {
            continue;
        };
        if let Some(first) = names.insert(p.name.clone(), i) {
            diagnostics.error(
                start,
                Some(&p.name),
                format_args!(
                    "the name is already used by product #{}; names must be unique",
                    first + 1
                ),
            );
        }
        if let Some(other) = codes.insert(p.code.clone(), p.name.clone()) {
            diagnostics.error(
                start,
                Some(&p.name),
                format_args!(
                    "code `{}` is also the code of product `{other}`; each product code must \
                     appear once (copy the right code from the AWS Marketplace Management \
                     Portal)",
                    p.code
                ),
            );
        }
        pending.push(p);
    }
    if !diagnostics.is_empty() {
        return None;
    }
    catalog::catalog(diagnostics, pending)
}
