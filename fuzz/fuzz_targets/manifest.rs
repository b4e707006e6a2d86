//! The `Marketplace.toml` validator (`marketgate_manifest::parse`) and the
//! key parser it reads `public-key` files with: nothing panics, and what is
//! accepted is a catalog the macros and the runtime can embed.
//!
//! The input is the manifest text. If it holds a line `#--- key`, what
//! follows is written to `keys/fuzz.pem` first, so that `public-key =
//! "keys/fuzz.pem"` reads fuzzed key contents (they are also given to
//! `keys::parse_rsa_spki_pem` directly). The manifest sits in a directory
//! that holds the repository's key files under `keys/` (`pro.pem`,
//! `community.pem`, `team.pem`, `garbage.pem`, and the manifest crate's
//! test keys `rsa2048.pem`, `rsa1024.pem`, `ec.pem`, `pkcs1.pem`).
//!
//! A refused manifest must come with messages that each point into the file.
//! An accepted one must:
//! - list every feature and dimension once, sorted, within the runtime's
//!   bitset and mask sizes, each used by a product, and every product index
//!   point into those lists;
//! - follow the pricing rules (keys only for hourly and monthly, and always
//!   for paid ones; dimensions and `max-unreported` only for custom; a
//!   license only for contracts, whose features are its own plus its
//!   entitlements');
//! - hold keys the runtime's verifier (aws-lc-rs PS256) accepts;
//! - round-trip: written back out as `Marketplace.toml` and parsed again, it
//!   gives the same catalog and the same fingerprint.

#![no_main]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256};
use libfuzzer_sys::fuzz_target;
use marketgate_manifest::keys::{PublicKey, parse_rsa_spki_pem};
use marketgate_manifest::{
    DEFAULT_MAX_UNREPORTED, MAX_FEATURES, MAX_MAX_UNREPORTED, MIN_MAX_UNREPORTED, Manifest,
    Pricing, Product, Tier, duration_name, pricing_name,
};
use toml::Value;

/// Where the key files are; the manifest is `DIR/Marketplace.toml` (never
/// written: `parse` takes its text).
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("marketgate-fuzz-manifest-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys")).expect("create the key directory");
    for (name, contents) in FIXED_KEYS {
        std::fs::write(dir.join(name), contents).expect("write a key file");
    }
    dir
});

const FIXED_KEYS: [(&str, &[u8]); 8] = [
    (
        "keys/pro.pem",
        include_bytes!("../../examples/tiers/keys/pro.pem"),
    ),
    (
        "keys/community.pem",
        include_bytes!("../../examples/tiers/keys/community.pem"),
    ),
    ("keys/team.pem", include_bytes!("../../docs/keys/team.pem")),
    (
        "keys/garbage.pem",
        include_bytes!("../../tests/misuse/manifests/keys/garbage.pem"),
    ),
    (
        "keys/rsa2048.pem",
        include_bytes!("../../manifest/testdata/rsa2048.pem"),
    ),
    (
        "keys/rsa1024.pem",
        include_bytes!("../../manifest/testdata/rsa1024.pem"),
    ),
    (
        "keys/ec.pem",
        include_bytes!("../../manifest/testdata/ec.pem"),
    ),
    (
        "keys/pkcs1.pem",
        include_bytes!("../../manifest/testdata/rsa2048-pkcs1.pem"),
    ),
];

const FUZZ_KEY: &str = "keys/fuzz.pem";
const KEY_SEPARATOR: &str = "\n#--- key\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (manifest, key) = match text.split_once(KEY_SEPARATOR) {
        Some((manifest, key)) => (manifest, Some(key)),
        None => (&*text, None),
    };
    let dir = &*DIR;
    let fuzz_key = dir.join(FUZZ_KEY);
    match key {
        Some(key) => {
            std::fs::write(&fuzz_key, key).expect("write the fuzzed key");
            if let Ok(parsed) = parse_rsa_spki_pem(key.as_bytes()) {
                check_key(&parsed);
            }
        }
        None => {
            let _ = std::fs::remove_file(&fuzz_key);
        }
    }
    let path = dir.join("Marketplace.toml");
    match marketgate_manifest::parse(&path, manifest) {
        Ok(m) => {
            check_catalog(&m);
            round_trip(&path, &m, key);
        }
        Err(e) => {
            assert!(!e.messages.is_empty(), "refused without a message");
            let prefix = format!("{}:", path.display());
            for message in &e.messages {
                assert!(
                    message.starts_with(&prefix),
                    "a message that does not point into the file: {message:?}"
                );
            }
        }
    }
});

fn check_key(key: &PublicKey) {
    assert!((2048..=8192).contains(&key.bits), "{} bits", key.bits);
    assert!(key.spki.ends_with(&key.rsa));
    // What `RegistrationKey::rsa_der` hands the runtime's verifier.
    if let Err(e) = ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &key.rsa) {
        panic!("the manifest accepts a key the runtime's PS256 verifier refuses: {e}");
    }
}

