//! The validated manifest: products, their features and dimensions as
//! indices into the catalog's sorted name lists, and what each pricing model
//! verifies with.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys;

/// The manifest's file name, as messages name it.
pub(crate) const FILE_NAME: &str = "Marketplace.toml";

/// Limits of the embedded catalog (the runtime's bitset sizes).
pub const MAX_FEATURES: usize = 256;
/// The most dimensions one catalog can hold (the runtime's dimension mask).
pub(crate) const MAX_DIMENSIONS: usize = 64;
/// The most distinct drawdown entitlements one catalog can hold (the
/// runtime's drawdown counters).
pub(crate) const MAX_DRAWDOWN: usize = 64;

/// The `KeyFingerprint` of every license AWS Marketplace issues, the default
/// of `key-fingerprint`. AWS Marketplace Seller Guide, "Integrating an AWS
/// Marketplace for Containers Anywhere product with License Manager": "The
/// key fingerprint for licenses issued by AWS Marketplace is
/// `aws:294406891311:AWS/Marketplace:issuer-fingerprint`".
pub(crate) const MARKETPLACE_KEY_FINGERPRINT: &str =
    "aws:294406891311:AWS/Marketplace:issuer-fingerprint";

/// `max-unreported` when a metering product does not set it: one missed
/// hourly report and its retries never deny a buyer.
pub const DEFAULT_MAX_UNREPORTED: Duration = Duration::from_hours(2);
/// The shortest `max-unreported`: below it a brief AWS throttling storm would
/// deny buyers their metered calls.
pub const MIN_MAX_UNREPORTED: Duration = Duration::from_mins(15);
/// The longest `max-unreported`: `MeterUsage` refuses records more than 6
/// hours old (`TimestampOutOfBoundsException`), so older usage could never be
/// billed.
pub const MAX_MAX_UNREPORTED: Duration = Duration::from_hours(6);

/// Whether buyers pay for a product (`tier`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tier {
    /// A paid listing: its features and dimensions are paid paths.
    Paid,
    /// A free listing: grants its own features only.
    Free,
}

/// How AWS Marketplace bills a product (`pricing`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pricing {
    /// Per task or pod hour; verified with `RegisterUsage`.
    Hourly,
    /// Per month; verified with `RegisterUsage`.
    Monthly,
    /// Custom dimensions reported with `MeterUsage`.
    Custom,
    /// A License Manager contract; verified with `CheckoutLicense`.
    Contract,
}

impl Pricing {
    const ALL: [Pricing; 4] = [
        Pricing::Hourly,
        Pricing::Monthly,
        Pricing::Custom,
        Pricing::Contract,
    ];

    /// The pricing model the manifest spells `name`.
    pub(crate) fn from_name(name: &str) -> Option<Pricing> {
        Pricing::ALL.into_iter().find(|&p| pricing_name(p) == name)
    }
}

/// The manifest spelling of `p`.
#[must_use]
pub fn pricing_name(p: Pricing) -> &'static str {
    match p {
        Pricing::Hourly => "hourly",
        Pricing::Monthly => "monthly",
        Pricing::Custom => "custom",
        Pricing::Contract => "contract",
    }
}

/// The manifest spelling of a `max-unreported` of `seconds`: whole hours as
/// `"<n>h"`, anything else as `"<n>m"` (seconds are not a manifest unit and
/// are dropped).
#[must_use]
pub fn duration_name(seconds: u64) -> String {
    if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else {
        format!("{}m", seconds / 60)
    }
}

/// A validated product.
pub struct Product {
    /// Local alias (`name`).
    pub name: String,
    /// AWS product code (`code`).
    pub code: String,
    /// `tier`.
    pub tier: Tier,
    /// `pricing`.
    pub pricing: Pricing,
    /// Feature indices: declared features plus, for contracts, those of every
    /// entitlement.
    pub features: BTreeSet<usize>,
    /// Dimension indices (custom pricing).
    pub dimensions: BTreeSet<usize>,
    /// `max-unreported` in seconds: how long metered usage may stay
    /// unreported before `#[metered]` calls are denied. Only a product with
    /// dimensions may set it; every other product carries the default.
    pub max_unreported: u32,
    /// `RegisterUsage` key version and key (hourly and monthly).
    pub key: Option<(u32, keys::PublicKey)>,
    /// License Manager settings (contract pricing).
    pub license: Option<License>,
}

