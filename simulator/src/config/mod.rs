//! The simulator's configuration file: products, subscriptions, licenses and
//! the emulated task, as TOML.
//!
//! [`Config`] is plain data that mirrors the file; loading it only parses.
//! The rules a config must follow are checked, and its key files read, once,
//! when a simulator starts with it ([`crate::catalog`]), so a bad file fails
//! at start with a message that names the entry.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

mod datetime;
mod license;

pub use license::{EntitlementConfig, EntitlementUnit, LicenseConfig, LicenseStatus};

/// The example configuration, exactly as `marketgate-sim --example-config`
/// prints it. A simulator started without a config file runs with it.
pub const EXAMPLE_TOML: &str = include_str!("../../example-config.toml");

/// Key fingerprint of licenses issued by AWS Marketplace. AWS's seller guide
/// (<https://docs.aws.amazon.com/marketplace/latest/userguide/container-license-manager-integration.html>)
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
    /// Parses a TOML configuration. Relative key file paths are taken
    /// relative to the current directory. The config's rules are checked,
    /// and its key files read, when a simulator starts with it.
    ///
    /// # Errors
    /// [`ConfigError`] when the text is not valid TOML or does not match the
    /// schema.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Reads and parses a TOML configuration file. Relative key file paths
    /// are taken relative to the file's directory.
    ///
    /// # Errors
    /// As [`Config::from_toml_str`], and when the file cannot be read.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
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
    fn relative_key_files_resolve_against_the_config_directory() {
        let dir = std::env::temp_dir().join(format!("mgsim-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).expect("temp dir");
        let pem = include_str!("../../keys/license-issuer.key.pem");
        std::fs::write(dir.join("keys/p.key.pem"), pem).expect("write key");
        let file = dir.join("sim.toml");
        std::fs::write(
            &file,
            "[[product]]\nname = \"p\"\ncode = \"p\"\ntier = \"paid\"\npricing = \"hourly\"\n\
             [[product.key]]\nversion = 1\nprivate-key-file = \"keys/p.key.pem\"\n",
        )
        .expect("write config");
        let config = Config::from_file(&file).expect("loads");
        crate::catalog::Catalog::build(&config).expect("the resolved key file is read");
        assert_eq!(
            config.products[0].keys[0].private_key_file.as_deref(),
            Some(dir.join("keys/p.key.pem").as_path())
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
