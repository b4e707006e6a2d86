//! The cost of closing an hour with 24 dimensions: checkpoint, journal,
//! 24 `MeterUsage` calls through the AWS SDK to the simulator on loopback,
//! and their confirmations. An absolute time (it is mostly HTTP round
//! trips), measured on the simulator's clock so hours pass instantly.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use marketgate::Options;
use marketgate_simulator::{
    Config, Pricing, ProductConfig, Simulator, Subscription, SubscriptionConfig, Tier,
};

fn config() -> Config {
    let mut config = Config::example();
    config.products.push(ProductConfig {
        name: "wide".to_owned(),
        code: "bench-wide-custom".to_owned(),
        tier: Tier::Paid,
        pricing: Pricing::Custom,
        dimensions: (1..=24).map(|i| format!("d{i:02}")).collect(),
        sku: None,
        keys: Vec::new(),
    });
    config.subscriptions.push(SubscriptionConfig {
        product: "wide".to_owned(),
        status: Subscription::Subscribed,
    });
    config.clock.frozen = true;
    config
}

fn checkpoints() -> u64 {
    marketgate::status().metering.map_or(0, |m| m.checkpoints)
}

fn flush(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sim = runtime
        .block_on(Simulator::start(config()))
        .expect("simulator");
    let clock = sim.clock().clone();
    let dir = std::env::temp_dir().join(format!("marketgate-bench-flush-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = Options::default()
        .product_code("bench-wide-custom")
        .endpoint(sim.endpoint())
        .region(sim.region())
        .credentials("AKIDBENCHFLUSH", "bench")
        .state_dir(&dir)
        .checkpoint_interval(Duration::from_millis(1))
        .handle_signals(false)
        .clock(move || clock.now());
    let guard = runtime
        .block_on(marketgate::start_with(marketgate::catalog!(), options))
        .expect("verified");
    let dimensions: Vec<String> = (1..=24).map(|i| format!("d{i:02}")).collect();
    c.bench_function("hour_flush_24_dimensions", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for d in &dimensions {
                    marketgate::record_tagged_usage(d, 1, [("bench", "flush")]).expect("granted");
                }
                // Let a checkpoint take the usage into this hour.
                let seen = checkpoints();
                while checkpoints() < seen + 2 {
                    std::thread::sleep(Duration::from_micros(100));
                }
                let before = sim.usage().len();
                let start = Instant::now();
                sim.clock().advance(Duration::from_hours(1));
                while sim.usage().len() < before + 24 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += start.elapsed();
            }
            total
        });
    });
    runtime.block_on(guard.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = flush
}
criterion_main!(benches);
