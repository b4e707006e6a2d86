//! Call sites compiled against another manifest are refused when a catalog
//! is installed (a test binary of its own: the foreign call sites linked in
//! here would poison every other test). And the catalog a build embeds is
//! the one `marketgate-sim check-manifest` shows for the same file.

use std::time::Duration;

use marketgate::testing;

#[test]
fn installing_a_catalog_checks_every_linked_call_site() {
    let _serial = testing::serial();
    // Referencing the function links the other crate's call sites in.
    let foreign: fn(u32) -> Result<u32, marketgate_renamed_tests::Refused> =
        marketgate_renamed_tests::export;
    let err = testing::activate(marketgate_tests::catalog(), "pro")
        .expect_err("a mismatched call site must be refused");
    let message = err.to_string();
    assert!(message.contains("tests/renamed/src/lib.rs"), "{message}");
    assert!(
        message.contains("was compiled with feature `export` as index 0"),
        "{message}"
    );
    // Nothing was granted: the foreign function is still denied.
    assert!(foreign(1).is_err());
}

/// `marketgate-sim check-manifest` reads the manifest with the macros' own code,
/// but decides which features are paid paths itself; the runtime decides it
/// from the embedded catalog. Both must agree, as must everything else the
/// check prints.
#[test]
fn the_manifest_check_describes_the_embedded_catalog() {
    let embedded = marketgate_tests::catalog();
    let path = std::path::Path::new(embedded.manifest_path());
    let checked = marketgate_manifest::read(path)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.messages.join("\n")));
    assert_eq!(checked.fingerprint, embedded.fingerprint());
    assert_eq!(checked.features, embedded.features());
    assert_eq!(checked.dimensions, embedded.dimensions());
    let codes: Vec<&str> = embedded
        .products()
        .iter()
        .map(marketgate::Product::code)
        .collect();
    assert_eq!(
        checked
            .products
            .iter()
            .map(|p| p.code.as_str())
            .collect::<Vec<_>>(),
        codes
    );
    for (checked, embedded) in checked.products.iter().zip(embedded.products()) {
        assert_eq!(
            Duration::from_secs(checked.max_unreported.into()),
            embedded.max_unreported(),
            "product `{}`",
            checked.name
        );
    }
    let mut paid = 0;
    for (index, feature) in checked.features.iter().enumerate() {
        let paid_here = checked.is_paid_feature(index);
        assert_eq!(
            paid_here,
            !embedded.free_features().contains(index),
            "feature `{feature}`: the check and the runtime disagree on whether it is paid"
        );
        paid += usize::from(paid_here);
    }
    // The tests' manifest has both kinds, so the comparison means something.
    assert!(
        paid > 0 && paid < checked.features.len(),
        "{paid} paid features"
    );
}

/// `max-unreported` reaches `Product::max_unreported()`: the renamed crate's
/// manifest sets it; a product without dimensions carries the default.
#[test]
fn max_unreported_is_embedded_per_product() {
    let set = marketgate_renamed_tests::catalog()
        .product_by_name("usage")
        .expect("the renamed crate's manifest has `usage`");
    assert_eq!(set.max_unreported(), Duration::from_mins(90));
    let defaulted = marketgate_tests::catalog()
        .product_by_name("pro")
        .expect("the tests' manifest has `pro`");
    assert_eq!(defaulted.max_unreported(), Duration::from_hours(2));
}
