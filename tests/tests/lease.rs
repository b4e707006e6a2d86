//! The contract lease (docs/contract.md, "The lease"): the real AWS SDK
//! clients against the simulator, on the simulator's clock, which only the
//! test moves. One process is this test's runtime; the others are
//! `serve_until_signal` processes following the same clock.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, UNIX_EPOCH};

use marketgate::{DenialReason, Guard, LeaseState, Options, StartError, status};
use marketgate_simulator::{
    CheckoutState, Config, EntitlementConfig, EntitlementUnit, Fault, LicenseStatus, Operation,
    Simulator, Trigger,
};
use marketgate_tests::{AppError, seat_work};

mod support;

use support::{calls, eventually, frozen_config, serial};

const ENTERPRISE: &str = "mgsim-enterprise-contract";
const LICENSE: &str = "enterprise-contract";
/// 2026-12-01T00:10:00Z: inside the example license's validity.
const START: u64 = 1_796_083_800;
const MIN: Duration = Duration::from_mins(1);

/// The example license with one seat and nothing else: when the seat is
/// taken, a checkout is refused.
fn one_seat() -> Config {
    let mut config = frozen_config(UNIX_EPOCH + Duration::from_secs(START));
    config.licenses[0].entitlements = vec![EntitlementConfig {
        name: "Seats".to_owned(),
        unit: EntitlementUnit::Count,
        value: None,
        max_count: Some(1),
        overage: false,
        allow_check_in: true,
    }];
    config
}

async fn simulator(config: Config) -> Simulator {
    Simulator::start(config).await.expect("simulator")
}

fn options(sim: &Simulator, task: &str) -> Options {
    let clock = sim.clock().clone();
    Options::default()
        .product_code(ENTERPRISE)
        .endpoint(sim.endpoint())
        .region(sim.region())
        .credentials(task, "not-a-real-secret")
        .startup_timeout(Duration::from_secs(10))
        .call_timeout(Duration::from_secs(2))
        .handle_signals(false)
        .seat_wait(Duration::ZERO)
        .state_dir(support::state_dir("lease", task))
        .clock(move || clock.now())
}

async fn start(sim: &Simulator, task: &str) -> Guard {
    marketgate::start_with(marketgate_tests::catalog(), options(sim, task))
        .await
        .expect("verified")
}

