//! The checked, immutable form of a [`Config`]: products with their loaded
//! keys, the license issuer, license definitions and the task's identity.
//!
//! Every rule a config must follow lives in [`Catalog::build`], so the
//! handlers can rely on it: product codes match the model's pattern, names
//! are unique, keys parse, licenses point at contract products. A
//! [`Config`] only parses; the catalog is built once, when a simulator
//! starts, and that is the one time key files are read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::SystemTime;

use aws_lc_rs::digest;

use crate::config::{
    ClockConfig, Config, EntitlementConfig, EntitlementUnit, LicenseStatus, Platform, Pricing,
    Subscription,
};
use crate::constraints;
use crate::error::ConfigError;
use crate::ids;
use crate::keys::SigningKey;

/// The built-in, test-only license issuer key (public half in
/// `keys/license-issuer.pub.pem`).
const BUILT_IN_ISSUER_KEY: &str = include_str!("../keys/license-issuer.key.pem");

/// AWS allows at most 24 custom dimensions per product.
const MAX_DIMENSIONS: usize = 24;

/// Everything the config fixes for the simulator's lifetime.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) region: String,
    pub(crate) platform: Platform,
    pub(crate) access_keys: BTreeSet<String>,
    pub(crate) clock: ClockConfig,
    pub(crate) issuer: Issuer,
    pub(crate) products: Vec<Product>,
    pub(crate) subscriptions: BTreeMap<String, Subscription>,
    pub(crate) licenses: Vec<LicenseSpec>,
}

/// The License Manager issuer.
#[derive(Debug)]
pub(crate) struct Issuer {
    pub(crate) name: String,
    pub(crate) key_fingerprint: String,
    pub(crate) key: SigningKey,
}

/// A product with its keys loaded.
#[derive(Debug)]
pub(crate) struct Product {
    pub(crate) name: String,
    pub(crate) code: String,
    pub(crate) pricing: Pricing,
    pub(crate) dimensions: Vec<String>,
    pub(crate) sku: Option<String>,
    pub(crate) keys: BTreeMap<i32, ProductKey>,
}

impl Product {
    pub(crate) fn key(&self, version: i32) -> Option<&ProductKey> {
        self.keys.get(&version)
    }
}

/// One `RegisterUsage` signing key version.
#[derive(Debug)]
pub(crate) struct ProductKey {
    pub(crate) signing: SigningKey,
    pub(crate) expires_at: Option<SystemTime>,
}

/// The fixed parts of a license; its status lives in the mutable state.
#[derive(Debug, Clone)]
pub(crate) struct LicenseSpec {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) sku: String,
    pub(crate) license_name: String,
    pub(crate) product_name: String,
    pub(crate) home_region: String,
    pub(crate) version: String,
    pub(crate) beneficiary: String,
    pub(crate) issuer_name: String,
    pub(crate) key_fingerprint: String,
    pub(crate) status: LicenseStatus,
    pub(crate) begin: SystemTime,
    pub(crate) end: Option<SystemTime>,
    pub(crate) entitlements: Vec<EntitlementConfig>,
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

impl Catalog {
    /// Checks `config` and loads its keys.
    pub(crate) fn build(config: &Config) -> Result<Self, ConfigError> {
        let task = &config.task;
        if task.region.is_empty()
            || !task
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(format!(
                "[task] region {:?} is not a Region name like \"us-east-1\"",
                task.region
            )));
        }
        if let Some(bad) = task
            .access_keys
            .iter()
            .find(|k| k.is_empty() || k.contains('/'))
        {
            return Err(invalid(format!(
                "[task] access-keys entry {bad:?} is not an access key id"
            )));
        }
        let account_id = &config.buyer.account_id;
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!(
                "[buyer] account-id {account_id:?} must be 12 digits"
            )));
        }

        let issuer = build_issuer(config)?;
        let products = build_products(config)?;
        let subscriptions = build_subscriptions(config, &products)?;
        let licenses = build_licenses(config, &products, &issuer)?;

        Ok(Self {
            region: task.region.clone(),
            platform: task.platform,
            access_keys: task.access_keys.iter().cloned().collect(),
            clock: config.clock.clone(),
            issuer,
            products,
            subscriptions,
            licenses,
        })
    }

    pub(crate) fn product_by_code(&self, code: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.code == code)
    }

    pub(crate) fn product_by_name(&self, name: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.name == name)
    }

    /// A product by code, or by name as a convenience for tests and humans.
    pub(crate) fn resolve_product(&self, code_or_name: &str) -> Option<&Product> {
        self.product_by_code(code_or_name)
            .or_else(|| self.product_by_name(code_or_name))
    }
}

