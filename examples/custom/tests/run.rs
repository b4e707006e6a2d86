//! The example under its paid (custom) and free codes, against the simulator.

use marketgate_simulator::{Config, Simulator};

fn run(sim: &Simulator, task: &str, code: &str) -> Vec<String> {
    let out = tokio::task::block_in_place(|| {
        sim.command(env!("CARGO_BIN_EXE_marketgate-example-custom"), task)
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
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn paid_code_runs_everything_free_code_only_free_features() {
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let paid = run(&sim, "AKIDCUSTOMEX", "mgsim-usage-custom");
    assert!(paid.iter().all(|l| !l.contains("DENIED")), "{paid:#?}");
    assert_eq!(paid.len(), 6);
    // Start-up dry runs record nothing; at exit the run's usage is reported.
    let mut usage: Vec<(String, Option<u64>)> = sim
        .usage()
        .iter()
        .filter(|r| r.access_key_id == "AKIDCUSTOMEX")
        .map(|r| (r.dimension.clone(), r.quantity.as_whole()))
        .collect();
    usage.sort();
    assert_eq!(
        usage,
        [
            ("api_calls".to_owned(), Some(3)),
            ("gb_scanned".to_owned(), Some(4))
        ]
    );

    let free = run(&sim, "AKIDCUSTOMEX2", "mgsim-community-free");
    assert_eq!(free[0], "search(\"rust\"): result for rust");
    assert!(free[1].starts_with("export(\"q3\"): DENIED"), "{free:#?}");
    assert!(
        free[1].contains("is free and `export` is a paid feature"),
        "{free:#?}"
    );
    assert!(free[2..].iter().all(|l| l.contains("DENIED")), "{free:#?}");
}
