//! Call sites compiled against another manifest are refused when a catalog
//! is installed (a test binary of its own: the foreign call sites linked in
//! here would poison every other test).

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
        message.contains("uses feature `export` as index 0"),
        "{message}"
    );
    // Nothing was granted: the foreign function is still denied.
    assert!(foreign(1).is_err());
}
