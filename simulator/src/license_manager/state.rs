//! License state that changes as calls arrive: each license's status and
//! the consumptions (checkouts) drawing on it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::views::{
    Checkout, CheckoutState, CheckoutType, EntitlementUsage, HeldEntitlement, LicenseInfo,
    LicensesView,
};
use crate::catalog::LicenseSpec;
use crate::config::{EntitlementConfig, EntitlementUnit, LicenseStatus};
use crate::timestamp;

/// How long a provisional checkout holds its entitlements: Marketplace
/// products set `ProvisionalConfiguration.MaxTimeToLiveInMinutes` to 60.
pub(super) const PROVISIONAL_TTL: Duration = Duration::from_hours(1);

/// License state that changes: statuses and consumptions.
#[derive(Debug)]
pub(crate) struct Licensing {
    pub(super) licenses: Vec<(LicenseSpec, LicenseStatus)>,
    pub(super) consumptions: Vec<Consumption>,
    /// Client token → index of the consumption it created.
    pub(super) client_tokens: HashMap<String, usize>,
}

/// One checkout and what it holds.
#[derive(Debug)]
pub(super) struct Consumption {
    pub(super) token: String,
    pub(super) license: usize,
    pub(super) checkout_type: CheckoutType,
    pub(super) access_key_id: String,
    pub(super) node_id: Option<String>,
    pub(super) client_token: String,
    pub(super) request: CheckoutRequest,
    pub(super) held: Vec<HeldEntitlement>,
    pub(super) issued_at: SystemTime,
    /// When a provisional consumption is checked in automatically; `None`
    /// for a perpetual one, which never expires.
    pub(super) expiration: Option<SystemTime>,
    pub(super) state: CheckoutState,
    pub(super) ended_at: Option<SystemTime>,
    pub(super) extensions: u32,
    pub(super) response: Value,
}

/// The parameters of a checkout that idempotency compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckoutRequest {
    pub(super) sku: String,
    pub(super) checkout_type: CheckoutType,
    pub(super) key_fingerprint: String,
    pub(super) entitlements: Vec<(String, Option<String>, EntitlementUnit)>,
    pub(super) beneficiary: Option<String>,
    pub(super) node_id: Option<String>,
}

impl Licensing {
    pub(crate) fn new(specs: &[LicenseSpec]) -> Self {
        Self {
            licenses: specs.iter().map(|s| (s.clone(), s.status)).collect(),
            consumptions: Vec::new(),
            client_tokens: HashMap::new(),
        }
    }

    /// Checks in every provisional consumption whose time ran out on the
    /// simulated clock; perpetual ones have no expiration and stay. Called
    /// before every License Manager call and every read, so a clock jump
    /// takes effect at once.
    pub(crate) fn sweep(&mut self, now: SystemTime) {
        for c in &mut self.consumptions {
            if c.state != CheckoutState::Active || c.checkout_type != CheckoutType::Provisional {
                continue;
            }
            if let Some(expiration) = c.expiration.filter(|e| *e <= now) {
                c.state = CheckoutState::Expired;
                c.ended_at = Some(expiration);
            }
        }
    }

    /// A license by ARN or config name.
    pub(crate) fn find(&self, arn_or_name: &str) -> Option<usize> {
        self.licenses
            .iter()
            .position(|(s, _)| s.arn == arn_or_name || s.name == arn_or_name)
    }

    /// A license's config name.
    pub(crate) fn name(&self, index: usize) -> &str {
        &self.licenses[index].0.name
    }

    /// Replaces a license's entitlements (an upgrade or downgrade by the
    /// seller); active consumptions keep what they hold.
    pub(crate) fn set_entitlements(&mut self, index: usize, entitlements: Vec<EntitlementConfig>) {
        if let Some((spec, _)) = self.licenses.get_mut(index) {
            spec.entitlements = entitlements;
        }
    }

    pub(crate) fn set_status(&mut self, index: usize, status: LicenseStatus) {
        if let Some((_, current)) = self.licenses.get_mut(index) {
            *current = status;
        }
    }

    /// The status a caller sees: a license whose validity ended reads as
    /// `EXPIRED`.
    pub(super) fn status(&self, index: usize, now: SystemTime) -> LicenseStatus {
        let (spec, status) = &self.licenses[index];
        if *status == LicenseStatus::Available && spec.end.is_some_and(|end| end <= now) {
            LicenseStatus::Expired
        } else {
            *status
        }
    }

