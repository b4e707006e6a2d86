//! The keys of contract products, which are verified with License
//! Manager's `CheckoutLicense`: `sku`, `key-fingerprint` and the
//! `entitlements` that map license entitlements to features.

use toml::Spanned;

use super::names::{FEATURE_RULE, is_valid_feature};
use super::pending::{PendingEntitlement, PendingLicense};
use crate::diagnostics::ProductDiagnostics;
use crate::model::{MARKETPLACE_KEY_FINGERPRINT, Pricing, UnitModel};
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
    let entitlements_at = entitlements.span().start;
    let entitlements: Vec<PendingEntitlement> = entitlements
        .into_inner()
        .into_iter()
        .filter_map(|(name, ent)| entitlement(p, name, ent.into_inner()))
        .collect();
    // Start-up verification is the process's own checkout: it must ask for
    // something, or a drawdown-only product would start unverified.
    if !entitlements.is_empty()
        && !entitlements.iter().any(|e| {
            e.model.is_none() || (e.model == Some(UnitModel::Floating) && e.value.is_some())
        })
    {
        p.error(
            entitlements_at,
            "a contract product needs one entitlement the process checks out at start-up (a \
             tier such as `Subscribed = []`, or a floating entitlement with `value = <n>`): \
             that checkout is how start-up verifies the contract",
        );
        return None;
    }
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
    let (unit, value, model, features) = match ent {
        RawEntitlement::Features(features) => ("None".to_owned(), None, None, features),
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
            let model = counted_model(p, &name, &unit, unit_at, t.model).ok()?;
            let value = match (model, t.value) {
                (_, None) => None,
                (None, Some(v)) => {
                    p.error(
                        v.span().start,
                        format_args!(
                            "entitlement `{name}` has unit `None` (a tier): it has no `value`; \
                             remove it"
                        ),
                    );
                    return None;
                }
                (Some(UnitModel::Drawdown), Some(v)) => {
                    p.error(
                        v.span().start,
                        format_args!(
                            "entitlement `{name}` is `drawdown`: its units are drawn as they are \
                             used (`marketgate::draw!`), never held by the process; remove \
                             `value`"
                        ),
                    );
                    return None;
                }
                (Some(UnitModel::Floating), Some(v)) if *v.get_ref() == 0 => {
                    p.error(
                        v.span().start,
                        format_args!(
                            "entitlement `{name}` asks for `value = 0`: a checkout takes at least \
                             1 unit; remove `value` to take units only with `marketgate::checkout!`"
                        ),
                    );
                    return None;
                }
                (Some(UnitModel::Floating), Some(v)) => Some(v.into_inner().to_string()),
            };
            let on_demand = model.is_some() && value.is_none();
            if on_demand && let Some(first) = t.features.first() {
                p.error(
                    first.span().start,
                    format_args!(
                        "entitlement `{name}` is taken on demand by seller code (no `value` held \
                         by the process), so it cannot unlock features for the whole process; \
                         remove `features`, or give it `model = \"floating\"` and `value = <n>`"
                    ),
                );
                return None;
            }
            (unit, value, model, t.features)
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
        model,
        features: names,
    })
}

/// The `model` of an entitlement with `unit`: required for counted units,
/// refused for a tier. `Err` once the problem is reported.
fn counted_model(
    p: &mut ProductDiagnostics,
    name: &str,
    unit: &str,
    unit_at: usize,
    model: Option<Spanned<String>>,
) -> Result<Option<UnitModel>, ()> {
    let names = || {
        UnitModel::ALL
            .iter()
            .map(|m| format!("\"{}\"", m.name()))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match model {
        None if unit == "None" => Ok(None),
        None => {
            p.error(
                unit_at,
                format_args!(
                    "entitlement `{name}` counts `{unit}` and needs `model = {}`: `floating` \
                     units return to the buyer's pool when checked in, `drawdown` units are \
                     consumed for good",
                    names()
                ),
            );
            Err(())
        }
        Some(m) if unit == "None" => {
            p.error(
                m.span().start,
                format_args!(
                    "entitlement `{name}` has unit `None` (a tier): only counted units have a \
                     `model`; remove it"
                ),
            );
            Err(())
        }
        Some(m) => {
            let at = m.span().start;
            let text = m.into_inner();
            match UnitModel::ALL.into_iter().find(|x| x.name() == text) {
                Some(model) => Ok(Some(model)),
                None => {
                    p.error(
                        at,
                        format_args!(
                            "entitlement `{name}` has `model = \"{}\"`; use {}",
                            text.escape_debug(),
                            names()
                        ),
                    );
                    Err(())
                }
            }
        }
    }
}
