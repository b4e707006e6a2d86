//! The simulator's configuration file: products, subscriptions, licenses and
//! the emulated task, as TOML.
//!
//! [`Config`] is plain data that mirrors the file. [`Config::from_toml_str`]
//! and [`Config::from_file`] also check every rule (see
//! [`crate::catalog`]) so a bad file fails when it is loaded, with a message
//! that names the entry.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::ConfigError;

/// The example configuration, exactly as `marketgate-sim --example-config`
/// prints it. A simulator started without a config file runs with it.
pub const EXAMPLE_TOML: &str = include_str!("../example-config.toml");

/// Key fingerprint of licenses issued by AWS Marketplace. AWS's seller guide
/// says it "isn't a placeholder": it is the fixed value every Marketplace
/// license carries.
pub const MARKETPLACE_KEY_FINGERPRINT: &str = "aws:294406891311:AWS/Marketplace:issuer-fingerprint";

/// A complete simulator configuration.
///
/// ```
/// let config = marketgate_simulator::Config::from_toml_str(r#"
///     [task]
///     region = "eu-west-1"
///
///     [[product]]
///     name = "usage"
///     code = "my-usage-product"
///     tier = "paid"
///     pricing = "custom"
///     dimensions = ["api_calls"]
/// "#)?;
/// assert_eq!(config.task.region, "eu-west-1");
/// # Ok::<(), marketgate_simulator::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The emulated ECS task / EKS pod.
    #[serde(default)]
    pub task: TaskConfig,
    /// The buyer's AWS account.
    #[serde(default)]
    pub buyer: BuyerConfig,
    /// The simulated clock's initial state.
    #[serde(default)]
    pub clock: ClockConfig,
    /// The key that signs License Manager checkouts.
    #[serde(default)]
    pub license_issuer: IssuerConfig,
    /// The seller's products (`[[product]]`).
    #[serde(default, rename = "product")]
    pub products: Vec<ProductConfig>,
    /// The buyer's subscriptions (`[[subscription]]`).
    #[serde(default, rename = "subscription")]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// The buyer's licenses (`[[license]]`).
    #[serde(default, rename = "license")]
    pub licenses: Vec<LicenseConfig>,
}

impl Config {
    /// Parses and checks a TOML configuration. Relative key file paths are
    /// taken relative to the current directory.
    ///
    /// # Errors
    /// [`ConfigError`] when the text is not valid TOML, does not match the
    /// schema, names a key file that cannot be read, or breaks a rule.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        Catalog::build(&config)?;
        Ok(config)
    }

    /// Reads, parses and checks a TOML configuration file. Relative key file
    /// paths are taken relative to the file's directory.
    ///
    /// # Errors
    /// As [`Config::from_toml_str`], and when the file cannot be read.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Catalog::build(&config)?;
        Ok(config)
    }

    /// The example configuration ([`EXAMPLE_TOML`]): a paid hourly product, a
    /// free hourly product, a paid custom-metered product with two
    /// dimensions, a contract product with its license, and a subscribed
    /// buyer for each.
    #[must_use]
    pub fn example() -> Self {
        // The example is compiled in and covered by tests, so it always parses;
        // should it ever not, an empty config is still a working simulator.
        Self::from_toml_str(EXAMPLE_TOML).unwrap_or_else(|error| {
            tracing::error!(%error, "the built-in example config is invalid");
            Self::default()
        })
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |path: &mut Option<PathBuf>| {
            if let Some(p) = path.as_mut().filter(|p| p.is_relative()) {
                *p = dir.join(&*p);
            }
        };
        resolve(&mut self.license_issuer.private_key_file);
        for product in &mut self.products {
            for key in &mut product.keys {
                resolve(&mut key.private_key_file);
            }
        }
    }
}

/// The emulated task: where it runs and which credentials it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TaskConfig {
    /// The Region the task runs in.
    #[serde(default = "default_region")]
    pub region: String,
    /// The platform the task runs on.
    #[serde(default)]
    pub platform: Platform,
    /// Access key ids the simulator accepts; empty accepts any.
    #[serde(default)]
    pub access_keys: Vec<String>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            region: default_region(),
            platform: Platform::default(),
            access_keys: Vec::new(),
        }
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Where the emulated task runs. AWS Marketplace metering works on ECS, EKS
/// and Fargate only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Amazon ECS on EC2.
    #[default]
    Ecs,
    /// Amazon EKS.
    Eks,
    /// ECS or EKS on Fargate.
    Fargate,
    /// Anywhere else (a laptop, plain EC2): `RegisterUsage` answers
    /// `PlatformNotSupportedException`.
    Unsupported,
}

