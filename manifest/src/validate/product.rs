//! The checks of one `[[product]]`: its name, code, tier and pricing, its
//! features, and the keys its pricing model needs.

use toml::Spanned;

use super::names::{self, is_valid_code, is_valid_name};
use super::pending::Pending;
use super::registration::{self, ReadKey};
use super::{contract, dimensions};
use crate::diagnostics::{Diagnostics, ProductDiagnostics};
use crate::model::{Pricing, Tier, pricing_name};
use crate::raw::RawProduct;

/// The `ordinal`th product, whose table starts at byte `start`, if it has no
/// problem; each problem is reported.
pub(super) fn product(
    diagnostics: &mut Diagnostics,
    ordinal: usize,
    start: usize,
    raw: RawProduct,
    read_key: &mut ReadKey,
) -> Option<Pending> {
    let Some(name) = raw.name else {
        diagnostics.error(
            start,
            None,
            format_args!(
                "product #{} has no `name`; add `name = \"...\"` (a local alias used in logs)",
                ordinal + 1
            ),
        );
        return None;
    };
    let (name_at, name) = (name.span().start, name.into_inner());
    let mut p = diagnostics.product(&name, start);
    if !is_valid_name(&name) {
        p.error(
            name_at,
            "the name must be 1 to 64 ASCII letters, digits, `-` or `_`",
        );
    }
    let code = code(&mut p, raw.code);
    let tier = tier(&mut p, raw.tier);
    let pricing = pricing(&mut p, raw.pricing);
    let features = names::features(&mut p, raw.features.unwrap_or_default());
    let (Some(tier), Some(pricing)) = (tier, pricing) else {
        return None;
    };
    if tier == Tier::Free && !registration::registers(pricing) {
        p.at_table(format_args!(
            "a free product cannot use `{}` pricing: metered dimensions and contracts are always \
             paid paths; make it `tier = \"paid\"` or `pricing = \"hourly\"`",
            pricing_name(pricing)
        ));
    }
    let key = registration::key(
        &mut p,
        tier,
        pricing,
        raw.public_key,
        raw.public_key_version,
        read_key,
    );
    let dimensions = dimensions::of(&mut p, pricing, raw.dimensions);
    let max_unreported = dimensions::max_unreported(&mut p, pricing, raw.max_unreported);
    let license = contract::license(
        &mut p,
        pricing,
        raw.sku,
        raw.key_fingerprint,
        raw.entitlements,
    );
    if p.found_problems() {
        return None;
    }
    Some(Pending {
        name,
        code,
        tier,
        pricing,
        features,
        dimensions,
        max_unreported,
        key,
        license,
    })
}

fn code(p: &mut ProductDiagnostics, code: Option<Spanned<String>>) -> String {
    let Some(code) = code else {
        p.at_table("it has no `code`; add the product code AWS Marketplace assigned to it");
        return String::new();
    };
    if !is_valid_code(code.get_ref()) {
        p.error(
            code.span().start,
            format_args!(
                "code `{}` is not an AWS product code: it must be 1 to 255 characters of \
                 `[-a-zA-Z0-9/=:_.@]`; copy it from the AWS Marketplace Management Portal",
                code.get_ref()
            ),
        );
    }
    code.into_inner()
}

/// The product's tier, never defaulted: it decides which features are paid
/// paths.
fn tier(p: &mut ProductDiagnostics, tier: Option<Spanned<String>>) -> Option<Tier> {
    let Some(tier) = tier else {
        p.at_table(
            "it has no `tier`; write `tier = \"paid\"` or `tier = \"free\"` (never defaulted: a \
             free product unlocks only free features)",
        );
        return None;
    };
    match tier.get_ref().as_str() {
        "paid" => Some(Tier::Paid),
        "free" => Some(Tier::Free),
        other => {
            p.error(
                tier.span().start,
                format_args!("tier `{other}` is not `paid` or `free`"),
            );
            None
        }
    }
}

fn pricing(p: &mut ProductDiagnostics, pricing: Option<Spanned<String>>) -> Option<Pricing> {
    let Some(pricing) = pricing else {
        p.at_table(
            "it has no `pricing`; write `pricing = \"hourly\"`, `\"monthly\"`, `\"custom\"` or \
             `\"contract\"`",
        );
        return None;
    };
    let known = Pricing::from_name(pricing.get_ref());
    if known.is_none() {
        p.error(
            pricing.span().start,
            format_args!(
                "pricing `{}` is not one of `hourly`, `monthly`, `custom`, `contract`",
                pricing.get_ref()
            ),
        );
    }
    known
}
