//! What a checkout holds and what it grants: the consumption's token and
//! allowed entitlements, and the features those unlock.

use crate::catalog::{FeatureSet, Product};

/// A PROVISIONAL License Manager checkout this process holds.
#[derive(Debug, Clone)]
pub(crate) struct Consumption {
    pub(crate) token: String,
    pub(crate) license_arn: String,
    pub(crate) allowed: Vec<String>,
}

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
