//! The keys of contract products, which are verified with License
//! Manager's `CheckoutLicense`: `sku`, `key-fingerprint` and the
//! `entitlements` that map license entitlements to features.

use toml::Spanned;

use super::names::{FEATURE_RULE, is_valid_feature};
use super::pending::{PendingEntitlement, PendingLicense};
use crate::diagnostics::ProductDiagnostics;
use crate::model::{MARKETPLACE_KEY_FINGERPRINT, Pricing};
use crate::raw::{RawEntitlement, RawEntitlements};

/// The valid values of an entitlement's `Unit` (AWS License Manager API
/// reference, `EntitlementData`).
const UNITS: &[&str] = &[
    "Count",
    "None",
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
];

/// What `CheckoutLicense` asks for, which a contract product must say and no
/// other may.
pub(super) fn license(
    p: &mut ProductDiagnostics,
    pricing: Pricing,
    sku: Option<Spanned<String>>,
    fingerprint: Option<Spanned<String>>,
    entitlements: Option<RawEntitlements>,
) -> Option<PendingLicense> {
    if pricing != Pricing::Contract {
        for (key, at) in [
            ("sku", sku.as_ref().map(|s| s.span().start)),
            (
                "key-fingerprint",
                fingerprint.as_ref().map(|s| s.span().start),
            ),
            (
                "entitlements",
                entitlements.as_ref().map(|s| s.span().start),
            ),
        ] {
            if let Some(at) = at {
                p.error(
                    at,
                    format_args!("`{key}` is only for `pricing = \"contract\"`; remove it"),
                );
            }
        }
        return None;
    }
    let sku = match sku {
        Some(s) if !s.get_ref().trim().is_empty() && !s.get_ref().contains(char::is_whitespace) => {
            s.into_inner()
        }
        Some(s) => {
            p.error(
                s.span().start,
                "`sku` must be the product's AWS Marketplace product id, without blanks",
            );
            return None;
        }
        None => {
            p.at_table(
                "a contract product needs `sku = \"...\"`: its AWS Marketplace product id \
                 (CheckoutLicense's ProductSKU)",
            );
            return None;
        }
    };
    let key_fingerprint = match fingerprint {
        Some(f) if f.get_ref().is_empty() || f.get_ref().contains(char::is_whitespace) => {
            p.error(
                f.span().start,
                format_args!(
                    "`key-fingerprint` must not be empty or contain blanks; omit it for \
                     Marketplace-issued licenses (`{MARKETPLACE_KEY_FINGERPRINT}`)"
                ),
            );
            return None;
        }
        Some(f) => f.into_inner(),
        None => MARKETPLACE_KEY_FINGERPRINT.to_owned(),
    };
    let Some(entitlements) = entitlements.filter(|e| !e.get_ref().is_empty()) else {
        p.at_table(
            "a contract product needs `entitlements = { <EntitlementName> = [\"feature\", ...] }`: \
             which license entitlements unlock which features",
        );
        return None;
    };
    let entitlements = entitlements
        .into_inner()
        .into_iter()
        .filter_map(|(name, ent)| entitlement(p, name, ent.into_inner()))
        .collect();
    Some(PendingLicense {
        sku,
        key_fingerprint,
        entitlements,
    })
}

/// One entitlement: its name, the `Unit` and `Value` to check out, and the
/// features it grants.
fn entitlement(
    p: &mut ProductDiagnostics,
    name: Spanned<String>,
    ent: RawEntitlement,
) -> Option<PendingEntitlement> {
    let (name_at, name) = (name.span().start, name.into_inner());
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        p.error(
            name_at,
            format_args!(
                "entitlement name `{}` must be 1 to 255 characters without control characters",
                name.escape_debug()
            ),
        );
        return None;
    }
    let (unit, value, features) = match ent {
        RawEntitlement::Features(features) => ("None".to_owned(), None, features),
        RawEntitlement::Table(t) => {
            let unit_at = t.unit.span().start;
            let unit = t.unit.into_inner();
            if !UNITS.contains(&unit.as_str()) {
                p.error(
                    unit_at,
                    format_args!(
                        "entitlement `{name}` has unit `{unit}`, which License Manager does not \
                         know; use one of {}",
                        UNITS.join(", ")
                    ),
                );
                return None;
            }
            let value = t.value.map(|v| v.into_inner().to_string());
            if unit != "None" && value.is_none() {
                p.error(
                    unit_at,
                    format_args!(
                        "entitlement `{name}` counts `{unit}` and needs `value = <n>`: how many \
                         to check out (e.g. 1 seat)"
                    ),
                );
                return None;
            }
            (unit, value, t.features)
        }
    };
    let mut names = Vec::new();
    for feature in features {
        let (at, feature) = (feature.span().start, feature.into_inner());
        if is_valid_feature(&feature) {
            names.push(feature);
        } else {
            p.error(
                at,
                format_args!("feature `{feature}` of entitlement `{name}` must be {FEATURE_RULE}"),
            );
        }
    }
    Some(PendingEntitlement {
        name,
        unit,
        value,
        features: names,
    })
}