fn epoch(sim: &Simulator) -> u64 {
    sim.clock()
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits until this process's lease has done everything due at the
/// simulator's current time: no call under way, the next action later.
async fn settle(sim: &Simulator) {
    let now = epoch(sim);
    eventually("the lease to catch up with the clock", || {
        status()
            .license
            .is_some_and(|l| l.busy_since.is_none() && l.next_action_at.is_some_and(|at| at > now))
    })
    .await;
}

/// Moves the simulated clock on by `by`, then lets the lease catch up.
async fn advance(sim: &Simulator, by: Duration) {
    sim.clock().advance(by);
    settle(sim).await;
}

fn active(sim: &Simulator) -> Vec<String> {
    sim.licenses()
        .checkouts
        .into_iter()
        .filter(|c| c.state == CheckoutState::Active)
        .map(|c| c.access_key_id)
        .collect()
}

fn lease_state() -> Option<LeaseState> {
    status().license.map(|l| l.state)
}

fn denial() -> DenialReason {
    match seat_work() {
        Err(AppError::Denied(d)) => d.reason(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn drop_every_license_manager_call(sim: &Simulator, task: &str) -> Vec<u64> {
    [
        Operation::CheckoutLicense,
        Operation::ExtendLicenseConsumption,
        Operation::GetLicense,
        Operation::CheckInLicense,
    ]
    .into_iter()
    .map(|op| {
        sim.inject_for(task, op, Fault::DropConnection, Trigger::Probability(1.0))
            .expect("fault")
    })
    .collect()
}

#[tokio::test]
async fn transient_extension_failures_anywhere_in_the_lease_keep_one_consumption() {
    let _serial = serial().await;
    let sim = simulator(frozen_config(UNIX_EPOCH + Duration::from_secs(START))).await;
    let guard = start(&sim, "AKIDLEASEFLAKY").await;
    let faults = [
        Fault::RateLimitExceeded,
        Fault::InternalError,
        Fault::ServerError {
            status: 503,
            stored: false,
        },
        Fault::ServerError {
            status: 502,
            stored: true,
        },
        Fault::DropConnection,
    ];
    for (round, fault) in faults.into_iter().enumerate() {
        // One fault at the first try of this round's extension, several
        // (four) in a row in the next round's.
        let failures = if round % 2 == 0 { 1 } else { 4 };
        sim.inject(
            Operation::ExtendLicenseConsumption,
            fault.clone(),
            Trigger::NextCalls(failures),
        )
        .expect("fault");
        // An hour in 5-minute steps: the extension falls due, fails, is
        // retried within minutes; the features never go.
        for _ in 0..12 {
            advance(&sim, 5 * MIN).await;
            assert_eq!(seat_work(), Ok("seat"), "{fault:?}: {:#?}", status());
        }
        assert!(sim.faults().is_empty(), "{fault:?} never fired");
        assert_eq!(lease_state(), Some(LeaseState::Held), "{fault:?}");
    }
    let view = sim.licenses();
    assert_eq!(view.checkouts.len(), 1, "one consumption throughout");
    assert_eq!(view.checkouts[0].state, CheckoutState::Active);
    assert!(view.checkouts[0].extensions >= 5, "{:?}", view.checkouts[0]);
    assert_eq!(calls(&sim, "CheckoutLicense").len(), 1);
    guard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_license_manager_revokes_at_the_deadline_frees_the_seat_and_recovers() {
    let _serial = serial().await;
    let sim = simulator(one_seat()).await;
    let guard = start(&sim, "AKIDLEASEA").await;
    settle(&sim).await;
    let license = status().license.expect("license");
    let deadline = license.deadline.expect("a deadline");
    // The checkout's expiry is 60 minutes on; the deadline 5 before that.
    assert_eq!(deadline, START + 55 * 60, "{license:#?}");
    assert!(license.consumption.is_some_and(|c| c.ends_with('…')));

    // Cut this task off from License Manager.
    let cut = drop_every_license_manager_call(&sim, "AKIDLEASEA");
    for _ in 0..10 {
        advance(&sim, 5 * MIN).await;
        assert_eq!(seat_work(), Ok("seat"), "revoked before the deadline");
        assert!(active(&sim).len() <= 1);
    }
    // 50 minutes in, 4:59 before the deadline: still held, and it says so.
    advance(&sim, 4 * MIN + Duration::from_secs(59)).await;
    assert_eq!(seat_work(), Ok("seat"));
    let license = status().license.expect("license");
    assert_eq!(license.state, LeaseState::HeldPastFailure);
    assert!(
        license.held_past_failure && license.failed_attempts >= 5,
        "{license:#?}"
    );
    assert!(
        calls(&sim, "ExtendLicenseConsumption").len() >= 5,
        "extensions retried within minutes"
    );
    // The deadline: revoked, with a reason that says why.
    advance(&sim, Duration::from_secs(1)).await;
    assert_eq!(
        denial(),
        DenialReason::LicenseNotRenewed {
            product: "enterprise"
        }
    );
    assert_eq!(lease_state(), Some(LeaseState::Lapsed));
    // At 60 minutes AWS frees the seat, and another task can take it.
    advance(&sim, 5 * MIN).await;
    assert!(active(&sim).is_empty(), "{:?}", sim.licenses().checkouts);
    // (The simulator serves on this test's runtime: block only in place.)
    let mut b = spawn(&sim, "AKIDLEASEB", &["--handles-signals"]);
    assert!(
        tokio::task::block_in_place(|| b.ready(Duration::from_secs(20))),
        "B did not start"
    );
    assert_eq!(active(&sim), ["AKIDLEASEB"]);

    // License Manager comes back: A tries, finds no seat, stays off.
    for id in cut {
        assert!(sim.remove_fault(id));
    }
    let refused_before = refused_checkouts(&sim, "AKIDLEASEA");
    for _ in 0..4 {
        advance(&sim, 5 * MIN).await;
        assert!(seat_work().is_err(), "features without a seat");
        assert_eq!(active(&sim), ["AKIDLEASEB"]);
    }
    assert!(refused_checkouts(&sim, "AKIDLEASEA") > refused_before);
    // B stops and checks in: A's next try gets the seat back.
    tokio::task::block_in_place(|| b.terminate_and_wait());
    assert!(active(&sim).is_empty());
    for _ in 0..3 {
        advance(&sim, 5 * MIN).await;
    }
    assert_eq!(seat_work(), Ok("seat"));
    assert_eq!(active(&sim), ["AKIDLEASEA"]);
    assert_eq!(lease_state(), Some(LeaseState::Held));
    guard.shutdown().await;
    assert!(active(&sim).is_empty());
}

fn refused_checkouts(sim: &Simulator, task: &str) -> usize {
    calls(sim, "CheckoutLicense")
        .iter()
        .filter(|c| {
            c.access_key_id.as_deref() == Some(task)
                && c.error_code.as_deref() == Some("NoEntitlementsAllowedException")
        })
        .count()
}

#[tokio::test]
async fn a_suspended_or_expired_license_ends_the_consumption_at_its_deadline_and_a_renewal_restores_it()
 {
    let _serial = serial().await;
    for (ended, name) in [
        (LicenseStatus::Suspended, "SUSPENDED"),
        (LicenseStatus::Expired, "EXPIRED"),
    ] {
        let sim = simulator(one_seat()).await;
        let guard = start(&sim, "AKIDLEASEEND").await;
        sim.set_license_status(LICENSE, ended).expect("status");
        // The re-check at 15 minutes sees it; the process keeps its seat.
        for _ in 0..6 {
            advance(&sim, 5 * MIN).await;
            assert_eq!(
                seat_work(),
                Ok("seat"),
                "{name}: revoked before the deadline"
            );
        }
        let license = status().license.expect("license");
        assert_eq!(license.state, LeaseState::Ending, "{license:#?}");
        assert_eq!(license.license_state.as_deref(), Some(name));
        assert!(
            license.reason.as_deref().is_some_and(|r| r.contains(name)),
            "{license:#?}"
        );
        // The deadline (55 minutes): revoked, checked in, no new checkout.
        for _ in 0..5 {
            advance(&sim, 5 * MIN).await;
        }
        assert_eq!(
            denial(),
            DenialReason::LicenseNotRenewed {
                product: "enterprise"
            },
            "{name}"
        );
        assert!(active(&sim).is_empty(), "{name}: the seat is still held");
        // Renewed: the next checkout restores the features.
        sim.set_license_status(LICENSE, LicenseStatus::Available)
            .expect("status");
        for _ in 0..3 {
            advance(&sim, 5 * MIN).await;
        }
        assert_eq!(seat_work(), Ok("seat"), "{name}: not restored");
        assert_eq!(active(&sim), ["AKIDLEASEEND"]);
        guard.shutdown().await;
    }
}

#[tokio::test]
async fn a_new_process_cannot_start_on_an_expired_license() {
    let _serial = serial().await;
    let sim = simulator(one_seat()).await;
    sim.set_license_status(LICENSE, LicenseStatus::Expired)
        .expect("status");
    let err = marketgate::start_with(
        marketgate_tests::catalog(),
        options(&sim, "AKIDLEASENEW").seat_wait(Duration::from_millis(300)),
    )
    .await
    .expect_err("an expired license must not start");
    assert!(matches!(err, StartError::NotLicensed { .. }), "{err}");
    // It waited for a seat, then gave up.
    assert!(calls(&sim, "CheckoutLicense").len() >= 2);
}

#[tokio::test]
async fn a_checkout_whose_answer_was_lost_is_found_and_checked_in_at_shutdown() {
    let _serial = serial().await;
    let sim = simulator(one_seat()).await;
    let guard = start(&sim, "AKIDLEASELOST").await;
    let cut = drop_every_license_manager_call(&sim, "AKIDLEASELOST");
    for _ in 0..12 {
        advance(&sim, 5 * MIN).await;
    }
    assert_eq!(lease_state(), Some(LeaseState::Lapsed));
    assert!(active(&sim).is_empty());
    // License Manager is back, but every checkout's answer is lost after
    // AWS made the consumption.
    for id in cut {
        assert!(sim.remove_fault(id));
    }
    sim.inject_for(
        "AKIDLEASELOST",
        Operation::CheckoutLicense,
        Fault::StoreThenDrop,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    advance(&sim, 5 * MIN).await;
    assert_eq!(active(&sim), ["AKIDLEASELOST"], "AWS made a consumption");
    assert!(seat_work().is_err(), "no answer, no features");
    // Shutdown finds it again with the same client token and checks it in.
    sim.clear_faults();
    guard.shutdown().await;
    assert!(
        active(&sim).is_empty(),
        "a seat left held: {:?}",
        sim.licenses().checkouts
    );
}

#[tokio::test]
async fn check_in_is_retried_on_shutdown() {
    let _serial = serial().await;
    let sim = simulator(one_seat()).await;
    let guard = start(&sim, "AKIDLEASEBYE").await;
    sim.inject(
        Operation::CheckInLicense,
        Fault::RateLimitExceeded,
        Trigger::NextCalls(1),
    )
    .expect("fault");
    sim.inject(
        Operation::CheckInLicense,
        Fault::ServerError {
            status: 503,
            stored: false,
        },
        Trigger::NextCalls(1),
    )
    .expect("fault");
    guard.shutdown().await;
    let check_ins = calls(&sim, "CheckInLicense");
    assert_eq!(check_ins.len(), 3, "{check_ins:?}");
    assert!(active(&sim).is_empty(), "the seat was not returned");
    assert_eq!(lease_state(), Some(LeaseState::CheckedIn));
}

/// A `serve_until_signal` process on the contract product, following the
/// simulator's clock.
struct Task {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn(sim: &Simulator, task: &str, args: &[&str]) -> Task {
    let mut child = sim
        .command(env!("CARGO_BIN_EXE_serve_until_signal"), task)
        .args(args)
        .env("MARKETGATE_PRODUCT_CODE", ENTERPRISE)
        .env("MARKETGATE_DEV_CLOCK", "simulator")
        .env("MARKETGATE_SIGNAL_GRACE_SECS", "1")
        .env("MARKETGATE_SEAT_WAIT_SECS", "60")
        .env("MARKETGATE_STATE_DIR", support::state_dir("lease", task))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let err_tx = tx.clone();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    Task { child, lines }
}

impl Task {
    /// Whether the task printed `ready` (started) within `limit`; every
    /// line it printed meanwhile is kept in `seen`.
    fn ready_seen(&mut self, limit: Duration, seen: &mut Vec<String>) -> bool {
        let until = std::time::Instant::now() + limit;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim() == "ready" => return true,
                Ok(line) => seen.push(line),
                Err(_) => return false,
            }
        }
        false
    }

    fn ready(&mut self, limit: Duration) -> bool {
        self.ready_seen(limit, &mut Vec::new())
    }

    fn terminate_and_wait(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(
                std::time::Instant::now() < until,
                "the task did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_seat_contract_rolls_new_task_waits_for_the_old_ones_check_in() {
    let sim = simulator(one_seat()).await;
    sim.clock().resume();
    let mut old =
        tokio::task::block_in_place(|| spawn(&sim, "AKIDROLLOLD", &["--handles-signals"]));
    assert!(tokio::task::block_in_place(
        || old.ready(Duration::from_secs(20))
    ));
    assert_eq!(active(&sim), ["AKIDROLLOLD"]);
    // The deployment starts the new task while the old one still runs.
    let mut new =
        tokio::task::block_in_place(|| spawn(&sim, "AKIDROLLNEW", &["--handles-signals"]));
    let mut seen = Vec::new();
    let started = tokio::task::block_in_place(|| new.ready_seen(Duration::from_secs(3), &mut seen));
    assert!(!started, "two tasks on one seat");
    assert!(
        seen.iter()
            .any(|l| l.contains("no license seat is free: waiting")),
        "the waiting task does not say why: {seen:?}"
    );
    assert_eq!(active(&sim), ["AKIDROLLOLD"]);
    // The old task is stopped: it checks in, and the new one starts.
    tokio::task::block_in_place(|| old.terminate_and_wait());
    assert!(tokio::task::block_in_place(
        || new.ready(Duration::from_secs(40))
    ));
    assert_eq!(active(&sim), ["AKIDROLLNEW"]);
    // Never more than one seat: every checkout the simulator granted
    // started after the one before it ended.
    let checkouts = sim.licenses().checkouts;
    assert_eq!(checkouts.len(), 2, "{checkouts:?}");
    assert!(
        checkouts[0]
            .ended_at
            .is_some_and(|end| end <= checkouts[1].issued_at),
        "{checkouts:?}"
    );
    tokio::task::block_in_place(|| new.terminate_and_wait());
    assert!(active(&sim).is_empty());
}
