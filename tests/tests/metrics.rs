//! The runtime's metrics (marketgate's `metrics` feature) against the
//! simulator, on its frozen clock: units recorded and reported per
//! dimension, AWS calls by outcome, and the age of the oldest unreported
//! unit while AWS cannot be reached (docs/operations.md lists every metric).
//!
//! A process has one global recorder: this binary installs its own, once,
//! and every test reads it. It is a plain registry read without resetting
//! (the debugging recorder's snapshot zeroes what it reads), so a test
//! compares values before and after what it does. The runtime publishes
//! every checkpoint interval, from its own thread: tests wait for a value
//! with `eventually`, never for a fixed time.

// The gauges read here hold whole numbers (seconds, records, 0/1 flags),
// set exactly: comparing them exactly is the point.
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use marketgate::{Denied, Guard, metered, status};
use marketgate_simulator::{Fault, Operation, Simulator, Trigger};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

mod support;

use support::{eventually, frozen_config, serial};

/// 2026-11-26T10:00:00Z, an hour start.
const H0: u64 = 1_795_687_200;
const HOUR: Duration = Duration::from_hours(1);

#[metered(gb_scanned, quantity = units)]
fn scan(units: u64) -> Result<(), Denied> {
    Ok(())
}

#[metered(api_calls)]
fn call() -> Result<(), Denied> {
    Ok(())
}

// ---- the recorder ----------------------------------------------------------

type Store = Registry<Key, AtomicStorage>;

/// The process's recorder: a registry the tests read.
struct Reader(&'static Store);

impl Recorder for Reader {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// The registry, installed as the global recorder at the first call.
fn store() -> &'static Store {
    static STORE: OnceLock<&'static Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let store: &'static Store = Box::leak(Box::new(Registry::atomic()));
        metrics::set_global_recorder(Reader(store)).expect("the only recorder of this process");
        store
    })
}

fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    let mut got: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    let mut want = labels.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    key.name() == name && got == want
}

/// A counter's value (0 before it exists).
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    store()
        .get_counter_handles()
        .into_iter()
        .find(|(k, _)| matches(k, name, labels))
        .map_or(0, |(_, c)| c.load(std::sync::atomic::Ordering::Acquire))
}

/// A gauge's value, if it was ever set.
fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    store()
        .get_gauge_handles()
        .into_iter()
        .find(|(k, _)| matches(k, name, labels))
        .map(|(_, g)| f64::from_bits(g.load(std::sync::atomic::Ordering::Acquire)))
}

/// Whether a histogram with these labels exists (something was observed).
fn histogram_exists(name: &str, labels: &[(&str, &str)]) -> bool {
    store()
        .get_histogram_handles()
        .keys()
        .any(|k| matches(k, name, labels))
}

fn recorded(dimension: &str) -> u64 {
    counter(
        "marketgate_metering_recorded_units_total",
        &[("dimension", dimension)],
    )
}

fn reported(dimension: &str) -> u64 {
    counter(
        "marketgate_metering_reported_units_total",
        &[("dimension", dimension)],
    )
}

fn meter_calls(outcome: &str) -> u64 {
    counter(
        "marketgate_aws_calls_total",
        &[("operation", "MeterUsage"), ("outcome", outcome)],
    )
}

fn oldest_age() -> f64 {
    gauge("marketgate_metering_oldest_unreported_age_seconds", &[]).unwrap_or(-1.0)
}

// ---- the runtime -----------------------------------------------------------

/// Five minutes into H0, frozen: only the tests move time.
async fn simulator() -> Simulator {
    let config = frozen_config(UNIX_EPOCH + Duration::from_secs(H0 + 300));
    Simulator::start(config).await.expect("simulator")
}

async fn start(sim: &Simulator, task: &str, dir: &Path) -> Guard {
    let options = support::usage_options(sim, task, dir);
    let guard = marketgate::start_with(marketgate_tests::catalog(), options)
        .await
        .expect("verified");
    // The first publication of this run: from here on, what start-up did
    // (its dry runs) is in the values a test takes as its baseline.
    eventually("the running state published", || {
        gauge("marketgate_runtime_state", &[("state", "running")]) == Some(1.0)
    })
    .await;
    guard
}

/// Moves the simulated clock one hour on, after a checkpoint has certainly
/// started since this call.
async fn next_hour(sim: &Simulator) {
    let seen = status().metering.map_or(0, |m| m.checkpoints);
    eventually("a checkpoint", || {
        status().metering.is_some_and(|m| m.checkpoints >= seen + 2)
    })
    .await;
    sim.clock().advance(HOUR);
}

/// Units per dimension the simulator accepted from `task` (dry runs are
/// not records).
fn accepted(sim: &Simulator, task: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in sim.usage().into_iter().filter(|r| r.access_key_id == task) {
        *out.entry(r.dimension.clone()).or_default() +=
            r.quantity.as_whole().expect("a whole quantity");
    }
    out
}

