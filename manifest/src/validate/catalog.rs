//! The checks across products, and the catalog they build: every feature and
//! dimension gets one index, its position in the sorted list of all names.

use std::collections::BTreeSet;

use super::pending::Pending;
use crate::diagnostics::Diagnostics;
use crate::model::{
    Catalog, Entitlement, License, MAX_DIMENSIONS, MAX_DRAWDOWN, MAX_FEATURES, Product, UnitModel,
};

/// The catalog of `pending`, if it fits the runtime's limits.
pub(super) fn catalog(diagnostics: &mut Diagnostics, pending: Vec<Pending>) -> Option<Catalog> {
    let mut features = BTreeSet::new();
    let mut dimensions = BTreeSet::new();
    for p in &pending {
        features.extend(p.features.iter().cloned());
        if let Some(license) = &p.license {
            for e in &license.entitlements {
                features.extend(e.features.iter().cloned());
            }
        }
        dimensions.extend(p.dimensions.iter().cloned());
    }
    if features.len() > MAX_FEATURES {
        diagnostics.error(
            0,
            None,
            format_args!(
                "{} distinct features are declared; a catalog holds at most {MAX_FEATURES}",
                features.len()
            ),
        );
    }
    if dimensions.len() > MAX_DIMENSIONS {
        diagnostics.error(
            0,
            None,
            format_args!(
                "{} distinct dimensions are declared; a catalog holds at most {MAX_DIMENSIONS}",
                dimensions.len()
            ),
        );
    }
    // One entitlement name, one model: `checkout!` and `draw!` are checked
    // against the name, whichever product runs.
    let mut models = std::collections::BTreeMap::new();
    for p in &pending {
        for e in p.license.iter().flat_map(|l| &l.entitlements) {
            match models.insert(e.name.clone(), (e.model, p.name.clone())) {
                Some((other, first)) if other != e.model => diagnostics.error(
                    0,
                    None,
                    format_args!(
                        "entitlement `{}` is {} in product `{first}` but {} in product `{}`; \
                         one name must have one model in every product",
                        e.name,
                        model_name(other),
                        model_name(e.model),
                        p.name
                    ),
                ),
                _ => {}
            }
        }
    }
    let drawdown = models
        .values()
        .filter(|(m, _)| *m == Some(UnitModel::Drawdown))
        .count();
    if drawdown > MAX_DRAWDOWN {
        diagnostics.error(
            0,
            None,
            format_args!(
                "{drawdown} distinct drawdown entitlements are declared; a catalog holds at most \
                 {MAX_DRAWDOWN}"
            ),
        );
    }
    if !diagnostics.is_empty() {
        return None;
    }
    let features: Vec<String> = features.into_iter().collect();
    let dimensions: Vec<String> = dimensions.into_iter().collect();
    let products = pending
        .into_iter()
        .map(|p| product(p, &features, &dimensions))
        .collect();
    Some(Catalog {
        products,
        features,
        dimensions,
    })
}

/// How messages name an entitlement's model.
fn model_name(model: Option<UnitModel>) -> String {
    match model {
        Some(m) => format!("`{}`", m.name()),
        None => "a tier".to_owned(),
    }
}

/// `p` with its names replaced by their indices in `features` and
/// `dimensions`, which hold every name `p` uses.
fn product(p: Pending, features: &[String], dimensions: &[String]) -> Product {
    let fi = |name: &String| features.binary_search(name).unwrap_or_default();
    let di = |name: &String| dimensions.binary_search(name).unwrap_or_default();
    let license = p.license.map(|l| License {
        sku: l.sku,
        key_fingerprint: l.key_fingerprint,
        base_features: p.features.iter().map(fi).collect(),
        entitlements: l
            .entitlements
            .into_iter()
            .map(|e| Entitlement {
                name: e.name,
                unit: e.unit,
                value: e.value,
                model: e.model,
                features: e.features.iter().map(fi).collect(),
            })
            .collect(),
    });
    let mut all: BTreeSet<usize> = p.features.iter().map(fi).collect();
    if let Some(l) = &license {
        for e in &l.entitlements {
            all.extend(e.features.iter().copied());
        }
    }
    Product {
        name: p.name,
        code: p.code,
        tier: p.tier,
        pricing: p.pricing,
        features: all,
        dimensions: p.dimensions.iter().map(di).collect(),
        max_unreported: p.max_unreported,
        key: p.key,
        license,
    }
}