fn check_catalog(m: &Manifest) {
    let strictly_sorted = |names: &[String]| names.windows(2).all(|w| w[0] < w[1]);
    assert!(strictly_sorted(&m.features), "{:?}", m.features);
    assert!(strictly_sorted(&m.dimensions), "{:?}", m.dimensions);
    assert!(m.features.len() <= MAX_FEATURES);
    assert!(m.features.len() <= marketgate::MAX_FEATURES);
    assert!(m.dimensions.len() <= marketgate::MAX_DIMENSIONS);
    assert!(!m.products.is_empty());

    let mut used_features = BTreeSet::new();
    let mut used_dimensions = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for p in &m.products {
        assert!(names.insert(&p.name), "name {:?} twice", p.name);
        assert!(codes.insert(&p.code), "code {:?} twice", p.code);
        assert!(
            (1..=64).contains(&p.name.len())
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "name {:?}",
            p.name
        );
        assert!(
            (1..=255).contains(&p.code.len())
                && p.code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/=:_.@".contains(&b)),
            "code {:?}",
            p.code
        );
        assert!(p.features.iter().all(|&i| i < m.features.len()));
        assert!(p.dimensions.iter().all(|&i| i < m.dimensions.len()));
        used_features.extend(p.features.iter().copied());
        used_dimensions.extend(p.dimensions.iter().copied());
        check_pricing(p);
    }
    assert_eq!(
        used_features.len(),
        m.features.len(),
        "a feature no product grants: {:?}",
        m.features
    );
    assert_eq!(
        used_dimensions.len(),
        m.dimensions.len(),
        "a dimension no product meters: {:?}",
        m.dimensions
    );
    for (i, name) in m.features.iter().enumerate() {
        assert_eq!(m.feature_index(name), Some(i));
        assert!(valid_feature(name), "feature {name:?}");
    }
    for (i, name) in m.dimensions.iter().enumerate() {
        assert_eq!(m.dimension_index(name), Some(i));
        assert!(
            (1..=255).contains(&name.len())
                && !name.chars().any(char::is_control)
                && name.trim() == name,
            "dimension {name:?}"
        );
    }
}