    /// Why the license allows no checkout and no extension `now`, or `None`
    /// when it is usable: `AVAILABLE` (as [`Licensing::status`] reads it, so
    /// not past its validity) and its validity begun. Completes "license
    /// <arn> …".
    pub(super) fn unusable(&self, index: usize, now: SystemTime) -> Option<String> {
        let spec = &self.licenses[index].0;
        let status = self.status(index, now);
        if status != LicenseStatus::Available {
            Some(format!("is {}", status.as_str()))
        } else if now < spec.begin {
            Some(format!(
                "is not valid before {}",
                timestamp::iso8601(spec.begin)
            ))
        } else {
            None
        }
    }

    /// How much of an entitlement active consumptions of `checkout_type`
    /// hold.
    fn active_count(&self, license: usize, entitlement: &str, checkout_type: CheckoutType) -> u64 {
        self.consumptions
            .iter()
            .filter(|c| {
                c.license == license
                    && c.state == CheckoutState::Active
                    && c.checkout_type == checkout_type
            })
            .flat_map(|c| &c.held)
            .filter(|h| h.name == entitlement)
            .map(|h| h.count)
            .sum()
    }

    /// Units of an entitlement drawn for good by `PERPETUAL` consumptions,
    /// which never end.
    pub(super) fn drawn(&self, license: usize, entitlement: &str) -> u64 {
        self.active_count(license, entitlement, CheckoutType::Perpetual)
    }

    /// Units of an entitlement held by active `PROVISIONAL` consumptions.
    pub(super) fn held(&self, license: usize, entitlement: &str) -> u64 {
        self.active_count(license, entitlement, CheckoutType::Provisional)
    }

    /// Units of an entitlement taken now, drawn or held: what `MaxCount`
    /// limits.
    pub(super) fn in_use(&self, license: usize, entitlement: &str) -> u64 {
        self.drawn(license, entitlement) + self.held(license, entitlement)
    }

    /// The inspection view.
    pub(crate) fn view(&mut self, now: SystemTime) -> LicensesView {
        self.sweep(now);
        let licenses = (0..self.licenses.len())
            .map(|i| {
                let (spec, _) = &self.licenses[i];
                LicenseInfo {
                    name: spec.name.clone(),
                    arn: spec.arn.clone(),
                    sku: spec.sku.clone(),
                    status: self.status(i, now),
                    begin: timestamp::epoch_secs(spec.begin),
                    end: spec.end.map(timestamp::epoch_secs),
                    entitlements: spec
                        .entitlements
                        .iter()
                        .map(|e| {
                            let drawn = self.drawn(i, &e.name);
                            let held = self.held(i, &e.name);
                            let in_use = drawn + held;
                            EntitlementUsage {
                                name: e.name.clone(),
                                unit: e.unit,
                                value: e.value.clone(),
                                max_count: e.max_count,
                                overage: e.overage,
                                allow_check_in: e.allow_check_in,
                                drawn,
                                held,
                                in_use,
                                available: e.max_count.map(|max| {
                                    u64::try_from(max).unwrap_or(0).saturating_sub(in_use)
                                }),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let checkouts = self
            .consumptions
            .iter()
            .map(|c| Checkout {
                license_consumption_token: c.token.clone(),
                license_arn: self.licenses[c.license].0.arn.clone(),
                checkout_type: c.checkout_type,
                access_key_id: c.access_key_id.clone(),
                node_id: c.node_id.clone(),
                client_token: c.client_token.clone(),
                entitlements: c.held.clone(),
                issued_at: timestamp::epoch_secs(c.issued_at),
                expiration: c.expiration.map(timestamp::epoch_secs),
                state: c.state,
                ended_at: c.ended_at.map(timestamp::epoch_secs),
                extensions: c.extensions,
            })
            .collect();
        LicensesView {
            licenses,
            checkouts,
        }
    }

    /// The consumption `token` names if it is still active `now` (checking
    /// in what ran out first).
    pub(super) fn active(&mut self, token: &str, now: SystemTime) -> Option<usize> {
        self.sweep(now);
        self.consumptions
            .iter()
            .position(|c| c.token == token && c.state == CheckoutState::Active)
    }
}
