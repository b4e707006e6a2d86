//! The catalog's fingerprint: the runtime compares the one compiled into
//! each call site with the embedded catalog's, so that code compiled against
//! another manifest is detected at start-up.

use std::fmt::Write as _;

use crate::model::Catalog;

/// FNV-1a over a canonical rendering of everything the catalog embeds, so
/// that formatting and comments in the manifest do not change it.
pub(crate) fn of(c: &Catalog) -> u64 {
    let mut canon = String::new();
    let _ = write!(
        canon,
        "features={:?};dimensions={:?};",
        c.features, c.dimensions
    );
    for p in &c.products {
        let _ = write!(
            canon,
            "product={:?},{:?},{:?},{:?},{:?},{:?},{};",
            p.name, p.code, p.tier, p.pricing, p.features, p.dimensions, p.max_unreported
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
                    "ent={:?},{:?},{:?},{:?},{:?};",
                    e.name,
                    e.unit,
                    e.value,
                    e.model.map(crate::model::UnitModel::name),
                    e.features
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
