//! A product that passed its own checks, with features and dimensions still
//! by name: indices are assigned once every product is known.

use crate::keys::PublicKey;
use crate::model::{Pricing, Tier, UnitModel};

pub(super) struct Pending {
    pub(super) name: String,
    pub(super) code: String,
    pub(super) tier: Tier,
    pub(super) pricing: Pricing,
    pub(super) features: Vec<String>,
    pub(super) dimensions: Vec<String>,
    pub(super) max_unreported: u32,
    pub(super) key: Option<(u32, PublicKey)>,
    pub(super) license: Option<PendingLicense>,
}

pub(super) struct PendingLicense {
    pub(super) sku: String,
    pub(super) key_fingerprint: String,
    pub(super) entitlements: Vec<PendingEntitlement>,
}

pub(super) struct PendingEntitlement {
    pub(super) name: String,
    pub(super) unit: String,
    pub(super) value: Option<String>,
    pub(super) model: Option<UnitModel>,
    pub(super) features: Vec<String>,
}
