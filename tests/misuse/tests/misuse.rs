//! The misuse suite: each file in `cases/` holds one mistake a seller can
//! make, and its `.stderr` the one clear error it must produce.
//!
//! Regenerate expectations after an intended change with
//! `TRYBUILD=overwrite cargo test -p marketgate-misuse-tests`, then review
//! the diff.

use std::path::PathBuf;

/// Cases compiled against the manifest `manifests/<manifest>`.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "good.toml",
        &[
            "unknown_feature",
            "typo_suggestion",
            "unknown_dimension",
            "feature_not_a_string",
            "wrong_argument_syntax",
            "duplicate_argument",
            "unknown_argument",
            "const_fn",
            "returns_unit",
            "returns_plain_value",
            "error_without_from_denied",
            "quantity_wrong_type",
            "quantity_signed_or_float",
            "count_on_invalid",
            "async_main_without_runtime",
            "must_use_is_kept",
            "two_dimensions_in_one",
            "not_a_function",
            "item_does_not_parse",
            "entitlement_typo",
            "checkout_on_drawdown",
            "draw_on_floating",
            "draw_on_tier",
        ],
    ),
    ("does-not-exist.toml", &["manifest_missing"]),
    ("bad_code.toml", &["manifest_bad_code"]),
    ("duplicate_code.toml", &["manifest_duplicate_code"]),
    (
        "paid_hourly_without_key.toml",
        &["manifest_paid_hourly_without_key"],
    ),
    ("unparsable_key.toml", &["manifest_unparsable_key"]),
    ("unknown_key.toml", &["manifest_unknown_key"]),
    ("missing_tier.toml", &["manifest_missing_tier"]),
    (
        "max_unreported_out_of_range.toml",
        &["manifest_max_unreported_out_of_range"],
    ),
    (
        "max_unreported_malformed.toml",
        &["manifest_max_unreported_malformed"],
    ),
    (
        "max_unreported_without_dimensions.toml",
        &["manifest_max_unreported_without_dimensions"],
    ),
    (
        "counted_without_model.toml",
        &["manifest_counted_without_model"],
    ),
    (
        "drawdown_with_value.toml",
        &["manifest_drawdown_with_value"],
    ),
];

#[test]
fn every_misuse_is_one_clear_compile_error() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (manifest, cases) in GROUPS {
        // The macros read the manifest path from the environment of the
        // compiler that trybuild starts. This is the only test in this
        // binary, so nothing reads the environment concurrently.
        #[allow(unsafe_code)]
        // SAFETY: single-threaded use of the environment (see above).
        unsafe {
            std::env::set_var("MARKETGATE_MANIFEST", dir.join("manifests").join(manifest));
        }
        let t = trybuild::TestCases::new();
        for case in *cases {
            t.compile_fail(dir.join("cases").join(format!("{case}.rs")));
        }
        // Dropping runs the compiler for this group.
        drop(t);
    }
}