/// What `CheckoutLicense` asks for, for a contract product.
pub struct License {
    /// `ProductSKU`.
    pub sku: String,
    /// `KeyFingerprint` of the license issuer.
    pub key_fingerprint: String,
    /// The product's own `features`: granted with any successful checkout.
    pub base_features: BTreeSet<usize>,
    /// The entitlements checked out, each with the features it grants.
    pub entitlements: Vec<Entitlement>,
}

/// How a counted entitlement's units are used (`model`), as AWS Marketplace
/// configures a contract's counted dimensions (Seller Guide, "Contract
/// pricing for container products": configurable drawdown and floating
/// licenses).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnitModel {
    /// Units return to the buyer's pool: checked out `PROVISIONAL`, extended
    /// while in use, checked in when done (or by AWS after 60 minutes).
    Floating,
    /// Units are consumed for good: checked out `PERPETUAL`.
    Drawdown,
}

impl UnitModel {
    /// Every model, in manifest spelling order.
    pub const ALL: [UnitModel; 2] = [UnitModel::Floating, UnitModel::Drawdown];

    /// The manifest spelling.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            UnitModel::Floating => "floating",
            UnitModel::Drawdown => "drawdown",
        }
    }
}

/// One License Manager entitlement of a contract product.
pub struct Entitlement {
    /// Entitlement `Name`.
    pub name: String,
    /// Entitlement `Unit` (`None`, `Count`, ...).
    pub unit: String,
    /// Requested `Value`: units the process holds for its whole life (a
    /// floating entitlement only).
    pub value: Option<String>,
    /// How counted units are used; `None` for a tier (`Unit = None`).
    pub model: Option<UnitModel>,
    /// Feature indices the entitlement grants when allowed.
    pub features: BTreeSet<usize>,
}

impl Entitlement {
    /// Whether the process's own checkout at start-up (its lease) asks for
    /// this entitlement: a tier, or a floating entitlement with a `value`
    /// the process holds. The others are taken on demand by seller code.
    #[must_use]
    pub fn held_by_process(&self) -> bool {
        self.model.is_none() || (self.model == Some(UnitModel::Floating) && self.value.is_some())
    }
}

/// Everything the catalog embeds, as validation produces it: the loader adds
/// where it came from and its fingerprint to make a [`Manifest`], whose
/// fields of the same names these become.
pub(crate) struct Catalog {
    pub(crate) products: Vec<Product>,
    pub(crate) features: Vec<String>,
    pub(crate) dimensions: Vec<String>,
}

/// A validated manifest.
pub struct Manifest {
    /// Absolute path of the manifest.
    pub(crate) path: PathBuf,
    /// Every file the catalog depends on (manifest and keys), for rebuilds.
    pub files: Vec<PathBuf>,
    /// The products, in manifest order.
    pub products: Vec<Product>,
    /// All feature names, sorted; a feature's index is its position.
    pub features: Vec<String>,
    /// All dimension names, sorted; a dimension's index is its position.
    pub dimensions: Vec<String>,
    /// Hash of everything the catalog embeds; call sites compiled against
    /// another manifest are detected at start-up by it.
    pub fingerprint: u64,
}

impl Manifest {
    /// The index of feature `name`.
    #[must_use]
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features
            .binary_search_by(|f| f.as_str().cmp(name))
            .ok()
    }

    /// The index of dimension `name`.
    #[must_use]
    pub fn dimension_index(&self, name: &str) -> Option<usize> {
        self.dimensions
            .binary_search_by(|d| d.as_str().cmp(name))
            .ok()
    }

    /// The contract entitlement `name` and the product declaring it (the
    /// first, when several do).
    #[must_use]
    pub fn entitlement(&self, name: &str) -> Option<(&Product, &Entitlement)> {
        self.products.iter().find_map(|p| {
            p.license
                .as_ref()
                .and_then(|l| l.entitlements.iter().find(|e| e.name == name))
                .map(|e| (p, e))
        })
    }

    /// The names of every contract entitlement, for suggestions.
    #[must_use]
    pub fn entitlement_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .products
            .iter()
            .filter_map(|p| p.license.as_ref())
            .flat_map(|l| l.entitlements.iter().map(|e| e.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether feature `index` is a paid path: no free product grants it,
    /// so only a verified paid product unlocks it.
    #[must_use]
    pub fn is_paid_feature(&self, index: usize) -> bool {
        !self
            .products
            .iter()
            .any(|p| p.tier == Tier::Free && p.features.contains(&index))
    }

    /// The path for messages and `include_bytes!`.
    #[must_use]
    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }
}
