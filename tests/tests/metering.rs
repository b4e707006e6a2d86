//! The metering pipeline against the simulator, on the simulator's clock:
//! hour boundaries, outages, throttling storms, restarts without the
//! journal, the i32 limit, tags and an unwritable journal. Hours pass
//! instantly; every test checks the simulator's accepted records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use marketgate::{DenialReason, Denied, Guard, Options, metered, status};
use marketgate_simulator::{Fault, Operation, Simulator, Trigger, UsageRecord};

const USAGE: &str = "mgsim-usage-custom";
/// 2026-11-26T10:00:00Z, an hour start.
const H0: u64 = 1_795_687_200;
const HOUR: Duration = Duration::from_hours(1);

mod support;

use support::{eventually, frozen_config, serial};

#[metered(gb_scanned, quantity = units)]
fn scan(units: u64) -> Result<(), Denied> {
    Ok(())
}

#[metered(api_calls, tags = [("tenant", tenant)])]
fn tenant_call(tenant: &str) -> Result<(), Denied> {
    let _ = tenant;
    Ok(())
}

#[metered(api_calls)]
fn call() -> Result<(), Denied> {
    Ok(())
}

/// Five minutes into H0, frozen: only the tests move time.
async fn simulator() -> Simulator {
    let config = frozen_config(UNIX_EPOCH + Duration::from_secs(H0 + 300));
    Simulator::start(config).await.expect("simulator")
}

fn state_dir(name: &str) -> PathBuf {
    support::state_dir("metering", name)
}

async fn start(sim: &Simulator, task: &str, dir: &Path) -> Guard {
    start_with(sim, task, dir, |o| o).await
}

/// [`start`] with `adjust` applied to the options.
async fn start_with(
    sim: &Simulator,
    task: &str,
    dir: &Path,
    adjust: impl FnOnce(Options) -> Options,
) -> Guard {
    let options = support::usage_options(sim, task, dir);
    marketgate::start_with(marketgate_tests::catalog(), adjust(options))
        .await
        .expect("verified")
}

/// Waits until a checkpoint has certainly started after this call, so that
/// what was recorded before it belongs to the current simulated hour.
async fn checkpointed() {
    let seen = status().metering.map_or(0, |m| m.checkpoints);
    eventually("a checkpoint", || {
        status().metering.is_some_and(|m| m.checkpoints >= seen + 2)
    })
    .await;
}

/// Moves the simulated clock one hour on, after a checkpoint.
async fn next_hour(sim: &Simulator) {
    checkpointed().await;
    sim.clock().advance(HOUR);
}

/// Moves the simulated clock one hour on in 10-minute steps, a checkpoint
/// before each: a request that left inside AWS's window (sent at least 10
/// minutes before a record leaves it) cannot arrive outside it because the
/// clock jumped an hour while it was on the wire, as no real request does.
async fn next_hour_in_steps(sim: &Simulator) {
    for _ in 0..6 {
        checkpointed().await;
        sim.clock().advance(HOUR / 6);
    }
}

fn hour(n: u64) -> i64 {
    i64::try_from(H0 + n * 3600).expect("epoch")
}

/// Accepted quantity per (dimension, hour), checking there is one record each.
fn accepted(sim: &Simulator, task: &str) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for r in sim.usage().into_iter().filter(|r| r.access_key_id == task) {
        let previous = out.insert((r.dimension.clone(), r.timestamp), quantity(&r));
        assert!(previous.is_none(), "two records for one hour: {r:?}");
    }
    out
}

fn quantity(r: &UsageRecord) -> u64 {
    r.quantity.as_whole().expect("a whole quantity")
}

fn total(map: &BTreeMap<(String, i64), u64>, dimension: &str) -> u64 {
    map.iter()
        .filter(|((d, _), _)| d == dimension)
        .map(|(_, q)| q)
        .sum()
}

