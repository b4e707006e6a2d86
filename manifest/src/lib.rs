//! `Marketplace.toml`: locate, parse, validate (DESIGN §3).
//!
//! Implementation detail of [`marketgate`](https://docs.rs/marketgate),
//! shared by its macros (where a broken manifest is a compile error naming
//! the file, line, product and fix) and by `marketgate-sim manifest`, which
//! checks a manifest and shows the catalog it compiles to. Not a stable API:
//! depend on `marketgate`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

pub mod keys;

/// The env var naming the manifest explicitly (e.g. set in a workspace's
/// `.cargo/config.toml` `[env]` so that every crate shares one manifest).
pub const MANIFEST_ENV: &str = "MARKETGATE_MANIFEST";
const FILE_NAME: &str = "Marketplace.toml";

/// AWS Marketplace's License Manager issuer fingerprint (AWS-FACTS §3).
pub const MARKETPLACE_KEY_FINGERPRINT: &str = "aws:294406891311:AWS/Marketplace:issuer-fingerprint";

/// Limits of the embedded catalog (the runtime's bitset sizes).
pub const MAX_FEATURES: usize = 256;
/// The most dimensions one catalog can hold (the runtime's dimension mask).
pub const MAX_DIMENSIONS: usize = 64;
/// AWS: at most 24 dimensions per product (AWS-FACTS §2).
const MAX_DIMENSIONS_PER_PRODUCT: usize = 24;

const UNITS: &[&str] = &[
    "Count",
    "None",
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
];

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

/// One License Manager entitlement of a contract product.
pub struct Entitlement {
    /// Entitlement `Name`.
    pub name: String,
    /// Entitlement `Unit` (`None`, `Count`, ...).
    pub unit: String,
    /// Requested `Value` (counted units only).
    pub value: Option<String>,
    /// Feature indices the entitlement grants when allowed.
    pub features: BTreeSet<usize>,
}

/// A validated manifest.
pub struct Manifest {
    /// Absolute path of the manifest.
    pub path: PathBuf,
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

/// Why the manifest could not be used. Each entry is one complete message.
pub struct ManifestError {
    /// One message per problem found.
    pub messages: Vec<String>,
}

/// Finds the manifest for the crate being compiled.
fn locate() -> Result<PathBuf, String> {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let explicit = std::env::var_os(MANIFEST_ENV).filter(|v| !v.is_empty());
    let path = match (explicit, &crate_dir) {
        (Some(path), Some(dir)) => dir.join(path),
        (Some(path), None) => PathBuf::from(path),
        (None, Some(dir)) => dir.join(FILE_NAME),
        (None, None) => {
            return Err(format!(
                "cannot find {FILE_NAME}: CARGO_MANIFEST_DIR is not set (build with cargo) and \
                 {MANIFEST_ENV} is not set"
            ));
        }
    };
    if path.is_file() {
        return Ok(path);
    }
    let how = if std::env::var_os(MANIFEST_ENV).is_some() {
        format!(
            "{MANIFEST_ENV} points to it; fix the path (relative paths start at the crate's directory)"
        )
    } else {
        format!(
            "create {FILE_NAME} next to Cargo.toml, or point {MANIFEST_ENV} at a shared one \
             (in .cargo/config.toml: [env] {MANIFEST_ENV} = {{ value = \"{FILE_NAME}\", relative = true }})"
        )
    };
    Err(format!(
        "no marketplace manifest at {}: {how}",
        path.display()
    ))
}

/// Locates (from `CARGO_MANIFEST_DIR` and [`MANIFEST_ENV`]), reads, parses
/// and validates the manifest of the crate being compiled.
///
/// # Errors
/// When there is no manifest or it breaks a rule; each message says how to
/// fix it.
pub fn load() -> Result<Manifest, ManifestError> {
    let path = locate().map_err(|m| ManifestError { messages: vec![m] })?;
    read(&path)
}

/// Reads, parses and validates the manifest at `path`; key files are
/// resolved relative to its directory.
///
/// # Errors
/// When the file cannot be read or breaks a rule.
pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path).map_err(|e| ManifestError {
        messages: vec![format!("cannot read {}: {e}", path.display())],
    })?;
    parse(&path, &text)
}