// ---- the tests -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn units_recorded_and_reported_are_counted_per_dimension() {
    const TASK: &str = "AKIDMETRICSUNITS";
    let _serial = serial().await;
    store();
    let before = [
        recorded("api_calls"),
        reported("api_calls"),
        recorded("gb_scanned"),
        reported("gb_scanned"),
    ];
    let ok_calls = meter_calls("ok");
    let sim = simulator().await;
    let dir = support::state_dir("metrics", "units");
    let guard = start(&sim, TASK, &dir).await;
    assert!(
        gauge("marketgate_startup_verification_duration_seconds", &[]).is_some_and(|s| s >= 0.0),
        "the start-up verification's duration is published"
    );
    for _ in 0..3 {
        call().expect("granted");
    }
    scan(7).expect("granted");
    eventually("the units counted as recorded", || {
        [recorded("api_calls"), recorded("gb_scanned")] == [before[0] + 3, before[2] + 7]
    })
    .await;
    // Recorded in the open hour: nothing is reported before it ends.
    assert_eq!(
        [reported("api_calls"), reported("gb_scanned")],
        [before[1], before[3]]
    );
    next_hour(&sim).await;
    eventually("the hour reported", || accepted(&sim, TASK).len() == 2).await;
    let billed = accepted(&sim, TASK);
    eventually("the reported units published", || {
        [reported("api_calls"), reported("gb_scanned")] == [before[1] + 3, before[3] + 7]
    })
    .await;
    assert_eq!(
        [
            reported("api_calls") - before[1],
            reported("gb_scanned") - before[3]
        ],
        [billed["api_calls"], billed["gb_scanned"]],
        "the reported counters say what AWS billed"
    );
    // Two records, plus the start-up dry runs of three dimensions.
    assert!(meter_calls("ok") >= ok_calls + 5, "{}", meter_calls("ok"));
    assert!(histogram_exists(
        "marketgate_aws_call_duration_seconds",
        &[("operation", "MeterUsage"), ("outcome", "ok")]
    ));
    guard.shutdown().await;
    assert_eq!(
        gauge("marketgate_runtime_state", &[("state", "stopped")]),
        Some(1.0),
        "published when the runtime stops"
    );
    assert_eq!(
        gauge("marketgate_runtime_state", &[("state", "running")]),
        Some(0.0)
    );
    // Nothing was recorded twice by the final flush.
    assert_eq!(recorded("api_calls"), before[0] + 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_aws_call_is_counted_with_its_outcome() {
    const TASK: &str = "AKIDMETRICSFAIL";
    let _serial = serial().await;
    store();
    let sim = simulator().await;
    let dir = support::state_dir("metrics", "fail");
    let guard = start(&sim, TASK, &dir).await;
    let throttled = meter_calls("throttled");
    let denied = meter_calls("access_denied");
    let ok_calls = meter_calls("ok");
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::NextCalls(1),
    )
    .expect("fault");
    call().expect("granted");
    next_hour(&sim).await;
    eventually("the throttled call counted", || {
        meter_calls("throttled") == throttled + 1
    })
    .await;
    eventually("the retry reported", || accepted(&sim, TASK).len() == 1).await;
    eventually("the retry counted", || meter_calls("ok") == ok_calls + 1).await;
    assert!(histogram_exists(
        "marketgate_aws_call_duration_seconds",
        &[("operation", "MeterUsage"), ("outcome", "throttled")]
    ));

    sim.inject(
        Operation::MeterUsage,
        Fault::Error("AccessDeniedException".to_owned()),
        Trigger::NextCalls(1),
    )
    .expect("fault");
    call().expect("granted");
    next_hour(&sim).await;
    eventually("the denied call counted", || {
        meter_calls("access_denied") == denied + 1
    })
    .await;
    eventually("the retry reported", || {
        accepted(&sim, TASK).get("api_calls") == Some(&2)
    })
    .await;
    assert_eq!(
        meter_calls("throttled"),
        throttled + 1,
        "one class per call"
    );
    guard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_oldest_unreported_age_rises_while_aws_is_unreachable() {
    const TASK: &str = "AKIDMETRICSAGE";
    let _serial = serial().await;
    store();
    let sim = simulator().await;
    let dir = support::state_dir("metrics", "age");
    let guard = start(&sim, TASK, &dir).await;
    let network = meter_calls("network");
    let before = reported("api_calls");
    eventually("nothing outstanding at first", || oldest_age() == 0.0).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::DropConnection,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    call().expect("granted");
    next_hour(&sim).await;
    eventually("a failed report", || meter_calls("network") > network).await;
    // Recorded at H0 + 5 min; the clock is now at H0 + 65 min.
    eventually("an hour and five minutes unreported", || {
        oldest_age() == 3900.0
    })
    .await;
    assert_eq!(gauge("marketgate_metering_pending_records", &[]), Some(1.0));
    assert_eq!(
        gauge(
            "marketgate_metering_outstanding_units",
            &[("dimension", "api_calls")]
        ),
        Some(1.0)
    );
    assert_eq!(gauge("marketgate_journal_writable", &[]), Some(1.0));
    next_hour(&sim).await;
    eventually("two hours and five minutes unreported", || {
        oldest_age() == 7500.0
    })
    .await;
    assert!(
        gauge("marketgate_degraded", &[("reason", "metering")]) == Some(1.0),
        "the outage shows as degraded"
    );
    assert_eq!(reported("api_calls"), before, "nothing reported yet");
    sim.clear_faults();
    eventually("the report after the outage", || {
        reported("api_calls") == before + 1
    })
    .await;
    eventually("nothing outstanding again", || oldest_age() == 0.0).await;
    eventually("recovered", || {
        gauge("marketgate_degraded", &[("reason", "metering")]) == Some(0.0)
    })
    .await;
    guard.shutdown().await;
}
