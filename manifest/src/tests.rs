//! What `parse` accepts and refuses, end to end: the rules, the messages'
//! positions, index assignment, `max-unreported` and the fingerprint.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{parse, read_cached};
use crate::model::{
    DEFAULT_MAX_UNREPORTED, Entitlement, FILE_NAME, MARKETPLACE_KEY_FINGERPRINT, Manifest,
    UnitModel,
};

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
        check("[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"monthly\"\n")
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
        entitlements = { ProEdition = ["export", "sso"], Seats = { unit = "Count", model = "floating", value = 1, features = ["seat"] } }
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
    assert_eq!(l.entitlements[1].model, Some(UnitModel::Floating));
    assert!(l.entitlements.iter().all(Entitlement::held_by_process));
}

/// A contract product whose `entitlements` table is `ents`.
fn contract(ents: &str) -> String {
    format!(
        "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"contract\"\n\
         sku = \"s\"\nentitlements = {{ {ents} }}\n"
    )
}

#[test]
fn counted_entitlements_declare_floating_or_drawdown() {
    let m = check(&contract(
        "Tier = [\"pro\"], Jobs = { unit = \"Count\", model = \"floating\" }, \
         Scans = { unit = \"Gigabytes\", model = \"drawdown\" }",
    ))
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let l = m.products[0].license.as_ref().unwrap();
    let by = |n: &str| l.entitlements.iter().find(|e| e.name == n).unwrap();
    assert_eq!(by("Tier").model, None);
    assert_eq!(by("Jobs").model, Some(UnitModel::Floating));
    assert_eq!(by("Scans").model, Some(UnitModel::Drawdown));
    assert_eq!(by("Scans").unit, "Gigabytes");
    assert!(by("Tier").held_by_process());
    assert!(!by("Jobs").held_by_process());
    assert!(!by("Scans").held_by_process());
    assert_eq!(
        m.entitlement("Jobs").map(|(p, _)| p.name.as_str()),
        Some("a")
    );
    assert_eq!(m.entitlement_names(), ["Jobs", "Scans", "Tier"]);

    // Each rule, with the message that names the fix.
    for (ents, says) in [
        (
            "Seats = { unit = \"Count\", value = 1 }",
            "needs `model = \"floating\" or \"drawdown\"`",
        ),
        (
            "T = [], Seats = { unit = \"Count\", model = \"borrowed\" }",
            "has `model = \"borrowed\"`; use \"floating\" or \"drawdown\"",
        ),
        (
            "T = { unit = \"None\", model = \"floating\" }",
            "only counted units have a `model`",
        ),
        (
            "T = [], Scans = { unit = \"Count\", model = \"drawdown\", value = 5 }",
            "is `drawdown`: its units are drawn as they are used",
        ),
        (
            "T = [], Jobs = { unit = \"Count\", model = \"floating\", value = 0 }",
            "asks for `value = 0`",
        ),
        (
            "T = [], Jobs = { unit = \"Count\", model = \"floating\", features = [\"x\"] }",
            "cannot unlock features for the whole process",
        ),
        (
            "Scans = { unit = \"Count\", model = \"drawdown\" }",
            "needs one entitlement the process checks out at start-up",
        ),
    ] {
        let e = one_error(&contract(ents));
        assert!(e.contains(says), "{ents}: {e}");
    }
}

#[test]
fn one_entitlement_name_has_one_model_in_every_product() {
    let two = |a: &str, b: &str| {
        format!(
            "[[product]]\nname = \"a\"\ncode = \"c1\"\ntier = \"paid\"\npricing = \"contract\"\n\
             sku = \"s1\"\nentitlements = {{ T = [], U = {a} }}\n\
             [[product]]\nname = \"b\"\ncode = \"c2\"\ntier = \"paid\"\npricing = \"contract\"\n\
             sku = \"s2\"\nentitlements = {{ T = [], U = {b} }}\n"
        )
    };
    let floating = "{ unit = \"Count\", model = \"floating\" }";
    let drawdown = "{ unit = \"Count\", model = \"drawdown\" }";
    check(&two(floating, floating)).unwrap_or_else(|e| panic!("{e:#?}"));
    let e = one_error(&two(floating, drawdown));
    assert!(
        e.contains("entitlement `U` is `floating` in product `a` but `drawdown` in product `b`"),
        "{e}"
    );
}

