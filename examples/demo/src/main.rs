//! The demo: starts the AWS Marketplace simulator in this process, then
//! runs the custom-metering example app (`examples/custom`) against it under
//! three deployments: the free listing, the paid listing, and a tampered one.
//! Everything stays on loopback; no AWS account is involved.

use std::time::Duration;

use marketgate::{Options, status};
use marketgate_example_custom::{catalog, workload};
use marketgate_simulator::{Config, Simulator};

fn options(sim: &Simulator, code: &str, task: &str) -> Options {
    Options::default()
        .product_code(code)
        .endpoint(sim.endpoint())
        .region(sim.region())
        .credentials(task, "demo-secret")
        .startup_timeout(Duration::from_secs(10))
        .handle_signals(false)
        // The metering journal of this demo run, not a system directory.
        .state_dir(std::env::temp_dir().join(format!("marketgate-demo-{}", std::process::id())))
}

async fn deploy(sim: &Simulator, title: &str, code: &str, task: &str) {
    println!("\n== {title}: MARKETGATE_PRODUCT_CODE={code}");
    let guard = match marketgate::start_with(catalog(), options(sim, code, task)).await {
        Ok(guard) => guard,
        Err(refusal) => {
            println!("   start-up REFUSED: {refusal}");
            return;
        }
    };
    let s = status();
    if let Some(p) = &s.product {
        println!(
            "   verified: product `{}` ({} {})",
            p.name, p.tier, p.pricing
        );
    }
    let calls: Vec<String> = sim
        .calls()
        .iter()
        .filter(|c| c.access_key_id.as_deref() == Some(task))
        .map(|c| format!("{} {:?}", c.operation, c.outcome))
        .collect();
    println!("   AWS calls at start-up: {}", calls.join(", "));
    println!(
        "   granted features: {:?}; meterable dimensions: {:?}",
        s.features, s.dimensions
    );
    for line in workload() {
        println!("   {line}");
    }
    guard.shutdown().await;
    let reported: Vec<String> = sim
        .usage()
        .iter()
        .filter(|r| r.access_key_id == task)
        .map(|r| {
            format!(
                "{} = {} (hour starting {})",
                r.dimension,
                r.quantity.as_whole().unwrap_or_default(),
                r.timestamp
            )
        })
        .collect();
    if reported.is_empty() {
        println!("   MeterUsage records AWS accepted from this run: none");
    } else {
        println!("   MeterUsage records AWS accepted from this run (flushed at shutdown):");
        for line in reported {
            println!("      {line}");
        }
    }
}

#[tokio::main]
async fn main() {
    let sim = match Simulator::start(Config::example()).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("cannot start the simulator: {e}");
            std::process::exit(1);
        }
    };
    println!("marketgate demo: examples/custom against the AWS Marketplace simulator");
    println!(
        "simulator listening on {} (Region {})",
        sim.endpoint(),
        sim.region()
    );
    println!(
        "catalog compiled into the app from {}:",
        catalog().manifest_path()
    );
    for p in catalog().products() {
        println!(
            "   {} = {} ({} {}), features {:?}, dimensions {:?}",
            p.name(),
            p.code(),
            p.tier(),
            p.pricing(),
            catalog().feature_names(p.features()).collect::<Vec<_>>(),
            catalog().dimension_names(p).collect::<Vec<_>>()
        );
    }

    deploy(
        &sim,
        "1. the free listing",
        "mgsim-community-free",
        "AKIDDEMOFREE",
    )
    .await;
    deploy(
        &sim,
        "2. the paid listing",
        "mgsim-usage-custom",
        "AKIDDEMOPAID",
    )
    .await;
    deploy(
        &sim,
        "3. a buyer swaps in another product's code",
        "prod-someone-elses-free-code",
        "AKIDDEMOTAMPER",
    )
    .await;
    sim.shutdown().await;
}
