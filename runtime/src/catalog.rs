//! The trusted product catalog, compiled from the seller's `Marketplace.toml`.
//!
//! The macros validate the manifest at compile time and embed it as static
//! data (`#[marketgate::main]` or [`catalog!`](crate::catalog)). Nothing here
//! reads a file at run time: a buyer who controls the container cannot add,
//! swap or edit a product.

use std::fmt;
use std::time::Duration;

/// The most features one catalog can declare (across all products).
pub const MAX_FEATURES: usize = 256;
/// The most distinct metering dimensions one catalog can declare.
pub const MAX_DIMENSIONS: usize = 64;

pub(crate) const FEATURE_WORDS: usize = MAX_FEATURES / 64;

/// Whether a product is sold or given away. Never defaulted in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// A product the buyer pays for; its features are paid paths.
    Paid,
    /// A free product; it unlocks only features that some free product grants.
    Free,
}

/// How AWS Marketplace prices a product, which decides how start-up verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pricing {
    /// Per task or pod per hour: `RegisterUsage` at start, AWS meters the rest.
    Hourly,
    /// Fixed monthly price per task or pod: verified like hourly.
    Monthly,
    /// Seller-defined dimensions reported hourly with `MeterUsage`.
    Custom,
    /// A prepaid contract: License Manager `CheckoutLicense`.
    Contract,
}

impl Tier {
    /// The manifest spelling (`paid`, `free`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Paid => "paid",
            Tier::Free => "free",
        }
    }
}

impl Pricing {
    /// The manifest spelling (`hourly`, `monthly`, `custom`, `contract`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Pricing::Hourly => "hourly",
            Pricing::Monthly => "monthly",
            Pricing::Custom => "custom",
            Pricing::Contract => "contract",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Pricing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of feature indices (a fixed-size bitset).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FeatureSet(pub(crate) [u64; FEATURE_WORDS]);

impl FeatureSet {
    /// The empty set.
    pub const EMPTY: FeatureSet = FeatureSet([0; FEATURE_WORDS]);

    #[doc(hidden)]
    #[must_use]
    pub const fn __from_words(words: [u64; FEATURE_WORDS]) -> Self {
        FeatureSet(words)
    }

    /// Whether the feature with this index is in the set.
    #[must_use]
    pub const fn contains(&self, index: usize) -> bool {
        index < MAX_FEATURES && self.0[index / 64] & (1 << (index % 64)) != 0
    }

    /// The union of two sets.
    #[must_use]
    pub const fn union(self, other: FeatureSet) -> FeatureSet {
        let mut words = self.0;
        let mut i = 0;
        while i < FEATURE_WORDS {
            words[i] |= other.0[i];
            i += 1;
        }
        FeatureSet(words)
    }

    /// The features in both sets.
    #[must_use]
    pub const fn intersection(self, other: FeatureSet) -> FeatureSet {
        let mut words = self.0;
        let mut i = 0;
        while i < FEATURE_WORDS {
            words[i] &= other.0[i];
            i += 1;
        }
        FeatureSet(words)
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The indices in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_FEATURES).filter(move |i| self.contains(*i))
    }
}

impl fmt::Debug for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The `RegisterUsage` public key AWS Marketplace issued for a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationKey {
    version: u32,
    spki_der: &'static [u8],
    rsa_der: &'static [u8],
}

impl RegistrationKey {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(version: u32, spki_der: &'static [u8], rsa_der: &'static [u8]) -> Self {
        RegistrationKey {
            version,
            spki_der,
            rsa_der,
        }
    }

    /// `PublicKeyVersion` to send with `RegisterUsage`.
    #[must_use]
    pub const fn version(&self) -> u32 {
        self.version
    }

    /// The key as DER `SubjectPublicKeyInfo`, exactly as in the PEM file.
    #[must_use]
    pub const fn spki_der(&self) -> &'static [u8] {
        self.spki_der
    }

    /// The key as a DER PKCS#1 `RSAPublicKey` (the SPKI's inner key).
    #[must_use]
    pub const fn rsa_der(&self) -> &'static [u8] {
        self.rsa_der
    }
}

/// How a counted entitlement's units are used (`model` in
/// `Marketplace.toml`): AWS Marketplace's configurable floating and drawdown
/// licenses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitModel {
    /// Units return to the buyer's pool: checked out `PROVISIONAL`, extended
    /// while held, checked in when done (by AWS after 60 minutes at the
    /// latest). Taken with `marketgate::checkout!`, or for the process's
    /// whole life with `value`.
    Floating,
    /// Units are consumed for good (`PERPETUAL`), with `marketgate::draw!`.
    Drawdown,
}