fn load_key(
    pem: Option<&String>,
    file: Option<&Path>,
    what: &str,
) -> Result<Option<SigningKey>, ConfigError> {
    let text = match (pem, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{what} sets both private-key and private-key-file; keep one"
            )));
        }
        (Some(pem), None) => pem.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?,
        (None, None) => return Ok(None),
    };
    SigningKey::from_pem(&text)
        .map(Some)
        .map_err(|e| invalid(format!("{what}: {e}")))
}

fn build_issuer(config: &Config) -> Result<Issuer, ConfigError> {
    let issuer = &config.license_issuer;
    let key = match load_key(
        issuer.private_key.as_ref(),
        issuer.private_key_file.as_deref(),
        "[license-issuer]",
    )? {
        Some(key) => key,
        None => SigningKey::from_pem(BUILT_IN_ISSUER_KEY)
            .map_err(|e| invalid(format!("built-in issuer key: {e}")))?,
    };
    if issuer.name.is_empty() || issuer.key_fingerprint.is_empty() {
        return Err(invalid(
            "[license-issuer] name and key-fingerprint must not be empty".to_owned(),
        ));
    }
    Ok(Issuer {
        name: issuer.name.clone(),
        key_fingerprint: issuer.key_fingerprint.clone(),
        key,
    })
}

fn build_products(config: &Config) -> Result<Vec<Product>, ConfigError> {
    let mut names = HashSet::new();
    let mut codes = HashSet::new();
    let mut skus = HashSet::new();
    let mut products = Vec::with_capacity(config.products.len());
    for p in &config.products {
        let what = format!("product {:?}", p.name);
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            return Err(invalid(format!(
                "{what}: names must be non-empty and unique"
            )));
        }
        if p.code.is_empty() || !constraints::is_product_code(&p.code) {
            return Err(invalid(format!(
                "{what}: code {:?} must match the API pattern [-a-zA-Z0-9/=:_.@]{{1,255}}",
                p.code
            )));
        }
        if !codes.insert(p.code.as_str()) {
            return Err(invalid(format!("{what}: code {:?} is used twice", p.code)));
        }
        let registers = matches!(p.pricing, Pricing::Hourly | Pricing::Monthly);
        if registers && p.keys.is_empty() {
            return Err(invalid(format!(
                "{what}: hourly and monthly products call RegisterUsage and need at least \
                 one [[product.key]] with a version and a private key"
            )));
        }
        if !registers && !p.keys.is_empty() {
            return Err(invalid(format!(
                "{what}: only hourly and monthly products have RegisterUsage keys"
            )));
        }
        check_dimensions(p.pricing, &p.dimensions, &what)?;
        match (p.pricing, &p.sku) {
            (Pricing::Contract, Some(sku)) if !sku.is_empty() => {
                if !skus.insert(sku.as_str()) {
                    return Err(invalid(format!("{what}: sku {sku:?} is used twice")));
                }
            }
            (Pricing::Contract, _) => {
                return Err(invalid(format!(
                    "{what}: contract products need the `sku` CheckoutLicense sends as ProductSKU"
                )));
            }
            (_, Some(_)) => {
                return Err(invalid(format!(
                    "{what}: only contract products have a sku"
                )));
            }
            (_, None) => {}
        }
        let mut keys = BTreeMap::new();
        for k in &p.keys {
            let key_what = format!("{what} key version {}", k.version);
            if k.version < 1 {
                return Err(invalid(format!("{key_what}: versions start at 1")));
            }
            let signing = load_key(
                k.private_key.as_ref(),
                k.private_key_file.as_deref(),
                &key_what,
            )?
            .ok_or_else(|| invalid(format!("{key_what}: set private-key or private-key-file")))?;
            let key = ProductKey {
                signing,
                expires_at: k.expires_at,
            };
            if keys.insert(k.version, key).is_some() {
                return Err(invalid(format!("{key_what}: version is listed twice")));
            }
        }
        products.push(Product {
            name: p.name.clone(),
            code: p.code.clone(),
            pricing: p.pricing,
            dimensions: p.dimensions.clone(),
            sku: p.sku.clone(),
            keys,
        });
    }
    Ok(products)
}