/// The buyer's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BuyerConfig {
    /// The 12-digit AWS account id; licenses name it as their beneficiary.
    #[serde(default = "default_account")]
    pub account_id: String,
}

impl Default for BuyerConfig {
    fn default() -> Self {
        Self {
            account_id: default_account(),
        }
    }
}

fn default_account() -> String {
    "111122223333".to_owned()
}

/// The simulated clock's initial state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClockConfig {
    /// The simulated time at start; the real time when absent.
    #[serde(
        default,
        with = "datetime::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<SystemTime>,
    /// When true the clock stands still until set or advanced; otherwise it
    /// runs at real speed from wherever it was last set.
    #[serde(default)]
    pub frozen: bool,
}

/// The License Manager issuer whose key signs checkouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer name licenses show (`Issuer.Name`).
    #[serde(default = "default_issuer_name")]
    pub name: String,
    /// The default `Issuer.KeyFingerprint` of licenses.
    #[serde(default = "default_fingerprint")]
    pub key_fingerprint: String,
    /// The signing key as PKCS#8 PEM; the built-in test key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// A file holding the signing key as PKCS#8 PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            name: default_issuer_name(),
            key_fingerprint: default_fingerprint(),
            private_key: None,
            private_key_file: None,
        }
    }
}

fn default_issuer_name() -> String {
    "AWS/Marketplace".to_owned()
}

fn default_fingerprint() -> String {
    MARKETPLACE_KEY_FINGERPRINT.to_owned()
}

/// A product the seller lists on AWS Marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProductConfig {
    /// A local alias, used by subscriptions and in messages.
    pub name: String,
    /// The AWS Marketplace product code.
    pub code: String,
    /// Paid or free.
    pub tier: Tier,
    /// How the product is priced, which decides the APIs it uses.
    pub pricing: Pricing,
    /// Custom metering dimensions (custom pricing only, at most 24).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<String>,
    /// The Marketplace product id that `CheckoutLicense` sends as
    /// `ProductSKU` (contract pricing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// `RegisterUsage` signing keys by public key version (hourly and monthly
    /// pricing), `[[product.key]]`.
    #[serde(default, rename = "key", skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyConfig>,
}

/// Paid or free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The buyer pays.
    Paid,
    /// No charge.
    Free,
}

/// How a product is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pricing {
    /// Per task or pod per hour; `RegisterUsage` at start.
    Hourly,
    /// Fixed monthly; `RegisterUsage` at start.
    Monthly,
    /// Seller-defined dimensions; `MeterUsage` every hour.
    Custom,
    /// Prepaid contract; License Manager checkouts.
    Contract,
}

/// One `RegisterUsage` signing key of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeyConfig {
    /// The public key version AWS Marketplace gave the seller (≥ 1).
    pub version: i32,
    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// A file holding the private key as PKCS#8 PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// When this key version was rotated out. From then on `RegisterUsage`
    /// with this version still succeeds but also returns
    /// `PublicKeyRotationTimestamp`.
    #[serde(
        default,
        with = "datetime::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<SystemTime>,
}

/// The buyer's subscription to one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// The product's name or code.
    pub product: String,
    /// The subscription's state.
    pub status: Subscription,
}

/// The state of a buyer's subscription to a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    /// Subscribed: the APIs succeed.
    Subscribed,
    /// Was subscribed and cancelled: new tasks get
    /// `CustomerNotEntitledException`, tasks that already registered keep
    /// running.
    Unsubscribed,
    /// Never subscribed; behaves like `Unsubscribed`.
    Never,
}

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

/// TOML offset date-times (`2026-01-01T00:00:00Z`) as [`SystemTime`].
mod datetime {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use toml::value::Datetime;