impl std::fmt::Display for UnitModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnitModel::Floating => "floating",
            UnitModel::Drawdown => "drawdown",
        })
    }
}

/// One License Manager entitlement a contract product asks for, and the
/// features it unlocks when AWS allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntitlementSpec {
    name: &'static str,
    unit: &'static str,
    value: Option<&'static str>,
    model: Option<UnitModel>,
    features: FeatureSet,
}

impl EntitlementSpec {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        name: &'static str,
        unit: &'static str,
        value: Option<&'static str>,
        model: Option<UnitModel>,
        features: FeatureSet,
    ) -> Self {
        EntitlementSpec {
            name,
            unit,
            value,
            model,
            features,
        }
    }

    /// How counted units are used; `None` for a tier (`Unit = None`).
    #[must_use]
    pub const fn model(&self) -> Option<UnitModel> {
        self.model
    }

    /// Whether the process's own checkout (its lease, taken at start-up)
    /// asks for this entitlement: a tier, or a floating entitlement with a
    /// `value` the process holds for its whole life. The others are taken
    /// on demand by seller code.
    #[must_use]
    pub const fn held_by_process(&self) -> bool {
        match self.model {
            None => true,
            Some(UnitModel::Floating) => self.value.is_some(),
            Some(UnitModel::Drawdown) => false,
        }
    }

    /// The entitlement's `Name` (the contract dimension's API name).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The entitlement's `Unit` (`None`, `Count`, ...).
    #[must_use]
    pub const fn unit(&self) -> &'static str {
        self.unit
    }

    /// The `Value` to check out, if any (a count for counted units).
    #[must_use]
    pub const fn value(&self) -> Option<&'static str> {
        self.value
    }

    /// Features unlocked when the entitlement is allowed.
    #[must_use]
    pub const fn features(&self) -> FeatureSet {
        self.features
    }
}

/// What a contract product checks out from License Manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenseSpec {
    sku: &'static str,
    key_fingerprint: &'static str,
    base_features: FeatureSet,
    entitlements: &'static [EntitlementSpec],
}

impl LicenseSpec {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        sku: &'static str,
        key_fingerprint: &'static str,
        base_features: FeatureSet,
        entitlements: &'static [EntitlementSpec],
    ) -> Self {
        LicenseSpec {
            sku,
            key_fingerprint,
            base_features,
            entitlements,
        }
    }

    /// The product's own features: granted with any successful checkout,
    /// whichever entitlements it allowed.
    #[must_use]
    pub const fn base_features(&self) -> FeatureSet {
        self.base_features
    }

    /// `ProductSKU`: the Marketplace product id.
    #[must_use]
    pub const fn sku(&self) -> &'static str {
        self.sku
    }

    /// `KeyFingerprint` of the license issuer.
    #[must_use]
    pub const fn key_fingerprint(&self) -> &'static str {
        self.key_fingerprint
    }

    /// The entitlements to check out.
    #[must_use]
    pub const fn entitlements(&self) -> &'static [EntitlementSpec] {
        self.entitlements
    }
}

/// One trusted product from the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    name: &'static str,
    code: &'static str,
    tier: Tier,
    pricing: Pricing,
    features: FeatureSet,
    dimensions: u64,
    max_unreported_secs: u32,
    registration: Option<RegistrationKey>,
    license: Option<LicenseSpec>,
}

impl Product {
    #[doc(hidden)]
    #[must_use]
    #[allow(clippy::too_many_arguments)] // one call per product, generated by the macros
    pub const fn __new(
        name: &'static str,
        code: &'static str,
        tier: Tier,
        pricing: Pricing,
        features: FeatureSet,
        dimensions: u64,
        max_unreported_secs: u32,
        registration: Option<RegistrationKey>,
        license: Option<LicenseSpec>,
    ) -> Self {
        Product {
            name,
            code,
            tier,
            pricing,
            features,
            dimensions,
            max_unreported_secs,
            registration,
            license,
        }
    }