fn valid_feature(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn check_pricing(p: &Product) {
    let registers = matches!(p.pricing, Pricing::Hourly | Pricing::Monthly);
    if p.tier == Tier::Free {
        assert!(registers, "a free {} product", pricing_name(p.pricing));
    }
    match &p.key {
        Some((version, key)) => {
            assert!(registers, "a key on a {} product", pricing_name(p.pricing));
            assert!((1..=0x7fff_ffff).contains(version), "key version {version}");
            check_key(key);
        }
        None => assert!(
            !registers || p.tier == Tier::Free,
            "a paid {} product without a key",
            pricing_name(p.pricing)
        ),
    }
    let default = u32::try_from(DEFAULT_MAX_UNREPORTED.as_secs()).expect("fits");
    if p.pricing == Pricing::Custom {
        assert!((1..=24).contains(&p.dimensions.len()));
        let secs = u64::from(p.max_unreported);
        assert!(
            (MIN_MAX_UNREPORTED.as_secs()..=MAX_MAX_UNREPORTED.as_secs()).contains(&secs)
                && secs % 60 == 0,
            "max-unreported {secs}s"
        );
    } else {
        assert!(p.dimensions.is_empty());
        assert_eq!(p.max_unreported, default);
    }
    match &p.license {
        Some(l) => {
            assert_eq!(p.pricing, Pricing::Contract);
            assert!(!l.sku.is_empty() && !l.sku.contains(char::is_whitespace));
            assert!(
                !l.key_fingerprint.is_empty() && !l.key_fingerprint.contains(char::is_whitespace)
            );
            assert!(!l.entitlements.is_empty());
            let mut all = l.base_features.clone();
            for e in &l.entitlements {
                assert!(
                    (1..=255).contains(&e.name.len()) && !e.name.chars().any(char::is_control),
                    "entitlement {:?}",
                    e.name
                );
                assert!(
                    e.unit == "None" || e.value.is_some(),
                    "{} without a value",
                    e.unit
                );
                if let Some(v) = &e.value {
                    assert!(v.parse::<u64>().is_ok(), "value {v:?}");
                }
                all.extend(e.features.iter().copied());
            }
            assert_eq!(
                all, p.features,
                "a contract's features are its own and its entitlements'"
            );
        }
        None => assert_ne!(p.pricing, Pricing::Contract),
    }
}

/// The manifest written back out, in the crate's own spelling.
fn render(m: &Manifest, key_files: &[(PathBuf, Vec<u8>)]) -> Option<String> {
    let s = |text: &str| Value::String(text.to_owned()).to_string();
    let list = |names: &mut dyn Iterator<Item = &String>| {
        let items: Vec<String> = names.map(|n| s(n)).collect();
        format!("[{}]", items.join(", "))
    };
    let features = |indices: &BTreeSet<usize>| list(&mut indices.iter().map(|&i| &m.features[i]));
    let mut out = String::new();
    for p in &m.products {
        let _ = writeln!(out, "[[product]]");
        let _ = writeln!(out, "name = {}", s(&p.name));
        let _ = writeln!(out, "code = {}", s(&p.code));
        let tier = match p.tier {
            Tier::Paid => "paid",
            Tier::Free => "free",
        };
        let _ = writeln!(out, "tier = {}", s(tier));
        let _ = writeln!(out, "pricing = {}", s(pricing_name(p.pricing)));
        let own = p.license.as_ref().map_or(&p.features, |l| &l.base_features);
        let _ = writeln!(out, "features = {}", features(own));
        if !p.dimensions.is_empty() {
            let dims = list(&mut p.dimensions.iter().map(|&i| &m.dimensions[i]));
            let _ = writeln!(out, "dimensions = {dims}");
            let _ = writeln!(
                out,
                "max-unreported = {}",
                s(&duration_name(u64::from(p.max_unreported)))
            );
        }
        if let Some((version, key)) = &p.key {
            // The model keeps the key, not its path: any file with that key.
            let (path, _) = key_files.iter().find(|(_, spki)| *spki == key.spki)?;
            let _ = writeln!(out, "public-key = {}", s(&path.to_string_lossy()));
            let _ = writeln!(out, "public-key-version = {version}");
        }
        if let Some(l) = &p.license {
            let _ = writeln!(out, "sku = {}", s(&l.sku));
            let _ = writeln!(out, "key-fingerprint = {}", s(&l.key_fingerprint));
            let entitlements: Vec<String> = l
                .entitlements
                .iter()
                .map(|e| {
                    let value = e
                        .value
                        .as_ref()
                        .map(|v| format!("value = {v}, "))
                        .unwrap_or_default();
                    format!(
                        "{} = {{ unit = {}, {value}features = {} }}",
                        s(&e.name),
                        s(&e.unit),
                        features(&e.features)
                    )
                })
                .collect();
            let _ = writeln!(out, "entitlements = {{ {} }}", entitlements.join(", "));
        }
        out.push('\n');
    }
    Some(out)
}

/// Every key file the manifest could have named, with its key.
fn key_files(dir: &Path, fuzzed: Option<&str>) -> Vec<(PathBuf, Vec<u8>)> {
    let fixed = FIXED_KEYS.iter().map(|(name, bytes)| (*name, *bytes));
    let fuzzed = fuzzed.map(|k| (FUZZ_KEY, k.as_bytes()));
    fixed
        .chain(fuzzed)
        .filter_map(|(name, bytes)| {
            let key = parse_rsa_spki_pem(bytes).ok()?;
            Some((dir.join(name), key.spki))
        })
        .collect()
}

fn round_trip(path: &Path, m: &Manifest, fuzzed_key: Option<&str>) {
    let dir = path.parent().expect("the manifest is in a directory");
    // A key read from elsewhere (an absolute or `..` path to some other PEM
    // file) cannot be named again; the other checks still ran.
    let Some(text) = render(m, &key_files(dir, fuzzed_key)) else {
        return;
    };
    let again = match marketgate_manifest::parse(path, &text) {
        Ok(again) => again,
        Err(e) => panic!(
            "an accepted manifest, written back out, is refused: {:#?}\n{text}",
            e.messages
        ),
    };
    assert_eq!(describe(m), describe(&again), "\n{text}");
    assert_eq!(m.fingerprint, again.fingerprint, "\n{text}");
}

/// Everything the catalog embeds, by name.
fn describe(m: &Manifest) -> String {
    let names = |all: &[String], set: &BTreeSet<usize>| -> Vec<String> {
        set.iter().map(|&i| all[i].clone()).collect()
    };
    let mut out = format!("features {:?}\ndimensions {:?}\n", m.features, m.dimensions);
    for p in &m.products {
        let _ = writeln!(
            out,
            "{:?} {:?} {:?} {:?} features {:?} dimensions {:?} max {}",
            p.name,
            p.code,
            p.tier,
            p.pricing,
            names(&m.features, &p.features),
            names(&m.dimensions, &p.dimensions),
            p.max_unreported
        );
        if let Some((version, key)) = &p.key {
            let _ = writeln!(out, "  key {version} {:?}", key.spki);
        }
        if let Some(l) = &p.license {
            let _ = writeln!(
                out,
                "  license {:?} {:?} {:?}",
                l.sku,
                l.key_fingerprint,
                names(&m.features, &l.base_features)
            );
            for e in &l.entitlements {
                let _ = writeln!(
                    out,
                    "  entitlement {:?} {:?} {:?} {:?}",
                    e.name,
                    e.unit,
                    e.value,
                    names(&m.features, &e.features)
                );
            }
        }
    }
    out
}
