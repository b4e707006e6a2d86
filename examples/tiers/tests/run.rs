//! The same binary under the paid and the free listing's code.

use marketgate_simulator::{Config, Simulator};

fn run(sim: &Simulator, task: &str, code: &str) -> String {
    let out = tokio::task::block_in_place(|| {
        sim.command(env!("CARGO_BIN_EXE_marketgate-example-tiers"), task)
            .env(
                "MARKETGATE_STATE_DIR",
                std::env::temp_dir().join(format!("marketgate-{task}-{}", std::process::id())),
            )
            .env("MARKETGATE_PRODUCT_CODE", code)
            .output()
            .expect("run the example")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_product_code_picks_the_tier() {
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let pro = run(&sim, "AKIDTIERSPRO", "mgsim-pro-hourly");
    assert!(pro.contains("running as: pro"), "{pro}");
    assert!(pro.contains("export_to_sso_share: q3 shared"), "{pro}");
    let free = run(&sim, "AKIDTIERSFREE", "mgsim-community-free");
    assert!(free.contains("running as: community"), "{free}");
    assert!(free.contains("search: 4"), "{free}");
    assert!(free.contains("export_to_sso_share: DENIED"), "{free}");
}