fn check_dimensions(
    pricing: Pricing,
    dimensions: &[String],
    what: &str,
) -> Result<(), ConfigError> {
    if pricing != Pricing::Custom {
        if dimensions.is_empty() {
            return Ok(());
        }
        return Err(invalid(format!(
            "{what}: only custom-priced products have dimensions"
        )));
    }
    if dimensions.is_empty() || dimensions.len() > MAX_DIMENSIONS {
        return Err(invalid(format!(
            "{what}: custom products need 1 to {MAX_DIMENSIONS} dimensions"
        )));
    }
    let mut seen = HashSet::new();
    for d in dimensions {
        if !constraints::has_length(d, 1, 255) || !seen.insert(d) {
            return Err(invalid(format!(
                "{what}: dimension {d:?} must be 1-255 characters and unique"
            )));
        }
    }
    Ok(())
}

fn build_subscriptions(
    config: &Config,
    products: &[Product],
) -> Result<BTreeMap<String, Subscription>, ConfigError> {
    let mut subscriptions = BTreeMap::new();
    for s in &config.subscriptions {
        let product = products
            .iter()
            .find(|p| p.name == s.product || p.code == s.product)
            .ok_or_else(|| {
                invalid(format!(
                    "subscription to {:?}: no product has that name or code",
                    s.product
                ))
            })?;
        if subscriptions
            .insert(product.code.clone(), s.status)
            .is_some()
        {
            return Err(invalid(format!(
                "product {:?} has two subscriptions; keep one",
                product.name
            )));
        }
    }
    Ok(subscriptions)
}

fn build_licenses(
    config: &Config,
    products: &[Product],
    issuer: &Issuer,
) -> Result<Vec<LicenseSpec>, ConfigError> {
    let mut names = HashSet::new();
    let mut arns = HashSet::new();
    let mut licenses = Vec::with_capacity(config.licenses.len());
    for l in &config.licenses {
        let what = format!("license {:?}", l.name);
        if l.name.is_empty() || !names.insert(l.name.as_str()) {
            return Err(invalid(format!(
                "{what}: names must be non-empty and unique"
            )));
        }
        let product = products
            .iter()
            .find(|p| p.sku.as_deref() == Some(l.sku.as_str()))
            .ok_or_else(|| {
                invalid(format!(
                    "{what}: sku {:?} is not the sku of any contract product",
                    l.sku
                ))
            })?;
        let arn = l.arn.clone().unwrap_or_else(|| derived_arn(&l.name));
        if !constraints::is_arn(&arn) || !arns.insert(arn.clone()) {
            return Err(invalid(format!(
                "{what}: arn {arn:?} must be a valid, unique ARN"
            )));
        }
        if l.end.is_some_and(|end| end <= l.begin) {
            return Err(invalid(format!("{what}: end must be after begin")));
        }
        check_entitlements(&l.entitlements, &what)?;
        licenses.push(LicenseSpec {
            name: l.name.clone(),
            arn,
            sku: l.sku.clone(),
            license_name: l.license_name.clone().unwrap_or_else(|| l.name.clone()),
            product_name: l
                .product_name
                .clone()
                .unwrap_or_else(|| product.name.clone()),
            home_region: l
                .home_region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
            version: l.version.clone().unwrap_or_else(|| "1".to_owned()),
            beneficiary: l
                .beneficiary
                .clone()
                .unwrap_or_else(|| config.buyer.account_id.clone()),
            issuer_name: issuer.name.clone(),
            key_fingerprint: l
                .key_fingerprint
                .clone()
                .unwrap_or_else(|| issuer.key_fingerprint.clone()),
            status: l.status,
            begin: l.begin,
            end: l.end,
            entitlements: l.entitlements.clone(),
        });
    }
    Ok(licenses)
}

/// The rules a license's entitlements follow, in its config and when a
/// running simulator's license is given new ones: at least one, names
/// unique, each valid for its unit. `what` names the license.
pub(crate) fn check_entitlements(
    entitlements: &[EntitlementConfig],
    what: &str,
) -> Result<(), ConfigError> {
    if entitlements.is_empty() {
        return Err(invalid(format!(
            "{what}: add at least one [[license.entitlement]]"
        )));
    }
    let mut names = HashSet::new();
    for e in entitlements {
        check_entitlement(e, what)?;
        if !names.insert(e.name.as_str()) {
            return Err(invalid(format!(
                "{what}: entitlement {:?} is listed twice",
                e.name
            )));
        }
    }
    Ok(())
}