    /// The seller's local alias (used in logs and configuration).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The AWS Marketplace product code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        self.code
    }

    /// Paid or free.
    #[must_use]
    pub const fn tier(&self) -> Tier {
        self.tier
    }

    /// The pricing model.
    #[must_use]
    pub const fn pricing(&self) -> Pricing {
        self.pricing
    }

    /// Every feature this product can grant. For a contract product this is
    /// the product's `features` plus those of all its entitlements; which of
    /// them are granted depends on the license.
    #[must_use]
    pub const fn features(&self) -> FeatureSet {
        self.features
    }

    /// Whether the product meters the dimension with this index.
    #[must_use]
    pub const fn meters(&self, dimension: usize) -> bool {
        dimension < MAX_DIMENSIONS && self.dimensions & (1 << dimension) != 0
    }

    /// Bit mask of the product's dimension indices.
    #[must_use]
    pub const fn dimension_mask(&self) -> u64 {
        self.dimensions
    }

    /// How long metered usage may stay unreported before `#[metered]` calls
    /// are denied; `max-unreported` in `Marketplace.toml`, 2 hours by
    /// default, at most 6 hours (AWS `MeterUsage` refuses older records).
    /// Only products with dimensions set it; the others carry the default.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pro = marketgate::catalog!().product_by_name("pro").expect("in Marketplace.toml");
    /// // This crate's Marketplace.toml sets no `max-unreported` for `pro`.
    /// assert_eq!(pro.max_unreported(), Duration::from_hours(2));
    /// ```
    #[must_use]
    pub const fn max_unreported(&self) -> Duration {
        Duration::from_secs(self.max_unreported_secs as u64)
    }

    /// The `RegisterUsage` key (hourly and monthly products).
    #[must_use]
    pub const fn registration(&self) -> Option<&RegistrationKey> {
        self.registration.as_ref()
    }

    /// What to check out (contract products).
    #[must_use]
    pub const fn license(&self) -> Option<&LicenseSpec> {
        self.license.as_ref()
    }
}

/// The whole trusted catalog: products, and the feature and dimension names
/// whose positions are the indices the macros compiled into call sites.
#[derive(Debug)]
pub struct Catalog {
    fingerprint: u64,
    manifest: &'static str,
    products: &'static [Product],
    features: &'static [&'static str],
    dimensions: &'static [&'static str],
    free_features: FeatureSet,
}

impl Catalog {
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        fingerprint: u64,
        manifest: &'static str,
        products: &'static [Product],
        features: &'static [&'static str],
        dimensions: &'static [&'static str],
    ) -> Self {
        let mut free_features = FeatureSet::EMPTY;
        let mut i = 0;
        while i < products.len() {
            if matches!(products[i].tier, Tier::Free) {
                free_features = free_features.union(products[i].features);
            }
            i += 1;
        }
        Catalog {
            fingerprint,
            manifest,
            products,
            features,
            dimensions,
            free_features,
        }
    }

    /// A hash of the manifest's content; equal catalogs have equal fingerprints.
    #[must_use]
    pub const fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Path of the manifest this catalog was compiled from (for messages).
    #[must_use]
    pub const fn manifest_path(&self) -> &'static str {
        self.manifest
    }

    /// The trusted products, in manifest order.
    #[must_use]
    pub const fn products(&self) -> &'static [Product] {
        self.products
    }

    /// Feature names; a feature's index is its position here.
    #[must_use]
    pub const fn features(&self) -> &'static [&'static str] {
        self.features
    }

    /// Dimension names; a dimension's index is its position here.
    #[must_use]
    pub const fn dimensions(&self) -> &'static [&'static str] {
        self.dimensions
    }

    /// Features some free product grants. Every other feature is a paid path.
    #[must_use]
    pub const fn free_features(&self) -> FeatureSet {
        self.free_features
    }

    /// The product with this AWS product code, if it is trusted.
    #[must_use]
    pub fn product_by_code(&self, code: &str) -> Option<&'static Product> {
        self.products.iter().find(|p| p.code == code)
    }

    /// The product with this local name.
    #[must_use]
    pub fn product_by_name(&self, name: &str) -> Option<&'static Product> {
        self.products.iter().find(|p| p.name == name)
    }

    /// Index of a feature by name.
    #[must_use]
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| *f == name)
    }

    /// Index of a dimension by name.
    #[must_use]
    pub fn dimension_index(&self, name: &str) -> Option<usize> {
        self.dimensions.iter().position(|d| *d == name)
    }

    /// Names of the features in a set.
    pub fn feature_names(&self, set: FeatureSet) -> impl Iterator<Item = &'static str> + '_ {
        set.iter().filter_map(|i| self.features.get(i).copied())
    }

    /// Names of the dimensions a product meters.
    pub fn dimension_names(&self, product: &Product) -> impl Iterator<Item = &'static str> + '_ {
        let mask = product.dimensions;
        self.dimensions
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, d)| *d)
    }
}