#[test]
fn the_model_is_part_of_the_fingerprint() {
    let f = |model: &str| {
        check(&contract(&format!(
            "T = [], U = {{ unit = \"Count\", model = \"{model}\" }}"
        )))
        .unwrap()
        .fingerprint
    };
    assert_ne!(f("floating"), f("drawdown"));
}

#[test]
fn fingerprint_changes_with_content_and_not_with_formatting() {
    let a = check("[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\nfeatures = [\"x\"]\n").unwrap();
    let b = check("[[product]]\nname=\"a\"\ncode=\"c\"\ntier=\"free\"\npricing=\"hourly\"\nfeatures=[\"x\"] # same\n").unwrap();
    let c = check("[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"hourly\"\nfeatures = [\"y\"]\n").unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, c.fingerprint);
}

/// A custom-pricing product with `max-unreported = <value>` (TOML, so a
/// string needs its quotes), and a free hourly one that meters nothing.
fn with_max_unreported(value: &str) -> String {
    format!(
        "[[product]]\nname = \"usage\"\ncode = \"c1\"\ntier = \"paid\"\npricing = \"custom\"\n\
         dimensions = [\"api_calls\"]\nmax-unreported = {value}\n\
         [[product]]\nname = \"community\"\ncode = \"c2\"\ntier = \"free\"\npricing = \"hourly\"\n"
    )
}

#[test]
fn max_unreported_is_whole_minutes_or_hours_from_15m_to_6h() {
    for (value, seconds) in [
        ("\"15m\"", 15 * 60),
        ("\"90m\"", 90 * 60),
        ("\"2h\"", 2 * 3600),
        ("\"6h\"", 6 * 3600),
        ("\"360m\"", 6 * 3600),
    ] {
        let m = check(&with_max_unreported(value)).unwrap_or_else(|e| panic!("{value}: {e:#?}"));
        assert_eq!(m.products[0].max_unreported, seconds, "{value}");
        // A product that meters nothing carries the default.
        assert_eq!(m.products[1].max_unreported, 7200, "{value}");
    }
}