fn check_entitlement(e: &EntitlementConfig, what: &str) -> Result<(), ConfigError> {
    let what = format!("{what} entitlement {:?}", e.name);
    if e.name.is_empty() {
        return Err(invalid(format!("{what}: name must not be empty")));
    }
    // License Manager: Value is used "only if the unit is None"; MaxCount
    // for every other unit.
    if e.unit == EntitlementUnit::None {
        if e.max_count.is_some() {
            return Err(invalid(format!(
                "{what}: unit None takes a value, not max-count"
            )));
        }
    } else {
        if e.value.is_some() {
            return Err(invalid(format!(
                "{what}: unit {} takes max-count, not value",
                e.unit.as_str()
            )));
        }
        if e.max_count.is_none_or(|n| n < 0) {
            return Err(invalid(format!(
                "{what}: unit {} needs max-count >= 0",
                e.unit.as_str()
            )));
        }
    }
    Ok(())
}

/// A stable ARN for a license that does not set one, shaped like AWS's
/// (`arn:aws:license-manager::294406891311:license:l-<32 hex>`).
fn derived_arn(name: &str) -> String {
    let hash = digest::digest(&digest::SHA256, name.as_bytes());
    let hex = ids::to_hex(&hash.as_ref()[..16]);
    format!("arn:aws:license-manager::294406891311:license:l-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> String {
        let config: Config = toml::from_str(text).expect("schema");
        Catalog::build(&config).unwrap_err().to_string()
    }

    const HOURLY_HEAD: &str =
        "[[product]]\nname = \"p\"\ncode = \"p\"\ntier = \"paid\"\npricing = \"hourly\"\n";

    #[test]
    fn example_builds() {
        let catalog = Catalog::build(&Config::example()).expect("valid");
        assert_eq!(catalog.products.len(), 4);
        assert_eq!(catalog.licenses.len(), 1);
        assert!(constraints::is_arn(&catalog.licenses[0].arn));
    }

    #[test]
    fn rules_are_enforced_with_messages_naming_the_entry() {
        assert!(check("[task]\nregion = \"US East\"\n").contains("region"));
        assert!(check("[buyer]\naccount-id = \"123\"\n").contains("12 digits"));
        assert!(check(HOURLY_HEAD).contains("at least one [[product.key]]"));
        let bad_code = "[[product]]\nname = \"p\"\ncode = \"bad code\"\ntier = \"paid\"\npricing = \"custom\"\ndimensions = [\"d\"]\n";
        assert!(check(bad_code).contains("API pattern"));
        let no_dims =
            "[[product]]\nname = \"p\"\ncode = \"p\"\ntier = \"paid\"\npricing = \"custom\"\n";
        assert!(check(no_dims).contains("1 to 24 dimensions"));
        let no_sku =
            "[[product]]\nname = \"p\"\ncode = \"p\"\ntier = \"paid\"\npricing = \"contract\"\n";
        assert!(check(no_sku).contains("sku"));
        let bad_key =
            format!("{HOURLY_HEAD}[[product.key]]\nversion = 1\nprivate-key = \"nope\"\n");
        assert!(check(&bad_key).contains("version 1"));
        let zero = format!("{HOURLY_HEAD}[[product.key]]\nversion = 0\nprivate-key = \"nope\"\n");
        assert!(check(&zero).contains("start at 1"));
        let orphan = "[[subscription]]\nproduct = \"ghost\"\nstatus = \"subscribed\"\n";
        assert!(check(orphan).contains("ghost"));
    }

    #[test]
    fn entitlement_rules() {
        let head = "[[product]]\nname = \"c\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"contract\"\nsku = \"s\"\n\
                    [[license]]\nname = \"l\"\nsku = \"s\"\nbegin = 2026-01-01T00:00:00Z\n";
        let seats_without_max =
            format!("{head}[[license.entitlement]]\nname = \"Seats\"\nunit = \"Count\"\n");
        assert!(check(&seats_without_max).contains("max-count"));
        let feature_with_max = format!(
            "{head}[[license.entitlement]]\nname = \"F\"\nunit = \"None\"\nmax-count = 1\n"
        );
        assert!(check(&feature_with_max).contains("takes a value"));
        let wrong_sku = head.replace("sku = \"s\"\nbegin", "sku = \"other\"\nbegin");
        let wrong_sku =
            format!("{wrong_sku}[[license.entitlement]]\nname = \"F\"\nunit = \"None\"\n");
        assert!(check(&wrong_sku).contains("not the sku of any contract product"));
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
    fn derived_arns_are_stable_and_valid() {
        assert_eq!(derived_arn("x"), derived_arn("x"));
        assert_ne!(derived_arn("x"), derived_arn("y"));
        assert!(constraints::is_arn(&derived_arn("x")));
    }
}
