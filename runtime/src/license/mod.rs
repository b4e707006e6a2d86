//! Contract products: the License Manager consumption a process holds, and
//! the features its allowed entitlements unlock.
//!
//! A `PROVISIONAL` checkout holds its seat for 60 minutes and is checked back
//! in automatically after that; AWS recommends re-checking entitlements
//! every 15 minutes
//! (<https://docs.aws.amazon.com/marketplace/latest/userguide/container-license-manager-integration.html>).

mod lease;

use std::time::Duration;

use crate::catalog::{FeatureSet, Product};

pub(crate) use lease::{Schedule, check_in, maintain};

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

/// Default interval between license re-checks (AWS recommends 15 minutes).
pub(crate) const LICENSE_CHECK: Duration = Duration::from_mins(15);
/// Default interval between consumption extensions: half the 60-minute TTL.
pub(crate) const LICENSE_EXTEND: Duration = Duration::from_mins(30);
/// Longest allowed extension interval: a consumption must never lapse while
/// the process runs (that would free its seat for another container).
pub(crate) const LICENSE_EXTEND_MAX: Duration = Duration::from_mins(45);
