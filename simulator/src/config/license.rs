//! The buyer's License Manager licenses (`[[license]]`) and their
//! entitlements, with License Manager's `LicenseStatus` and
//! `EntitlementUnit` enums.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::datetime;

/// A License Manager license granted to the buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LicenseConfig {
    /// A local alias, used by the inspection API and in messages.
    pub name: String,
    /// The `ProductSKU`; must be the `sku` of a contract product.
    pub sku: String,
    /// The license's status.
    #[serde(default)]
    pub status: LicenseStatus,
    /// Start of validity.
    #[serde(with = "datetime")]
    pub begin: SystemTime,
    /// End of validity; none means open-ended.
    #[serde(
        default,
        with = "datetime::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<SystemTime>,
    /// The license ARN; derived from `name` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// `LicenseName`; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_name: Option<String>,
    /// `ProductName`; defaults to the contract product's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// `HomeRegion`; defaults to `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region: Option<String>,
    /// `Version`; defaults to `"1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Beneficiary`; defaults to the buyer's account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beneficiary: Option<String>,
    /// `Issuer.KeyFingerprint`; defaults to the license issuer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// The entitlements (`[[license.entitlement]]`).
    #[serde(default, rename = "entitlement")]
    pub entitlements: Vec<EntitlementConfig>,
}

/// One entitlement of a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EntitlementConfig {
    /// The entitlement name (the PLF "Contracts `DimensionX` API Name").
    pub name: String,
    /// The unit; `None` for a feature or tier, `Count` for seats.
    pub unit: EntitlementUnit,
    /// The value, for `Unit = None` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// How many may be checked out at once, for every unit but `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
    /// Whether checkouts may exceed `max-count`.
    #[serde(default)]
    pub overage: bool,
    /// Whether `CheckInLicense` may return what was checked out.
    #[serde(default)]
    pub allow_check_in: bool,
}

/// A license's status, as License Manager's `LicenseStatus` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LicenseStatus {
    /// Usable.
    #[default]
    Available,
    /// Not usable yet.
    PendingAvailable,
    /// Deactivated.
    Deactivated,
    /// Suspended, e.g. for non-payment.
    Suspended,
    /// Past its validity.
    Expired,
    /// Being deleted.
    PendingDelete,
    /// Deleted.
    Deleted,
}

impl LicenseStatus {
    /// The wire name (`AVAILABLE`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::PendingAvailable => "PENDING_AVAILABLE",
            Self::Deactivated => "DEACTIVATED",
            Self::Suspended => "SUSPENDED",
            Self::Expired => "EXPIRED",
            Self::PendingDelete => "PENDING_DELETE",
            Self::Deleted => "DELETED",
        }
    }
}

macro_rules! entitlement_units {
    ($($variant:ident => $wire:literal),* $(,)?) => {
        /// An entitlement unit, as License Manager's `EntitlementUnit` enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum EntitlementUnit {
            $(
                #[doc = concat!("`", $wire, "`")]
                #[serde(rename = $wire)]
                $variant,
            )*
        }

        impl EntitlementUnit {
            /// Every unit the model declares.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The wire name (`Count`, `Bytes/Second`, ...).
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                }
            }

            /// Parses a wire name; names are case-sensitive, as in the model.
            #[must_use]
            pub fn from_wire(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

entitlement_units! {
    Count => "Count",
    None => "None",
    Seconds => "Seconds",
    Microseconds => "Microseconds",
    Milliseconds => "Milliseconds",
    Bytes => "Bytes",
    Kilobytes => "Kilobytes",
    Megabytes => "Megabytes",
    Gigabytes => "Gigabytes",
    Terabytes => "Terabytes",
    Bits => "Bits",
    Kilobits => "Kilobits",
    Megabits => "Megabits",
    Gigabits => "Gigabits",
    Terabits => "Terabits",
    Percent => "Percent",
    BytesPerSecond => "Bytes/Second",
    KilobytesPerSecond => "Kilobytes/Second",
    MegabytesPerSecond => "Megabytes/Second",
    GigabytesPerSecond => "Gigabytes/Second",
    TerabytesPerSecond => "Terabytes/Second",
    BitsPerSecond => "Bits/Second",
    KilobitsPerSecond => "Kilobits/Second",
    MegabitsPerSecond => "Megabits/Second",
    GigabitsPerSecond => "Gigabits/Second",
    TerabitsPerSecond => "Terabits/Second",
    CountPerSecond => "Count/Second",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entitlement_units_use_the_model_spelling() {
        assert_eq!(EntitlementUnit::ALL.len(), 27);
        assert_eq!(
            EntitlementUnit::from_wire("Bytes/Second"),
            Some(EntitlementUnit::BytesPerSecond)
        );
        assert_eq!(EntitlementUnit::from_wire("count"), None);
        for unit in EntitlementUnit::ALL {
            assert_eq!(EntitlementUnit::from_wire(unit.as_str()), Some(*unit));
        }
    }
}
