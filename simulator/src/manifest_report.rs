//! `marketgate-sim check-manifest [PATH]`: validate a seller's `Marketplace.toml`
//! with the same code the macros use, and show the catalog it compiles to,
//! so the product list can be reviewed before a build.

use std::fmt::Write as _;
use std::path::Path;

use marketgate_manifest::{Manifest, Pricing, Product, Tier, duration_name, pricing_name};

/// Validates the manifest at `path` and renders the catalog, or every
/// problem found (the same messages a build would give).
pub(crate) fn check(path: &Path) -> Result<String, String> {
    let manifest = marketgate_manifest::read(path).map_err(|e| e.messages.join("\n"))?;
    Ok(render(&manifest))
}

fn names(all: &[String], indices: impl IntoIterator<Item = usize>) -> String {
    let list: Vec<&str> = indices.into_iter().map(|i| all[i].as_str()).collect();
    if list.is_empty() {
        "(none)".to_owned()
    } else {
        list.join(", ")
    }
}

fn tier(t: Tier) -> &'static str {
    match t {
        Tier::Paid => "paid",
        Tier::Free => "free",
    }
}

fn verification(p: &Product, m: &Manifest) -> String {
    match (p.pricing, &p.key, &p.license) {
        (Pricing::Hourly | Pricing::Monthly, Some((version, key)), _) => format!(
            "RegisterUsage, signature checked against key version {version} (RSA {} bits)",
            key.bits
        ),
        (Pricing::Hourly | Pricing::Monthly, None, _) => {
            "RegisterUsage (free product: no key, so only its free features)".to_owned()
        }
        (Pricing::Custom, ..) => format!(
            "MeterUsage dry run of {}",
            names(&m.dimensions, p.dimensions.iter().copied())
        ),
        (Pricing::Contract, _, Some(l)) => {
            format!(
                "CheckoutLicense of SKU {} from issuer {}",
                l.sku, l.key_fingerprint
            )
        }
        (Pricing::Contract, _, None) => "CheckoutLicense".to_owned(),
    }
}

fn render(m: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: valid. The catalog #[marketgate::main] will embed:",
        m.display_path()
    );
    let _ = writeln!(
        out,
        "\nproducts ({}; MARKETGATE_PRODUCT_CODE picks one{}):",
        m.products.len(),
        if m.products.len() == 1 {
            ", default: the only one"
        } else {
            ""
        }
    );
    render_products(m, &mut out);
    render_indices(m, &mut out);
    let _ = writeln!(
        out,
        "\nfingerprint {:#018x}: binaries and libraries compiled against another manifest \
         are refused at start-up.",
        m.fingerprint
    );
    out
}

fn render_products(m: &Manifest, out: &mut String) {
    let name_width = m.products.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let code_width = m.products.iter().map(|p| p.code.len()).max().unwrap_or(0);
    for p in &m.products {
        let _ = writeln!(
            out,
            "  {:name_width$}  {:code_width$}  {}  {}",
            p.name,
            p.code,
            tier(p.tier),
            pricing_name(p.pricing)
        );
        let indent = " ".repeat(name_width + 4);
        let _ = writeln!(out, "{indent}verified by: {}", verification(p, m));
        match &p.license {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "{indent}with any license: {}",
                    names(&m.features, l.base_features.iter().copied())
                );
                for e in &l.entitlements {
                    let value = e
                        .value
                        .as_ref()
                        .map(|v| format!(", value {v}"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{indent}entitlement {} (unit {}{value}): {}",
                        e.name,
                        e.unit,
                        names(&m.features, e.features.iter().copied())
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "{indent}features: {}",
                    names(&m.features, p.features.iter().copied())
                );
            }
        }
        if !p.dimensions.is_empty() {
            let _ = writeln!(
                out,
                "{indent}dimensions: {}",
                names(&m.dimensions, p.dimensions.iter().copied())
            );
            let _ = writeln!(
                out,
                "{indent}max unreported: {}, then #[metered] calls are denied",
                duration_name(u64::from(p.max_unreported))
            );
        }
    }
}

fn render_indices(m: &Manifest, out: &mut String) {
    let granted_by = |pred: &dyn Fn(&Product) -> bool| -> String {
        let list: Vec<&str> = m
            .products
            .iter()
            .filter(|p| pred(p))
            .map(|p| p.name.as_str())
            .collect();
        list.join(", ")
    };
    let feature_width = m.features.iter().map(String::len).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\nfeatures ({}; a paid path runs only under a verified paid product):",
        m.features.len()
    );
    for (i, f) in m.features.iter().enumerate() {
        let kind = if m.is_paid_feature(i) {
            "paid path"
        } else {
            "free     "
        };
        let _ = writeln!(
            out,
            "  {f:feature_width$}  {kind}  granted by {}",
            granted_by(&|p| p.features.contains(&i))
        );
    }
    if !m.dimensions.is_empty() {
        let dim_width = m.dimensions.iter().map(String::len).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "\ndimensions ({}; every #[metered] call is a paid path):",
            m.dimensions.len()
        );
        for (i, d) in m.dimensions.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {d:dim_width$}  metered by {}",
                granted_by(&|p| p.dimensions.contains(&i))
            );
        }
    }
}