/// Whether a call was the start-up dry run (not a usage record).
fn dry_run(call: &marketgate_simulator::CallRecord) -> bool {
    call.request
        .as_ref()
        .and_then(|r| r.get("DryRun"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

fn errors(sim: &Simulator, code: &str) -> usize {
    sim.calls()
        .iter()
        .filter(|c| c.error_code.as_deref() == Some(code))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_hour_is_reported_once_per_dimension_with_exact_totals() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("hours");
    let guard = start(&sim, "AKIDHOURS", &dir).await;
    scan(10).expect("granted");
    for _ in 0..3 {
        call().expect("granted");
    }
    next_hour(&sim).await;
    eventually("hour 0", || accepted(&sim, "AKIDHOURS").len() == 2).await;
    scan(7).expect("granted");
    next_hour(&sim).await;
    eventually("hour 1", || accepted(&sim, "AKIDHOURS").len() == 3).await;
    call().expect("granted");
    call().expect("granted");
    guard.shutdown().await;
    let got = accepted(&sim, "AKIDHOURS");
    let expected: BTreeMap<(String, i64), u64> = [
        (("api_calls".to_owned(), hour(0)), 3),
        (("gb_scanned".to_owned(), hour(0)), 10),
        (("gb_scanned".to_owned(), hour(1)), 7),
        (("api_calls".to_owned(), hour(2)), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_five_hour_outage_loses_nothing_and_bills_every_hour_in_its_window() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("outage5");
    let guard = start(&sim, "AKIDOUTAGE5", &dir).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    for n in 0..5 {
        scan(5 + n).expect("granted");
        next_hour(&sim).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(accepted(&sim, "AKIDOUTAGE5").is_empty());
    assert!(
        !status().degraded.is_empty(),
        "the outage must show in status()"
    );
    sim.clear_faults();
    eventually("recovery", || accepted(&sim, "AKIDOUTAGE5").len() == 5).await;
    guard.shutdown().await;
    let got = accepted(&sim, "AKIDOUTAGE5");
    for n in 0..5 {
        assert_eq!(got.get(&("gb_scanned".to_owned(), hour(n))), Some(&(5 + n)));
    }
    assert_eq!(errors(&sim, "DuplicateRequestException"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_longer_outage_carries_usage_forward_loudly_and_loses_nothing() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("outage8");
    let guard = start(&sim, "AKIDOUTAGE8", &dir).await;
    // Throttling: certainly not stored, so a record leaving the window may
    // be carried (a server error would leave it in doubt: see below).
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    for n in 0..8 {
        // Usage in the first three hours only: after six hours without a
        // report, metered calls are denied (`max-unreported`).
        if n < 3 {
            scan(10).expect("granted");
        }
        next_hour_in_steps(&sim).await;
    }
    // Hours about to leave the 6-hour window are carried, loudly.
    eventually("carried usage", || {
        status().metering.is_some_and(|m| m.carried >= 10)
    })
    .await;
    sim.clear_faults();
    // Every record still in the window is delivered; the units of hours that
    // left it wait in later hours: nothing is lost on the way.
    eventually("recovery", || {
        status().metering.is_some_and(|m| {
            m.pending.is_empty()
                && m.reported.get("gb_scanned").copied().unwrap_or(0)
                    + m.unreported.get("gb_scanned").copied().unwrap_or(0)
                    == 30
        })
    })
    .await;
    assert_eq!(
        status().metering.map(|m| m.carried),
        Some(30),
        "hours 0 to 2 were carried"
    );
    guard.shutdown().await;
    let got = accepted(&sim, "AKIDOUTAGE8");
    assert_eq!(total(&got, "gb_scanned"), 30, "{got:?}");
    assert!(
        got.keys().all(|(_, h)| *h >= hour(3)),
        "nothing sent outside the window: {got:?}"
    );
    assert_eq!(
        errors(&sim, "TimestampOutOfBoundsException"),
        0,
        "never sent too late"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_storms_and_dropped_connections_during_flush_bill_exactly_once() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("storm");
    let guard = start(&sim, "AKIDSTORM", &dir).await;
    scan(123).expect("granted");
    for _ in 0..7 {
        call().expect("granted");
    }
    next_hour(&sim).await;
    scan(77).expect("granted");
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::Probability(0.5),
    )
    .expect("fault");
    sim.inject(
        Operation::MeterUsage,
        Fault::DropConnection,
        Trigger::Probability(0.3),
    )
    .expect("fault");
    guard.shutdown().await;
    let got = accepted(&sim, "AKIDSTORM");
    assert_eq!(total(&got, "gb_scanned"), 200, "{got:?}");
    assert_eq!(total(&got, "api_calls"), 7, "{got:?}");
    assert_eq!(errors(&sim, "DuplicateRequestException"), 0);
    assert!(
        sim.calls()
            .iter()
            .filter(|c| c.operation == "MeterUsage")
            .count()
            > 3,
        "the faults were exercised"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_same_pod_without_its_journal_carries_the_duplicate_hour_forward() {
    let _serial = serial().await;
    let sim = simulator().await;
    let guard = start(&sim, "AKIDPOD", &state_dir("pod-first")).await;
    scan(5).expect("granted");
    guard.shutdown().await;
    assert_eq!(
        accepted(&sim, "AKIDPOD").get(&("gb_scanned".to_owned(), hour(0))),
        Some(&5)
    );

    // Same task (pod), fresh state: it does not know hour 0 was reported.
    let guard = start(&sim, "AKIDPOD", &state_dir("pod-second")).await;
    scan(7).expect("granted");
    next_hour(&sim).await;
    eventually("the duplicate", || {
        errors(&sim, "DuplicateRequestException") == 1
    })
    .await;
    next_hour(&sim).await;
    eventually("the carried record", || {
        accepted(&sim, "AKIDPOD").len() == 2
    })
    .await;
    guard.shutdown().await;
    let got = accepted(&sim, "AKIDPOD");
    assert_eq!(got.get(&("gb_scanned".to_owned(), hour(0))), Some(&5));
    assert_eq!(got.get(&("gb_scanned".to_owned(), hour(1))), Some(&7));
}

#[tokio::test(flavor = "multi_thread")]
async fn quantities_above_the_i32_limit_are_split_across_hours() {
    let _serial = serial().await;
    let sim = simulator().await;
    let guard = start(&sim, "AKIDBIG", &state_dir("big")).await;
    let max = u64::from(i32::MAX.unsigned_abs());
    scan(max).expect("granted");
    scan(max + 10).expect("granted");
    call().expect("granted");
    next_hour(&sim).await;
    eventually("hour 0", || accepted(&sim, "AKIDBIG").len() == 2).await;
    next_hour(&sim).await;
    eventually("hour 1", || accepted(&sim, "AKIDBIG").len() == 3).await;
    next_hour(&sim).await;
    eventually("hour 2", || accepted(&sim, "AKIDBIG").len() == 4).await;
    guard.shutdown().await;
    let got = accepted(&sim, "AKIDBIG");
    assert_eq!(got.get(&("gb_scanned".to_owned(), hour(0))), Some(&max));
    assert_eq!(got.get(&("gb_scanned".to_owned(), hour(1))), Some(&max));
    assert_eq!(got.get(&("gb_scanned".to_owned(), hour(2))), Some(&10));
    assert_eq!(got.get(&("api_calls".to_owned(), hour(0))), Some(&1));
}

#[tokio::test(flavor = "multi_thread")]
async fn tagged_usage_is_sent_as_allocations_per_tag_set() {
    let _serial = serial().await;
    let sim = simulator().await;
    let guard = start(&sim, "AKIDTAGS", &state_dir("tags")).await;
    for tenant in ["acme", "acme", "globex"] {
        tenant_call(tenant).expect("granted");
    }
    call().expect("granted");
    marketgate::record_tagged_usage("gb_scanned", 4, [("team", "search"), ("env", "prod")])
        .expect("granted");
    guard.shutdown().await;
    let records = sim.usage();
    let api = records
        .iter()
        .find(|r| r.dimension == "api_calls")
        .expect("api_calls record");
    assert_eq!(quantity(api), 4);
    let by_tags: BTreeMap<String, u64> = api
        .allocations
        .iter()
        .map(|a| {
            let tags: Vec<String> = a
                .tags
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect();
            (tags.join(","), a.quantity.as_whole().expect("whole"))
        })
        .collect();
    let expected: BTreeMap<String, u64> = [
        ("marketgate:untagged=true".to_owned(), 1),
        ("tenant=acme".to_owned(), 2),
        ("tenant=globex".to_owned(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_tags, expected);
    let scanned = records
        .iter()
        .find(|r| r.dimension == "gb_scanned")
        .expect("gb_scanned record");
    assert_eq!(quantity(scanned), 4);
    let tags: Vec<String> = scanned.allocations[0]
        .tags
        .iter()
        .map(|t| format!("{}={}", t.key, t.value))
        .collect();
    assert_eq!(tags, ["env=prod", "team=search"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_journal_keeps_usage_in_memory_and_reports_degraded() {
    let _serial = serial().await;
    let sim = simulator().await;
    // A regular file where the state directory should be.
    let blocker = state_dir("unwritable");
    std::fs::create_dir_all(blocker.parent().expect("parent")).expect("mkdir");
    std::fs::write(&blocker, b"not a directory").expect("file");
    let guard = start(&sim, "AKIDNOJOURNAL", &blocker.join("state")).await;
    scan(9).expect("granted");
    eventually("a checkpoint", || {
        status()
            .metering
            .is_some_and(|m| m.unreported.get("gb_scanned") == Some(&9))
    })
    .await;
    let s = status();
    let metering = s.metering.expect("metering status");
    assert!(metering.journal.is_none());
    assert!(metering.journal_error.is_some());
    assert!(
        s.degraded
            .iter()
            .any(|d| d.contains("MARKETGATE_STATE_DIR")),
        "{:?}",
        s.degraded
    );
    guard.shutdown().await;
    assert_eq!(total(&accepted(&sim, "AKIDNOJOURNAL"), "gb_scanned"), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn unbillable_usage_is_reported_not_dropped_silently() {
    let _serial = serial().await;
    let sim = simulator().await;
    let guard = start(&sim, "AKIDGONE", &state_dir("gone")).await;
    scan(3).expect("granted");
    // The buyer's subscription ends; AWS refuses further records.
    sim.set_subscription(USAGE, marketgate_simulator::Subscription::Unsubscribed)
        .expect("unsubscribe");
    next_hour(&sim).await;
    eventually("the refusal", || {
        status().metering.is_some_and(|m| !m.unbillable.is_empty())
    })
    .await;
    let m = status().metering.expect("metering");
    assert_eq!(m.unbillable[0].code, "CustomerNotEntitledException");
    assert_eq!(m.unbillable[0].quantity, 3);
    assert!(
        status()
            .degraded
            .iter()
            .any(|d| d.contains("cannot be billed"))
    );
    guard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unconfirmed_records_are_resent_identically_after_a_restart() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("resend");
    let clock = sim.clock().clone();
    let options = Options::default()
        .product_code(USAGE)
        .endpoint(sim.endpoint())
        .region(sim.region())
        .credentials("AKIDRESEND", "not-a-real-secret")
        .state_dir(&dir)
        .checkpoint_interval(Duration::from_millis(20))
        .flush_budget(Duration::from_millis(300))
        .handle_signals(false)
        .clock(move || clock.now());
    let guard = marketgate::start_with(marketgate_tests::catalog(), options)
        .await
        .expect("verified");
    scan(42).expect("granted");
    // Every report is cut off: the flush gives up with the record unconfirmed.
    sim.inject(
        Operation::MeterUsage,
        Fault::DropConnection,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    guard.shutdown().await;
    let left = status().metering.expect("metering");
    assert_eq!(left.pending.len(), 1, "{left:?}");
    assert!(left.pending[0].unconfirmed);
    sim.clear_faults();

    // The next start on the same journal sends the very same request.
    let guard = start(&sim, "AKIDRESEND", &dir).await;
    eventually("the resend", || !accepted(&sim, "AKIDRESEND").is_empty()).await;
    guard.shutdown().await;
    assert_eq!(
        accepted(&sim, "AKIDRESEND"),
        [(("gb_scanned".to_owned(), hour(0)), 42)]
            .into_iter()
            .collect()
    );
    assert_eq!(errors(&sim, "DuplicateRequestException"), 0);
    assert_eq!(errors(&sim, "IdempotencyConflictException"), 0);
}

/// Errors a retry can fix (credentials rotating, an IAM change propagating,
/// clock skew, a proxy in the way, a server error) never write usage off:
/// the record is retried, identically, until AWS takes it.
#[tokio::test(flavor = "multi_thread")]
async fn recoverable_errors_are_retried_never_written_off() {
    let _serial = serial().await;
    let cases = [
        Fault::Error("AccessDeniedException".to_owned()),
        Fault::Error("ExpiredTokenException".to_owned()),
        Fault::Error("UnrecognizedClientException".to_owned()),
        Fault::Error("InvalidSignatureException".to_owned()),
        Fault::Error("MissingAuthenticationTokenException".to_owned()),
        Fault::ServerError {
            status: 503,
            stored: false,
        },
        Fault::ServerError {
            status: 502,
            stored: true,
        },
    ];
    for (n, fault) in cases.into_iter().enumerate() {
        let sim = simulator().await;
        let task = format!("AKIDRECOVER{n}");
        let dir = state_dir(&format!("recover{n}"));
        let guard = start(&sim, &task, &dir).await;
        sim.inject(Operation::MeterUsage, fault.clone(), Trigger::NextCalls(3))
            .expect("fault");
        scan(40 + n as u64).expect("granted");
        next_hour(&sim).await;
        eventually(&format!("{fault:?} recovered"), || {
            accepted(&sim, &task).len() == 1
        })
        .await;
        let unbillable = status().metering.map(|m| m.unbillable.len());
        guard.shutdown().await;
        assert_eq!(unbillable, Some(0), "{fault:?} wrote usage off");
        assert_eq!(
            accepted(&sim, &task),
            [(("gb_scanned".to_owned(), hour(0)), 40 + n as u64)].into(),
            "{fault:?}"
        );
        let tokens: std::collections::BTreeSet<_> = sim
            .calls()
            .into_iter()
            .filter(|c| c.operation == "MeterUsage" && !dry_run(c))
            .filter(|c| c.access_key_id.as_deref() == Some(task.as_str()))
            .filter_map(|c| c.client_token)
            .collect();
        assert_eq!(
            tokens.len(),
            1,
            "{fault:?}: every retry resends the same request"
        );
    }
}

/// Only an error no retry can fix for this product writes usage off.
#[tokio::test(flavor = "multi_thread")]
async fn product_definition_errors_write_the_record_off_and_say_why() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("writeoff");
    let guard = start(&sim, "AKIDWRITEOFF", &dir).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::Error("InvalidUsageDimensionException".to_owned()),
        Trigger::NextCalls(1),
    )
    .expect("fault");
    scan(9).expect("granted");
    next_hour(&sim).await;
    eventually("written off", || {
        status().metering.is_some_and(|m| m.unbillable.len() == 1)
    })
    .await;
    let record = status().metering.expect("metering").unbillable[0].clone();
    assert_eq!(record.code, "InvalidUsageDimensionException");
    assert_eq!(record.quantity, 9);
    guard.shutdown().await;
    assert!(accepted(&sim, "AKIDWRITEOFF").is_empty());
}

/// A server error may come after AWS stored the record: when its window
/// closes without a confirmation, it is reported unconfirmed, never carried
/// into another hour and billed again.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_that_stored_the_record_is_never_billed_again() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("stored500");
    let guard = start(&sim, "AKIDSTORED500", &dir).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::ServerError {
            status: 500,
            stored: true,
        },
        Trigger::Probability(1.0),
    )
    .expect("fault");
    scan(25).expect("granted");
    next_hour(&sim).await;
    eventually("the first attempt", || {
        sim.calls()
            .iter()
            .any(|c| c.operation == "MeterUsage" && c.stored && !dry_run(c))
    })
    .await;
    for _ in 0..6 {
        next_hour(&sim).await;
    }
    eventually("unconfirmed", || {
        status()
            .metering
            .is_some_and(|m| m.unbillable.iter().any(|u| u.code == "Unconfirmed"))
    })
    .await;
    sim.clear_faults();
    let carried = status().metering.map(|m| m.carried);
    guard.shutdown().await;
    assert_eq!(carried, Some(0), "units that AWS may hold were carried");
    // AWS stored it once, on the first attempt; nothing else was billed.
    assert_eq!(
        accepted(&sim, "AKIDSTORED500"),
        [(("gb_scanned".to_owned(), hour(0)), 25)].into()
    );
}

/// The response to a stored request is lost: the retry sends exactly the
/// same request (same token and parameters) and AWS bills it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_response_is_resent_identically_and_billed_once() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("lost");
    let guard = start(&sim, "AKIDLOST", &dir).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::StoreThenDrop,
        Trigger::NextCalls(2),
    )
    .expect("fault");
    scan(31).expect("granted");
    next_hour(&sim).await;
    eventually("confirmed", || {
        status()
            .metering
            .is_some_and(|m| m.reported.get("gb_scanned") == Some(&31))
    })
    .await;
    guard.shutdown().await;
    let sent: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| c.operation == "MeterUsage" && c.access_key_id.as_deref() == Some("AKIDLOST"))
        .filter(|c| !dry_run(c))
        .collect();
    assert!(sent.len() >= 3, "two lost answers, then one: {sent:#?}");
    assert!(
        sent.windows(2)
            .all(|w| w[0].request == w[1].request && w[0].client_token == w[1].client_token),
        "every attempt is the same request: {sent:#?}"
    );
    assert_eq!(sent.iter().filter(|c| c.stored).count(), 1, "stored once");
    assert_eq!(
        accepted(&sim, "AKIDLOST"),
        [(("gb_scanned".to_owned(), hour(0)), 31)].into()
    );
}

/// A buyer who blocks reporting after start-up (metering endpoint, the
/// task's credentials) keeps metered calls only for the product's bound; a
/// report that goes through allows them again. The deployment can shorten
/// the bound, never lengthen it.
#[tokio::test(flavor = "multi_thread")]
async fn metered_calls_are_denied_while_reporting_is_blocked_past_the_bound() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("blocked");
    let guard = start_with(&sim, "AKIDBLOCKED", &dir, |o| {
        o.max_unreported(Duration::from_hours(10))
            .max_unreported(Duration::from_mins(30))
    })
    .await;
    assert_eq!(
        status().metering.map(|m| m.max_unreported_secs),
        Some(30 * 60),
        "the shorter bound applies"
    );
    sim.inject(
        Operation::MeterUsage,
        Fault::Error("AccessDeniedException".to_owned()),
        Trigger::Probability(1.0),
    )
    .expect("fault");
    scan(3).expect("granted");
    next_hour(&sim).await;
    // Twenty minutes past the hour: still within the bound.
    sim.clock().advance(Duration::from_mins(20));
    checkpointed().await;
    call().expect("within the bound");
    sim.clock().advance(Duration::from_mins(11));
    eventually("denied", || call().is_err()).await;
    assert_eq!(
        call().map_err(|d| d.reason()),
        Err(DenialReason::ReportingBlocked)
    );
    let metering = status().metering.expect("metering");
    assert!(metering.reporting_blocked);
    assert!(metering.overdue_secs.is_some_and(|s| s > 30 * 60));
    assert!(metering.oldest_unreported_secs.is_some_and(|s| s >= 3600));
    // Reporting goes through again: metered calls come back.
    sim.clear_faults();
    eventually("allowed again", || call().is_ok()).await;
    assert!(!status().metering.expect("metering").reporting_blocked);
    guard.shutdown().await;
    assert_eq!(
        total(&accepted(&sim, "AKIDBLOCKED"), "gb_scanned"),
        3,
        "nothing written off meanwhile"
    );
}

/// Usage dated in a future hour (the clock jumped ahead and was corrected)
/// joins the current hour instead of waiting for its own to come.
#[tokio::test(flavor = "multi_thread")]
async fn usage_dated_after_a_clock_correction_is_reported_in_the_current_hour() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("clockback");
    let guard = start(&sim, "AKIDCLOCKBACK", &dir).await;
    let correct = sim.clock().now();
    sim.clock().advance(Duration::from_hours(3));
    checkpointed().await;
    scan(11).expect("granted");
    checkpointed().await;
    // The clock is corrected; the bucket of hour 3 is now in the future.
    sim.clock().set(correct);
    checkpointed().await;
    next_hour(&sim).await;
    eventually("reported in hour 0", || {
        accepted(&sim, "AKIDCLOCKBACK").contains_key(&("gb_scanned".to_owned(), hour(0)))
    })
    .await;
    guard.shutdown().await;
    assert_eq!(
        accepted(&sim, "AKIDCLOCKBACK"),
        [(("gb_scanned".to_owned(), hour(0)), 11)].into()
    );
}

/// A slow AWS never holds up checkpoints: the send runs outside the
/// pipeline's lock, so usage keeps reaching the journal (the SIGKILL bound)
/// while a request is outstanding.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_go_on_while_a_report_is_slow() {
    let _serial = serial().await;
    let sim = simulator().await;
    let dir = state_dir("slow");
    let guard = start(&sim, "AKIDSLOW", &dir).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::Latency(Duration::from_secs(8)),
        Trigger::NextCalls(1),
    )
    .expect("fault");
    scan(4).expect("granted");
    next_hour(&sim).await;
    let before = status().metering.map_or(0, |m| m.checkpoints);
    eventually("checkpoints during the slow report", || {
        status()
            .metering
            .is_some_and(|m| m.checkpoints >= before + 25)
    })
    .await;
    assert!(
        accepted(&sim, "AKIDSLOW").is_empty(),
        "the report was still outstanding"
    );
    eventually("reported", || !accepted(&sim, "AKIDSLOW").is_empty()).await;
    guard.shutdown().await;
}
