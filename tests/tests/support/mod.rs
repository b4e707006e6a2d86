//! Helpers shared by the integration tests. Each test binary declares
//! `mod support;` and uses the part it needs:
//!
//! - this module: the simulator configuration matching this crate's
//!   `Marketplace.toml`, per-test state directories, the lock that keeps
//!   tests sharing the process-wide runtime apart, and waiting on effects;
//! - [`standalone`]: seller crates built outside the workspace;
//! - [`tamper_proxy`]: a man in the middle on plain-HTTP loopback;
//! - [`fake_aws`]: a fake AWS behind TLS for the tamper suite.

// Shared by several test binaries; each uses a part of it.
#![allow(dead_code)]

pub(crate) mod fake_aws;
pub(crate) mod standalone;
pub(crate) mod tamper_proxy;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use marketgate_simulator::{CallRecord, Config, Simulator};

/// The simulator's example configuration, plus the extra dimension
/// (`gb-egress`) this crate's `Marketplace.toml` declares for `usage`.
pub(crate) fn config() -> Config {
    let mut config = Config::example();
    for product in &mut config.products {
        if product.name == "usage" {
            product.dimensions.push("gb-egress".to_owned());
        }
    }
    config
}

/// [`config`] on a frozen clock that starts at `start`: only the test moves
/// time, so hours pass instantly and exactly.
pub(crate) fn frozen_config(start: SystemTime) -> Config {
    let mut config = config();
    config.clock.start = Some(start);
    config.clock.frozen = true;
    config
}

/// A fresh, empty state directory `target/tests/<suite>/<name>-<pid>`.
pub(crate) fn state_dir(suite: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tests")
        .join(suite)
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The simulator's record of every call of `operation`, in order.
pub(crate) fn calls(sim: &Simulator, operation: &str) -> Vec<CallRecord> {
    sim.calls()
        .into_iter()
        .filter(|c| c.operation == operation)
        .collect()
}

/// Tests in one binary share the process-wide runtime state (and the crash
/// and signal suites' timing bounds assume an otherwise idle machine): one
/// at a time. Taking the lock also clears any state a `testing` override
/// left behind.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    marketgate::testing::deactivate();
    guard
}

/// Polls `done` every 20 ms until it holds; panics after 30 s with `what`
/// and the runtime's status. Background work is awaited by its effect, never
/// by a fixed sleep, so a slow machine only makes the test slower.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out waiting for {what}; status: {:#?}",
        marketgate::status()
    );
}

/// Options for an in-process runtime of the custom-metering product
/// `mgsim-usage-custom` against `sim`: its endpoint, Region and clock, the
/// task's access key, the state in `dir`, and timings short enough for tests.
pub(crate) fn usage_options(sim: &Simulator, task: &str, dir: &Path) -> marketgate::Options {
    let clock = sim.clock().clone();
    marketgate::Options::default()
        .product_code("mgsim-usage-custom")
        .endpoint(sim.endpoint())
        .region(sim.region())
        .credentials(task, "not-a-real-secret")
        .state_dir(dir)
        .checkpoint_interval(Duration::from_millis(20))
        .flush_budget(Duration::from_secs(20))
        .shutdown_timeout(Duration::from_secs(40))
        .call_timeout(Duration::from_secs(2))
        .handle_signals(false)
        .clock(move || clock.now())
}
