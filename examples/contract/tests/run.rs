//! The example takes one seat while it runs and returns it when main returns.

use marketgate_simulator::{CheckoutState, Config, Simulator};

#[tokio::test(flavor = "multi_thread")]
async fn checks_out_and_back_in() {
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let out = tokio::task::block_in_place(|| {
        sim.command(
            env!("CARGO_BIN_EXE_marketgate-example-contract"),
            "AKIDCONTRACTEX",
        )
        .output()
        .expect("run the example")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("dashboard: dashboard"), "{stdout}");
    assert!(stdout.contains("sso_login: ana signed in"), "{stdout}");
    assert!(
        stdout.contains("license: arn:aws:license-manager"),
        "{stdout}"
    );
    let checkouts = sim.licenses().checkouts;
    assert_eq!(checkouts.len(), 1);
    assert_eq!(checkouts[0].state, CheckoutState::CheckedIn);
}
