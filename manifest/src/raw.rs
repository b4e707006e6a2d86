//! The TOML shapes of `Marketplace.toml`, as serde reads them: every value
//! keeps its span so that a message can point at it, every key is optional
//! so that validation can say what is missing, and unknown keys are errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    #[serde(default)]
    pub(crate) product: Vec<Spanned<RawProduct>>,
}

/// One `[[product]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawProduct {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) code: Option<Spanned<String>>,
    pub(crate) tier: Option<Spanned<String>>,
    pub(crate) pricing: Option<Spanned<String>>,
    pub(crate) features: Option<Vec<Spanned<String>>>,
    pub(crate) public_key: Option<Spanned<String>>,
    pub(crate) public_key_version: Option<Spanned<i64>>,
    pub(crate) dimensions: Option<Spanned<Vec<Spanned<String>>>>,
    /// Any TOML value, so that a bare number gets the key's own message.
    pub(crate) max_unreported: Option<Spanned<toml::Value>>,
    pub(crate) sku: Option<Spanned<String>>,
    pub(crate) key_fingerprint: Option<Spanned<String>>,
    pub(crate) entitlements: Option<RawEntitlements>,
}

/// `entitlements = { Name = ..., ... }`, by entitlement name.
pub(crate) type RawEntitlements = Spanned<BTreeMap<Spanned<String>, Spanned<RawEntitlement>>>;

/// `Name = ["feature", ...]` (a `Unit = None` entitlement) or
/// `Name = { unit = "Count", model = "floating", value = 1, features = [...] }`.
pub(crate) enum RawEntitlement {
    Features(Vec<Spanned<String>>),
    Table(RawEntitlementTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntitlementTable {
    pub(crate) unit: Spanned<String>,
    pub(crate) value: Option<Spanned<u64>>,
    pub(crate) model: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) features: Vec<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawEntitlement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntitlementVisitor;
        impl<'de> Visitor<'de> for EntitlementVisitor {
            type Value = RawEntitlement;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of feature names, or a table `{ unit = \"Count\", model = \"floating\", ... }`",
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