    use crate::timestamp;

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let text = timestamp::iso8601(*time);
        let value: Datetime = text.parse().map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let value = Datetime::deserialize(d)?;
        from_toml(&value).map_err(serde::de::Error::custom)
    }

    fn from_toml(value: &Datetime) -> Result<SystemTime, String> {
        if value.date.is_none() || value.time.is_none() || value.offset.is_none() {
            return Err(format!(
                "{value} needs a date, a time and an offset, e.g. 2026-01-01T00:00:00Z"
            ));
        }
        timestamp::parse_iso8601(&value.to_string())
            .ok_or_else(|| format!("{value} is not a representable time"))
    }

    pub(super) mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};
        use toml::value::Datetime;

        #[allow(
            clippy::ref_option,
            reason = "serde's `with` passes the field by reference"
        )]
        pub(crate) fn serialize<S: Serializer>(
            time: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            let value = Option::<Datetime>::deserialize(d)?;
            value
                .map(|v| super::from_toml(&v).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_has_every_kind_of_product() {
        let config = Config::example();
        let find = |name: &str| {
            config
                .products
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("example lacks product {name}"))
        };
        let pro = find("pro");
        assert_eq!((pro.tier, pro.pricing), (Tier::Paid, Pricing::Hourly));
        assert_eq!(pro.keys.len(), 1);
        let free = find("community");
        assert_eq!((free.tier, free.pricing), (Tier::Free, Pricing::Hourly));
        let usage = find("usage");
        assert_eq!(usage.pricing, Pricing::Custom);
        assert_eq!(usage.dimensions.len(), 2);
        let contract = find("enterprise");
        assert_eq!(contract.pricing, Pricing::Contract);
        let license = &config.licenses[0];
        assert_eq!(Some(&license.sku), contract.sku.as_ref());
        let units: Vec<_> = license.entitlements.iter().map(|e| e.unit).collect();
        assert_eq!(units, [EntitlementUnit::None, EntitlementUnit::Count]);
        for product in &config.products {
            assert!(
                config
                    .subscriptions
                    .iter()
                    .any(|s| s.product == product.name && s.status == Subscription::Subscribed),
                "{} has no subscribed buyer",
                product.name
            );
        }
    }

    #[test]
    fn example_public_keys_match_the_key_files() {
        let config = Config::example();
        let catalog = Catalog::build(&config).expect("example is valid");
        for name in ["pro", "community"] {
            let file = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("keys/{name}.pub.pem")),
            )
            .expect("key file exists");
            let product = catalog.product_by_name(name).expect("product exists");
            let key = product.key(1).expect("version 1");
            assert_eq!(key.signing.public_key_pem().trim(), file.trim(), "{name}");
        }
    }

    #[test]
    fn config_round_trips_through_toml() {
        let config = Config::example();
        let text = toml::to_string(&config).expect("serializes");
        assert_eq!(Config::from_toml_str(&text).expect("parses"), config);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml_str("[task]\nregoin = \"us-east-1\"\n").unwrap_err();
        assert!(err.to_string().contains("regoin"), "{err}");
    }

    #[test]
    fn datetimes_need_an_offset() {
        let text = r#"
            [[product]]
            name = "c"
            code = "c"
            tier = "paid"
            pricing = "contract"
            sku = "s"
            [[license]]
            name = "l"
            sku = "s"
            begin = 2026-01-01T00:00:00
            [[license.entitlement]]
            name = "F"
            unit = "None"
        "#;
        let err = Config::from_toml_str(text).unwrap_err();
        assert!(err.to_string().contains("offset"), "{err}");
    }

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

    #[test]
    fn relative_key_files_resolve_against_the_config_directory() {
        let dir = std::env::temp_dir().join(format!("mgsim-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).expect("temp dir");
        let pem = include_str!("../keys/license-issuer.key.pem");
        std::fs::write(dir.join("keys/p.key.pem"), pem).expect("write key");
        let file = dir.join("sim.toml");
        std::fs::write(
            &file,
            "[[product]]\nname = \"p\"\ncode = \"p\"\ntier = \"paid\"\npricing = \"hourly\"\n\
             [[product.key]]\nversion = 1\nprivate-key-file = \"keys/p.key.pem\"\n",
        )
        .expect("write config");
        let config = Config::from_file(&file).expect("loads");
        assert_eq!(
            config.products[0].keys[0].private_key_file.as_deref(),
            Some(dir.join("keys/p.key.pem").as_path())
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
