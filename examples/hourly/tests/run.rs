//! The example against the simulator: verified when subscribed, refused
//! (before its body runs) when not.

use marketgate_simulator::{Config, Simulator, Subscription};

fn run(sim: &Simulator, task: &str) -> std::process::Output {
    tokio::task::block_in_place(|| {
        sim.command(env!("CARGO_BIN_EXE_marketgate-example-hourly"), task)
            .env(
                "MARKETGATE_STATE_DIR",
                std::env::temp_dir().join(format!("marketgate-{task}-{}", std::process::id())),
            )
            .output()
            .expect("run the example")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_when_registered_and_refuses_when_not_subscribed() {
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let out = run(&sim, "AKIDHOURLYEX");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "monthly_report: report for 2026-11",
            "export_csv: 42 rows exported"
        ]
    );

    sim.set_subscription("pro", Subscription::Never)
        .expect("unsubscribe");
    let out = run(&sim, "AKIDHOURLYEX2");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "main's body must not run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not subscribed"));
}