/// Parses and validates manifest `text` read from `path`.
///
/// # Errors
/// When `text` breaks a rule; one message per problem.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let mut files = vec![path.to_path_buf()];
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| format!(":{}", Position::of(text, span.start)))
            .unwrap_or_default();
        ManifestError {
            messages: vec![format!(
                "{}{at}: {} is not valid: {}",
                path.display(),
                FILE_NAME,
                e.message()
            )],
        }
    })?;
    let mut v = Validator {
        path,
        text,
        messages: Vec::new(),
    };
    let manifest = v.validate(raw, &mut files);
    match manifest {
        Some(m) if v.messages.is_empty() => Ok(m),
        _ => Err(ManifestError {
            messages: v.messages,
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    product: Vec<Spanned<RawProduct>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawProduct {
    name: Option<Spanned<String>>,
    code: Option<Spanned<String>>,
    tier: Option<Spanned<String>>,
    pricing: Option<Spanned<String>>,
    features: Option<Vec<Spanned<String>>>,
    public_key: Option<Spanned<String>>,
    public_key_version: Option<Spanned<i64>>,
    dimensions: Option<Spanned<Vec<Spanned<String>>>>,
    sku: Option<Spanned<String>>,
    key_fingerprint: Option<Spanned<String>>,
    entitlements: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawEntitlement>>>>,
}

/// `Name = ["feature", ...]` (a `Unit = None` entitlement) or
/// `Name = { unit = "Count", value = 1, features = [...] }`.
enum RawEntitlement {
    Features(Vec<Spanned<String>>),
    Table(RawEntitlementTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntitlementTable {
    unit: Spanned<String>,
    value: Option<Spanned<u64>>,
    #[serde(default)]
    features: Vec<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawEntitlement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntitlementVisitor;
        impl<'de> Visitor<'de> for EntitlementVisitor {
            type Value = RawEntitlement;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of feature names, or a table `{ unit = \"Count\", value = 1, features = [...] }`",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawEntitlement::Features)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawEntitlementTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawEntitlement::Table)
            }
        }
        d.deserialize_any(EntitlementVisitor)
    }
}

/// 1-based line and column of a byte offset.
struct Position {
    line: usize,
    column: usize,
}

impl Position {
    fn of(text: &str, offset: usize) -> Position {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    messages: Vec<String>,
}

/// A product between the per-product pass and index assignment.
struct Pending {
    name: String,
    code: String,
    tier: Tier,
    pricing: Pricing,
    features: Vec<String>,
    dimensions: Vec<String>,
    key: Option<(u32, keys::PublicKey)>,
    license: Option<PendingLicense>,
}

struct PendingLicense {
    sku: String,
    key_fingerprint: String,
    entitlements: Vec<PendingEntitlement>,
}

struct PendingEntitlement {
    name: String,
    unit: String,
    value: Option<String>,
    features: Vec<String>,
}

fn is_valid_code(code: &str) -> bool {
    (1..=255).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/=:_.@".contains(&b))
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

fn is_valid_feature(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// AWS allows any 1..=255 characters (`UsageDimension`); we also refuse
/// control characters and surrounding blanks, which are always typos.
fn is_valid_dimension(name: &str) -> bool {
    (1..=255).contains(&name.len()) && !name.chars().any(char::is_control) && name.trim() == name
}

impl Validator<'_> {
    fn at(&self, offset: usize) -> String {
        format!(
            "{}:{}",
            self.path.display(),
            Position::of(self.text, offset)
        )
    }

    fn error(&mut self, offset: usize, product: Option<&str>, problem: impl fmt::Display) {
        let mut msg = self.at(offset);
        if let Some(product) = product {
            let _ = write!(msg, ": product `{product}`");
        }
        let _ = write!(msg, ": {problem}");
        self.messages.push(msg);
    }

    fn validate(&mut self, raw: RawManifest, files: &mut Vec<PathBuf>) -> Option<Manifest> {
        if raw.product.is_empty() {
            self.error(
                0,
                None,
                format_args!(
                    "{FILE_NAME} declares no products; add at least one `[[product]]` with \
                     name, code, tier and pricing"
                ),
            );
            return None;
        }
        let mut pending = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut codes: BTreeMap<String, String> = BTreeMap::new();
        for (i, product) in raw.product.into_iter().enumerate() {
            let start = product.span().start;
            if let Some(p) = self.product(i, start, product.into_inner(), files) {
                if let Some(first) = names.insert(p.name.clone(), i) {
                    self.error(
                        start,
                        Some(&p.name),
                        format_args!(
                            "the name is already used by product #{}; names must be unique",
                            first + 1
                        ),
                    );
                }
                if let Some(other) = codes.insert(p.code.clone(), p.name.clone()) {
                    self.error(
                        start,
                        Some(&p.name),
                        format_args!(
                            "code `{}` is also the code of product `{other}`; each product code \
                             must appear once (copy the right code from the AWS Marketplace \
                             Management Portal)",
                            p.code
                        ),
                    );
                }
                pending.push(p);
            }
        }
        if !self.messages.is_empty() {
            return None;
        }
        self.assign_indices(pending, files)
    }

    #[allow(clippy::too_many_lines)] // one linear pass over the product's keys
    fn product(
        &mut self,
        ordinal: usize,
        start: usize,
        raw: RawProduct,
        files: &mut Vec<PathBuf>,
    ) -> Option<Pending> {
        let errors_before = self.messages.len();
        let Some(name) = raw.name else {
            self.error(
                start,
                None,
                format_args!(
                    "product #{} has no `name`; add `name = \"...\"` (a local alias used in logs)",
                    ordinal + 1
                ),
            );
            return None;
        };
        let (name_span, name) = (name.span(), name.into_inner());
        let n = name.clone();
        let n = n.as_str();
        if !is_valid_name(&name) {
            self.error(
                name_span.start,
                Some(n),
                "the name must be 1 to 64 ASCII letters, digits, `-` or `_`",
            );
        }
        let code = match raw.code {
            None => {
                self.error(
                    start,
                    Some(n),
                    "it has no `code`; add the product code AWS Marketplace assigned to it",
                );
                String::new()
            }
            Some(code) => {
                if !is_valid_code(code.get_ref()) {
                    self.error(
                        code.span().start,
                        Some(n),
                        format_args!(
                            "code `{}` is not an AWS product code: it must be 1 to 255 \
                             characters of `[-a-zA-Z0-9/=:_.@]`; copy it from the AWS \
                             Marketplace Management Portal",
                            code.get_ref()
                        ),
                    );
                }
                code.into_inner()
            }
        };
        let tier = match raw
            .tier
            .as_ref()
            .map(|t| (t.span().start, t.get_ref().as_str()))
        {
            Some((_, "paid")) => Some(Tier::Paid),
            Some((_, "free")) => Some(Tier::Free),
            Some((at, other)) => {
                self.error(
                    at,
                    Some(n),
                    format_args!("tier `{other}` is not `paid` or `free`"),
                );
                None
            }
            None => {
                self.error(
                    start,
                    Some(n),
                    "it has no `tier`; write `tier = \"paid\"` or `tier = \"free\"` (never \
                     defaulted: a free product unlocks only free features)",
                );
                None
            }
        };
        let pricing = match raw
            .pricing
            .as_ref()
            .map(|p| (p.span().start, p.get_ref().as_str()))
        {
            Some((_, "hourly")) => Some(Pricing::Hourly),
            Some((_, "monthly")) => Some(Pricing::Monthly),
            Some((_, "custom")) => Some(Pricing::Custom),
            Some((_, "contract")) => Some(Pricing::Contract),
            Some((at, other)) => {
                self.error(
                    at,
                    Some(n),
                    format_args!(
                        "pricing `{other}` is not one of `hourly`, `monthly`, `custom`, `contract`"
                    ),
                );
                None
            }
            None => {
                self.error(
                    start,
                    Some(n),
                    "it has no `pricing`; write `pricing = \"hourly\"`, `\"monthly\"`, \
                     `\"custom\"` or `\"contract\"`",
                );
                None
            }
        };

        let mut features = Vec::new();
        for feature in raw.features.unwrap_or_default() {
            let at = feature.span().start;
            let feature = feature.into_inner();
            if !is_valid_feature(&feature) {
                self.error(
                    at,
                    Some(n),
                    format_args!(
                        "feature `{feature}` must be 1 to 64 ASCII letters, digits, `-`, `_`, \
                         `.` or `:`"
                    ),
                );
            } else if features.contains(&feature) {
                self.error(
                    at,
                    Some(n),
                    format_args!("feature `{feature}` is listed twice"),
                );
            } else {
                features.push(feature);
            }
        }

        let (Some(tier), Some(pricing)) = (tier, pricing) else {
            return None;
        };

        // Which keys belong to which pricing model.
        let registers = matches!(pricing, Pricing::Hourly | Pricing::Monthly);
        if tier == Tier::Free && !registers {
            self.error(
                start,
                Some(n),
                format_args!(
                    "a free product cannot use `{}` pricing: metered dimensions and contracts \
                     are always paid paths; make it `tier = \"paid\"` or `pricing = \"hourly\"`",
                    pricing_name(pricing)
                ),
            );
        }
        let key = self.registration_key(
            n,
            start,
            tier,
            registers,
            &raw.public_key,
            raw.public_key_version.as_ref(),
            files,
        );

        let mut dimensions = Vec::new();
        match (&raw.dimensions, pricing) {
            (Some(dims), Pricing::Custom) => {
                if dims.get_ref().is_empty() {
                    self.error(
                        dims.span().start,
                        Some(n),
                        "a custom-pricing product needs at least one dimension",
                    );
                }
                if dims.get_ref().len() > MAX_DIMENSIONS_PER_PRODUCT {
                    self.error(
                        dims.span().start,
                        Some(n),
                        format_args!(
                            "it has {} dimensions; AWS Marketplace allows at most \
                             {MAX_DIMENSIONS_PER_PRODUCT} per product",
                            dims.get_ref().len()
                        ),
                    );
                }
                for dim in dims.get_ref() {
                    let d = dim.get_ref();
                    if !is_valid_dimension(d) {
                        self.error(
                            dim.span().start,
                            Some(n),
                            format_args!(
                                "dimension `{}` must be 1 to 255 characters without control \
                                 characters or surrounding blanks (the dimension's API name \
                                 in the listing)",
                                d.escape_debug()
                            ),
                        );
                    } else if dimensions.contains(d) {
                        self.error(
                            dim.span().start,
                            Some(n),
                            format_args!("dimension `{d}` is listed twice"),
                        );
                    } else {
                        dimensions.push(d.clone());
                    }
                }
            }
            (None, Pricing::Custom) => self.error(
                start,
                Some(n),
                "a custom-pricing product needs `dimensions = [\"...\"]`: the API names of its \
                 pricing dimensions",
            ),
            (Some(dims), _) => self.error(
                dims.span().start,
                Some(n),
                format_args!(
                    "`dimensions` are only for `pricing = \"custom\"`, not `{}`; remove them or \
                     change the pricing",
                    pricing_name(pricing)
                ),
            ),
            (None, _) => {}
        }

        let license = self.license(
            n,
            start,
            pricing,
            raw.sku,
            raw.key_fingerprint,
            raw.entitlements,
        );

        if self.messages.len() > errors_before {
            return None;
        }
        Some(Pending {
            name,
            code,
            tier,
            pricing,
            features,
            dimensions,
            key,
            license,
        })
    }

    #[allow(clippy::too_many_arguments, clippy::ref_option)]
    fn registration_key(
        &mut self,
        n: &str,
        start: usize,
        tier: Tier,
        registers: bool,
        public_key: &Option<Spanned<String>>,
        version: Option<&Spanned<i64>>,
        files: &mut Vec<PathBuf>,
    ) -> Option<(u32, keys::PublicKey)> {
        if !registers {
            if let Some(key) = public_key {
                self.error(
                    key.span().start,
                    Some(n),
                    "`public-key` is only for hourly and monthly products (RegisterUsage); \
                     remove it",
                );
            }
            if let Some(v) = version {
                self.error(
                    v.span().start,
                    Some(n),
                    "`public-key-version` is only for hourly and monthly products; remove it",
                );
            }
            return None;
        }
        match (public_key, version) {
            (None, None) if tier == Tier::Free => None,
            (None, _) => {
                self.error(
                    start,
                    Some(n),
                    "a paid hourly or monthly product needs `public-key = \"keys/<name>.pem\"` \
                     and `public-key-version`: the RegisterUsage key AWS Marketplace gave you \
                     with the product code. Without it the RegisterUsage signature cannot be \
                     verified and a fake AWS endpoint could unlock paid features",
                );
                None
            }
            (Some(key), None) => {
                self.error(
                    key.span().start,
                    Some(n),
                    "`public-key` needs `public-key-version = <n>` (the version AWS \
                     Marketplace shows with the key)",
                );
                None
            }
            (Some(key), Some(version)) => {
                let version_number = match u32::try_from(*version.get_ref()) {
                    Ok(v) if (1..=0x7fff_ffff).contains(&v) => v,
                    _ => {
                        self.error(
                            version.span().start,
                            Some(n),
                            "`public-key-version` must be a whole number of at least 1",
                        );
                        return None;
                    }
                };
                let base = self.path.parent().unwrap_or(Path::new("."));
                let key_path = base.join(key.get_ref());
                files.push(key_path.clone());
                let parsed = std::fs::read(&key_path)
                    .map_err(|e| {
                        format!(
                            "cannot read `{}` ({e}); paths are relative to {FILE_NAME}",
                            key_path.display()
                        )
                    })
                    .and_then(|bytes| {
                        keys::parse_rsa_spki_pem(&bytes).map_err(|why| {
                            format!("public key `{}` is unusable: {why}", key.get_ref())
                        })
                    });
                match parsed {
                    Ok(parsed) => Some((version_number, parsed)),
                    Err(message) => {
                        self.error(key.span().start, Some(n), message);
                        None
                    }
                }
            }
        }
    }

    fn license(
        &mut self,
        n: &str,
        start: usize,
        pricing: Pricing,
        sku: Option<Spanned<String>>,
        fingerprint: Option<Spanned<String>>,
        entitlements: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawEntitlement>>>>,
    ) -> Option<PendingLicense> {
        if pricing != Pricing::Contract {
            for (key, at) in [
                ("sku", sku.as_ref().map(|s| s.span().start)),
                (
                    "key-fingerprint",
                    fingerprint.as_ref().map(|s| s.span().start),
                ),
                (
                    "entitlements",
                    entitlements.as_ref().map(|s| s.span().start),
                ),
            ] {
                if let Some(at) = at {
                    self.error(
                        at,
                        Some(n),
                        format_args!("`{key}` is only for `pricing = \"contract\"`; remove it"),
                    );
                }
            }
            return None;
        }
        let sku = match sku {
            Some(s)
                if !s.get_ref().trim().is_empty() && !s.get_ref().contains(char::is_whitespace) =>
            {
                s.into_inner()
            }
            Some(s) => {
                self.error(
                    s.span().start,
                    Some(n),
                    "`sku` must be the product's AWS Marketplace product id, without blanks",
                );
                return None;
            }
            None => {
                self.error(
                    start,
                    Some(n),
                    "a contract product needs `sku = \"...\"`: its AWS Marketplace product id \
                     (CheckoutLicense's ProductSKU)",
                );
                return None;
            }
        };
        let key_fingerprint = match fingerprint {
            Some(f) if f.get_ref().is_empty() || f.get_ref().contains(char::is_whitespace) => {
                self.error(
                    f.span().start,
                    Some(n),
                    format_args!(
                        "`key-fingerprint` must not be empty or contain blanks; omit it for \
                         Marketplace-issued licenses (`{MARKETPLACE_KEY_FINGERPRINT}`)"
                    ),
                );
                return None;
            }
            Some(f) => f.into_inner(),
            None => MARKETPLACE_KEY_FINGERPRINT.to_owned(),
        };
        let Some(entitlements) = entitlements.filter(|e| !e.get_ref().is_empty()) else {
            self.error(
                start,
                Some(n),
                "a contract product needs `entitlements = { <EntitlementName> = [\"feature\", ...] }`: \
                 which license entitlements unlock which features",
            );
            return None;
        };
        let entitlements = entitlements
            .into_inner()
            .into_iter()
            .filter_map(|(name, ent)| self.entitlement(n, name, ent.into_inner()))
            .collect();
        Some(PendingLicense {
            sku,
            key_fingerprint,
            entitlements,
        })
    }

    fn entitlement(
        &mut self,
        n: &str,
        name: Spanned<String>,
        ent: RawEntitlement,
    ) -> Option<PendingEntitlement> {
        let (name_at, name) = (name.span().start, name.into_inner());
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            self.error(
                name_at,
                Some(n),
                format_args!(
                    "entitlement name `{}` must be 1 to 255 characters without control characters",
                    name.escape_debug()
                ),
            );
            return None;
        }
        let (unit, value, features) = match ent {
            RawEntitlement::Features(features) => ("None".to_owned(), None, features),
            RawEntitlement::Table(t) => {
                let unit_at = t.unit.span().start;
                let unit = t.unit.into_inner();
                if !UNITS.contains(&unit.as_str()) {
                    self.error(
                        unit_at,
                        Some(n),
                        format_args!(
                            "entitlement `{name}` has unit `{unit}`, which License Manager \
                             does not know; use one of {}",
                            UNITS.join(", ")
                        ),
                    );
                    return None;
                }
                let value = t.value.map(|v| v.into_inner().to_string());
                if unit != "None" && value.is_none() {
                    self.error(
                        unit_at,
                        Some(n),
                        format_args!(
                            "entitlement `{name}` counts `{unit}` and needs `value = <n>`: \
                             how many to check out (e.g. 1 seat)"
                        ),
                    );
                    return None;
                }
                (unit, value, t.features)
            }
        };
        let mut names = Vec::new();
        for feature in features {
            let (at, feature) = (feature.span().start, feature.into_inner());
            if is_valid_feature(&feature) {
                names.push(feature);
            } else {
                self.error(
                    at,
                    Some(n),
                    format_args!(
                        "feature `{feature}` of entitlement `{name}` must be 1 to 64 ASCII \
                         letters, digits, `-`, `_`, `.` or `:`"
                    ),
                );
            }
        }
        Some(PendingEntitlement {
            name,
            unit,
            value,
            features: names,
        })
    }

    fn assign_indices(&mut self, pending: Vec<Pending>, files: &mut [PathBuf]) -> Option<Manifest> {
        let mut features = BTreeSet::new();
        let mut dimensions = BTreeSet::new();
        for p in &pending {
            features.extend(p.features.iter().cloned());
            if let Some(license) = &p.license {
                for e in &license.entitlements {
                    features.extend(e.features.iter().cloned());
                }
            }
            dimensions.extend(p.dimensions.iter().cloned());
        }
        if features.len() > MAX_FEATURES {
            self.error(
                0,
                None,
                format_args!(
                    "{} distinct features are declared; a catalog holds at most {MAX_FEATURES}",
                    features.len()
                ),
            );
        }
        if dimensions.len() > MAX_DIMENSIONS {
            self.error(
                0,
                None,
                format_args!(
                    "{} distinct dimensions are declared; a catalog holds at most {MAX_DIMENSIONS}",
                    dimensions.len()
                ),
            );
        }
        if !self.messages.is_empty() {
            return None;
        }
        let features: Vec<String> = features.into_iter().collect();
        let dimensions: Vec<String> = dimensions.into_iter().collect();
        let fi = |name: &String| features.binary_search(name).unwrap_or_default();
        let di = |name: &String| dimensions.binary_search(name).unwrap_or_default();
        let products: Vec<Product> = pending
            .into_iter()
            .map(|p| {
                let license = p.license.map(|l| License {
                    sku: l.sku,
                    key_fingerprint: l.key_fingerprint,
                    base_features: p.features.iter().map(fi).collect(),
                    entitlements: l
                        .entitlements
                        .into_iter()
                        .map(|e| Entitlement {
                            name: e.name,
                            unit: e.unit,
                            value: e.value,
                            features: e.features.iter().map(fi).collect(),
                        })
                        .collect(),
                });
                let mut all: BTreeSet<usize> = p.features.iter().map(fi).collect();
                if let Some(l) = &license {
                    for e in &l.entitlements {
                        all.extend(e.features.iter().copied());
                    }
                }
                Product {
                    name: p.name,
                    code: p.code,
                    tier: p.tier,
                    pricing: p.pricing,
                    features: all,
                    dimensions: p.dimensions.iter().map(di).collect(),
                    key: p.key,
                    license,
                }
            })
            .collect();
        let mut manifest = Manifest {
            path: self.path.to_path_buf(),
            files: files.to_vec(),
            products,
            features,
            dimensions,
            fingerprint: 0,
        };
        manifest.fingerprint = fingerprint(&manifest);
        Some(manifest)
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

/// FNV-1a over a canonical rendering of everything the catalog embeds.
fn fingerprint(m: &Manifest) -> u64 {
    let mut canon = String::new();
    let _ = write!(
        canon,
        "features={:?};dimensions={:?};",
        m.features, m.dimensions
    );
    for p in &m.products {
        let _ = write!(
            canon,
            "product={:?},{:?},{:?},{:?},{:?},{:?};",
            p.name, p.code, p.tier, p.pricing, p.features, p.dimensions
        );
        if let Some((version, key)) = &p.key {
            let _ = write!(canon, "key={version},{:?};", key.spki);
        }
        if let Some(l) = &p.license {
            let _ = write!(
                canon,
                "license={:?},{:?},{:?};",
                l.sku, l.key_fingerprint, l.base_features
            );
            for e in &l.entitlements {
                let _ = write!(
                    canon,
                    "ent={:?},{:?},{:?},{:?};",
                    e.name, e.unit, e.value, e.features
                );
            }
        }
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canon.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Manifest, Vec<String>> {
        parse(Path::new("/m/Marketplace.toml"), text).map_err(|e| e.messages)
    }

    fn one_error(text: &str) -> String {
        match check(text) {
            Ok(_) => panic!("manifest was accepted:\n{text}"),
            Err(mut messages) => {
                assert_eq!(messages.len(), 1, "{messages:#?}");
                messages.remove(0)
            }
        }
    }

    #[test]
    fn indices_are_sorted_positions_across_products() {
        let m = check(
            r#"
            [[product]]
            name = "usage"
            code = "c1"
            tier = "paid"
            pricing = "custom"
            dimensions = ["gb_scanned", "api_calls"]
            features = ["sso", "export"]

            [[product]]
            name = "community"
            code = "c2"
            tier = "free"
            pricing = "hourly"
            features = ["basic"]
            "#,
        )
        .unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(m.features, ["basic", "export", "sso"]);
        assert_eq!(m.dimensions, ["api_calls", "gb_scanned"]);
        assert_eq!(m.feature_index("sso"), Some(2));
        assert_eq!(m.dimension_index("gb_scanned"), Some(1));
        assert_eq!(m.products[0].features, BTreeSet::from([1, 2]));
        assert_eq!(m.products[1].features, BTreeSet::from([0]));
    }

    #[test]
    fn codes_must_match_the_api_pattern() {
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"<code from AMMP>\"\ntier = \"free\"\npricing = \"hourly\"\n",
        );
        assert!(
            e.starts_with("/m/Marketplace.toml:3:8: product `a`: code `<code from AMMP>`"),
            "{e}"
        );
    }

    #[test]
    fn tier_and_pricing_are_never_defaulted() {
        let Err(e) = check("[[product]]\nname = \"a\"\ncode = \"c\"\n") else {
            panic!("accepted");
        };
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains("it has no `tier`"), "{e:#?}");
        assert!(e[1].contains("it has no `pricing`"), "{e:#?}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\nfeaturs = []\n",
        );
        assert!(
            e.contains(":6:1:") && e.contains("unknown field `featurs`"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_names_and_codes_are_errors() {
        let Err(e) = check(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\n\
             [[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"monthly\"\n",
        ) else {
            panic!("accepted");
        };
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].contains("name is already used by product #1"),
            "{e:#?}"
        );
        assert!(
            e[1].contains("code `c` is also the code of product `a`"),
            "{e:#?}"
        );
    }

    #[test]
    fn paid_hourly_needs_a_key_and_free_hourly_does_not() {
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"hourly\"\n",
        );
        assert!(e.contains("needs `public-key"), "{e}");
        assert!(
            check(
                "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"monthly\"\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn model_specific_keys_are_checked() {
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"custom\"\n",
        );
        assert!(e.contains("needs `dimensions"), "{e}");
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\ndimensions = [\"x\"]\n",
        );
        assert!(e.contains("only for `pricing = \"custom\"`"), "{e}");
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"custom\"\ndimensions = [\"x\"]\n",
        );
        assert!(
            e.contains("a free product cannot use `custom` pricing"),
            "{e}"
        );
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"contract\"\nsku = \"s\"\n",
        );
        assert!(e.contains("needs `entitlements"), "{e}");
        let many: Vec<String> = (0..25).map(|i| format!("\"d{i}\"")).collect();
        let e = one_error(&format!(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"custom\"\ndimensions = [{}]\n",
            many.join(",")
        ));
        assert!(e.contains("at most 24 per product"), "{e}");
    }

    #[test]
    fn contract_entitlements_map_to_features() {
        let m = check(
            r#"
            [[product]]
            name = "ent"
            code = "c"
            tier = "paid"
            pricing = "contract"
            sku = "prod-abc"
            entitlements = { ProEdition = ["export", "sso"], Seats = { unit = "Count", value = 1, features = ["seat"] } }
            "#,
        )
        .unwrap_or_else(|e| panic!("{e:#?}"));
        let l = m.products[0].license.as_ref().unwrap();
        assert_eq!(l.key_fingerprint, MARKETPLACE_KEY_FINGERPRINT);
        assert_eq!(l.entitlements.len(), 2);
        assert_eq!(l.entitlements[0].name, "ProEdition");
        assert_eq!(l.entitlements[0].unit, "None");
        assert_eq!(l.entitlements[1].unit, "Count");
        assert_eq!(l.entitlements[1].value.as_deref(), Some("1"));
        assert_eq!(m.features, ["export", "seat", "sso"]);
        let e = one_error(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"contract\"\nsku = \"s\"\nentitlements = { Seats = { unit = \"Count\", features = [] } }\n",
        );
        assert!(e.contains("needs `value = <n>`"), "{e}");
    }

    #[test]
    fn fingerprint_changes_with_content_and_not_with_formatting() {
        let a = check("[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\nfeatures = [\"x\"]\n").unwrap();
        let b = check("[[product]]\nname=\"a\"\ncode=\"c\"\ntier=\"free\"\npricing=\"hourly\"\nfeatures=[\"x\"] # same\n").unwrap();
        let c = check("[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\nfeatures = [\"y\"]\n").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }
}