#[test]
fn max_unreported_defaults_to_two_hours() {
    assert_eq!(DEFAULT_MAX_UNREPORTED, Duration::from_hours(2));
    let m = check(
        "[[product]]\nname = \"usage\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"custom\"\n\
         dimensions = [\"api_calls\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(m.products[0].max_unreported, 7200);
}

#[test]
fn max_unreported_out_of_range_is_an_error_at_the_value() {
    for value in ["0m", "14m", "7h", "361m", "99999999999999999999999h"] {
        let e = one_error(&with_max_unreported(&format!("\"{value}\"")));
        assert!(
            e.starts_with(&format!(
                "/m/Marketplace.toml:7:18: product `usage`: `max-unreported` must be between \
                 15m and 6h, got \"{value}\"; "
            )),
            "{e}"
        );
    }
    assert!(one_error(&with_max_unreported("\"7h\"")).ends_with("more than 6 hours old"));
    assert!(one_error(&with_max_unreported("\"14m\"")).ends_with("throttling storm"));
}

#[test]
fn max_unreported_must_be_a_number_of_m_or_h() {
    for (value, shown) in [
        ("\"2 hours\"", "\"2 hours\""),
        ("\"2H\"", "\"2H\""),
        ("\"1.5h\"", "\"1.5h\""),
        ("\"\"", "\"\""),
        ("\"-1h\"", "\"-1h\""),
        ("\"+2h\"", "\"+2h\""),
        ("\"h\"", "\"h\""),
        ("\"7200s\"", "\"7200s\""),
        ("\"7200\"", "\"7200\""),
        ("\" 2h\"", "\" 2h\""),
        ("120", "120"),
        ("1.5", "1.5"),
    ] {
        let e = one_error(&with_max_unreported(value));
        assert_eq!(
            e,
            format!(
                "/m/Marketplace.toml:7:18: product `usage`: `max-unreported` must be a whole \
                 number of minutes or hours such as \"90m\" or \"2h\", got {shown}"
            ),
            "{value}"
        );
    }
}

#[test]
fn max_unreported_is_only_for_products_with_dimensions() {
    for pricing in ["hourly", "monthly"] {
        let e = one_error(&format!(
            "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"free\"\npricing = \"{pricing}\"\n\
             max-unreported = \"2h\"\n"
        ));
        assert_eq!(
            e,
            format!(
                "/m/Marketplace.toml:6:18: product `a`: `max-unreported` applies only to products \
                 with `dimensions` (`pricing = \"custom\"`); `pricing = \"{pricing}\"` meters \
                 no usage, so remove it"
            )
        );
    }
    let e = one_error(
        "[[product]]\nname = \"a\"\ncode = \"c\"\ntier = \"paid\"\npricing = \"contract\"\nsku = \"s\"\n\
         entitlements = { Pro = [\"x\"] }\nmax-unreported = \"2h\"\n",
    );
    assert!(
        e.contains("`max-unreported` applies only to products with"),
        "{e}"
    );
}

#[test]
fn fingerprint_covers_max_unreported() {
    let default = check(&with_max_unreported("\"2h\"")).unwrap();
    let same = check(&with_max_unreported("\"120m\"")).unwrap();
    let longer = check(&with_max_unreported("\"3h\"")).unwrap();
    assert_eq!(default.fingerprint, same.fingerprint);
    assert_ne!(default.fingerprint, longer.fingerprint);
}

/// `read_cached` parses once while the files are unchanged, and afresh as
/// soon as the manifest or a key file it names changes, appears or goes.
#[test]
fn the_cached_manifest_follows_every_file_it_was_read_from() {
    let dir =
        std::env::temp_dir().join(format!("marketgate-manifest-cache-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let manifest = dir.join(FILE_NAME);
    let key = dir.join("keys/pro.pem");
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let text = |features: &str| {
        format!(
            "[[product]]\nname = \"pro\"\ncode = \"prod-cache-test\"\ntier = \"paid\"\n\
             pricing = \"hourly\"\npublic-key = \"keys/pro.pem\"\npublic-key-version = 1\n\
             features = [{features}]\n"
        )
    };
    std::fs::write(&manifest, text("\"a\"")).unwrap();
    std::fs::copy(testdata.join("rsa2048.pem"), &key).unwrap();

    let first = read_cached(&manifest).map_err(|e| e.messages).unwrap();
    let again = read_cached(&manifest).map_err(|e| e.messages).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "unchanged files are parsed once"
    );

    // The manifest changes: parsed again.
    std::fs::write(&manifest, text("\"a\", \"b\"")).unwrap();
    let edited = read_cached(&manifest).map_err(|e| e.messages).unwrap();
    assert_eq!(edited.features, ["a", "b"]);

    // A key file changes: parsed again, and its problem reported.
    std::fs::copy(testdata.join("rsa1024.pem"), &key).unwrap();
    let weak = read_cached(&manifest)
        .err()
        .map(|e| e.messages)
        .unwrap_or_default();
    assert!(weak.iter().any(|m| m.contains("keys/pro.pem")), "{weak:?}");
    assert_eq!(read_cached(&manifest).err().map(|e| e.messages), Some(weak));

    // The key file goes, then comes back.
    std::fs::remove_file(&key).unwrap();
    let missing = read_cached(&manifest)
        .err()
        .map(|e| e.messages)
        .unwrap_or_default();
    assert!(
        missing.iter().any(|m| m.contains("cannot read")),
        "{missing:?}"
    );
    std::fs::copy(testdata.join("rsa2048.pem"), &key).unwrap();
    let back = read_cached(&manifest).map_err(|e| e.messages).unwrap();
    assert_eq!(back.fingerprint, edited.fingerprint);
    std::fs::remove_dir_all(&dir).unwrap();
}
