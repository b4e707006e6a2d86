//! The example against the simulator with its own configuration: it reads
//! the purchased users, runs two jobs of three on a pool of two, draws 200
//! GB, and leaves nothing checked out.

use marketgate_simulator::{CheckoutState, CheckoutType, Config, Simulator};

#[tokio::test(flavor = "multi_thread")]
async fn uses_each_contract_model() {
    let config =
        Config::from_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("simulator.toml"))
            .expect("examples/units/simulator.toml");
    let sim = Simulator::start(config).await.expect("simulator");
    let state = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tests/example-units")
        .join(std::process::id().to_string());
    let out = tokio::task::block_in_place(|| {
        sim.command(
            env!("CARGO_BIN_EXE_marketgate-example-units"),
            "AKIDUNITSEX",
        )
        .env("MARKETGATE_STATE_DIR", &state)
        .output()
        .expect("run the example")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("users: provisioning 50 accounts"),
        "{stdout}"
    );
    assert!(stdout.contains("reports: reports"), "{stdout}");
    assert_eq!(stdout.matches(" done").count(), 2, "{stdout}");
    assert!(
        stdout.contains("job: every unit in use, try later"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scanned 120 GB") && stdout.contains("scanned 80 GB"),
        "{stdout}"
    );
    let view = sim.licenses();
    let drawn: u64 = view
        .checkouts
        .iter()
        .filter(|c| c.checkout_type == CheckoutType::Perpetual)
        .flat_map(|c| &c.entitlements)
        .filter(|e| e.name == "Scans")
        .map(|e| e.count)
        .sum();
    assert_eq!(drawn, 200, "{view:?}");
    // The jobs' units and the process's lease went back to the pool.
    assert!(
        view.checkouts
            .iter()
            .filter(|c| c.checkout_type == CheckoutType::Provisional)
            .all(|c| c.state == CheckoutState::CheckedIn),
        "{view:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
