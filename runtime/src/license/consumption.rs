//! What a checkout grants: the features its allowed entitlements unlock.

use crate::catalog::{FeatureSet, Product};

/// Features a checkout that allowed the named entitlements unlocks: the
/// product's own features plus those of each allowed entitlement.
pub(crate) fn features_for(product: &Product, allowed: &[String]) -> FeatureSet {
    product
        .license()
        .map(|l| {
            l.entitlements()
                .iter()
                .filter(|e| allowed.iter().any(|a| a == e.name()))
                .fold(l.base_features(), |set, e| set.union(e.features()))
        })
        .unwrap_or_default()
}
