//! The README's demo command: it must show what was verified, what was
//! denied and what was metered.

#[test]
fn the_demo_shows_verification_denials_and_metering() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketgate-demo"))
        .env_remove("MARKETGATE_PRODUCT_CODE")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "verified: product `community` (free hourly)",
        "export(\"q3\"): DENIED (feature `export` denied: the active product `community` is free",
        "verified: product `usage` (paid custom)",
        "AWS calls at start-up: MeterUsage Success, MeterUsage Success",
        "export(\"q3\"): q3.csv",
        "MeterUsage records AWS accepted from this run: none",
        "      api_calls = 3 (hour starting",
        "      gb_scanned = 4 (hour starting",
        "start-up REFUSED: MARKETGATE_PRODUCT_CODE=`prod-someone-elses-free-code` is not a product this binary trusts",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
}
