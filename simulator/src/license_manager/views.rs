//! Checkouts and licenses as the inspection API (`GET /_marketgate/licenses`)
//! and [`crate::Simulator::licenses`] show them.

use serde::{Deserialize, Serialize};

use crate::config::{EntitlementUnit, LicenseStatus};

/// `CheckoutType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckoutType {
    /// Held for 60 minutes unless extended or checked in.
    Provisional,
    /// Consumed for good (drawdown).
    Perpetual,
}

impl CheckoutType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Provisional => "PROVISIONAL",
            Self::Perpetual => "PERPETUAL",
        }
    }
}

/// Where a checkout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckoutState {
    /// Holds its entitlements.
    Active,
    /// Returned with `CheckInLicense`.
    CheckedIn,
    /// Provisional and not extended in time: checked in automatically.
    Expired,
}

/// A checkout as `GET /_marketgate/licenses` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkout {
    /// The `LicenseConsumptionToken`.
    pub license_consumption_token: String,
    /// The license it draws on.
    pub license_arn: String,
    /// Provisional or perpetual.
    pub checkout_type: CheckoutType,
    /// The task (access key id) that checked out.
    pub access_key_id: String,
    /// The request's `NodeId`.
    pub node_id: Option<String>,
    /// The request's `ClientToken`.
    pub client_token: String,
    /// What was allowed and is held.
    pub entitlements: Vec<HeldEntitlement>,
    /// When it was issued, simulated clock, epoch seconds.
    pub issued_at: i64,
    /// When it expires, epoch seconds: `None` (`null`) for a perpetual
    /// checkout, which never expires.
    pub expiration: Option<i64>,
    /// Where it stands.
    pub state: CheckoutState,
    /// When it was checked in or expired, epoch seconds.
    pub ended_at: Option<i64>,
    /// How often it was extended.
    pub extensions: u32,
}

/// One entitlement a checkout holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldEntitlement {
    /// The entitlement name.
    pub name: String,
    /// Its unit.
    pub unit: EntitlementUnit,
    /// The value returned in `EntitlementsAllowed`.
    pub value: Option<String>,
    /// How much of `MaxCount` it holds (0 for `Unit = None`).
    pub count: u64,
}

/// Licenses and checkouts, as `GET /_marketgate/licenses` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicensesView {
    /// Every license with its consumption.
    pub licenses: Vec<LicenseInfo>,
    /// Every checkout ever made, active or not.
    pub checkouts: Vec<Checkout>,
}

/// A license and how much of it is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseInfo {
    /// The config name.
    pub name: String,
    /// The ARN.
    pub arn: String,
    /// The `ProductSKU`.
    pub sku: String,
    /// The status now (`EXPIRED` once its validity has ended).
    pub status: LicenseStatus,
    /// Validity start, epoch seconds.
    pub begin: i64,
    /// Validity end, epoch seconds.
    pub end: Option<i64>,
    /// Entitlements with their use.
    pub entitlements: Vec<EntitlementUsage>,
}

/// An entitlement and how much of it active checkouts hold, split by the
/// two configurable license models: units drawn for good by `PERPETUAL`
/// checkouts (drawdown) and units held for now by `PROVISIONAL` ones
/// (floating). For a drawdown entitlement `available` is the balance left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementUsage {
    /// The name.
    pub name: String,
    /// The unit.
    pub unit: EntitlementUnit,
    /// The value (`Unit = None`).
    pub value: Option<String>,
    /// The maximum count (other units).
    pub max_count: Option<i64>,
    /// Whether overage is allowed.
    pub overage: bool,
    /// Whether check-in is allowed.
    pub allow_check_in: bool,
    /// Drawn for good by `PERPETUAL` checkouts (drawdown): never returned,
    /// so it only grows. 0 for `Unit = None`.
    pub drawn: u64,
    /// Held by active `PROVISIONAL` checkouts (the floating pool in use):
    /// returned by `CheckInLicense` or after 60 minutes without an
    /// extension. 0 for `Unit = None`.
    pub held: u64,
    /// Held by active checkouts of either type: `drawn + held`.
    pub in_use: u64,
    /// Still free (counted units): `max_count - in_use`, the balance left
    /// to draw or hold; may be 0 when overage pushed use past the maximum.
    /// `None` without `max_count` (`Unit = None`).
    pub available: Option<u64>,
}
