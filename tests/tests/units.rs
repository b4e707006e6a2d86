//! Counted units of contract products (docs/contract.md, "Counted units"):
//! what the buyer bought (`entitlement!`), floating units (`checkout!`) and
//! drawdown units (`draw!`). The real AWS SDK clients against the simulator,
//! on the simulator's clock, which only the test moves; in this process and
//! in `units_worker` processes following the same clock.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use marketgate::{DenialReason, Guard, Options, UnitModel};
use marketgate_simulator::{
    CheckoutState, CheckoutType, Config, EntitlementConfig, EntitlementUnit, Fault, Operation,
    Simulator, Trigger,
};
use marketgate_tests::{AppError, scan, start_job};

mod support;

use support::{eventually, frozen_config, serial};

const ENTERPRISE: &str = "mgsim-enterprise-contract";
const LICENSE: &str = "enterprise-contract";
/// 2026-12-01T00:10:00Z: inside the example license's validity.
const START: u64 = 1_796_083_800;
const MIN: Duration = Duration::from_mins(1);

fn entitlement(name: &str, unit: EntitlementUnit, max: i64, check_in: bool) -> EntitlementConfig {
    EntitlementConfig {
        name: name.to_owned(),
        unit,
        value: None,
        max_count: Some(max),
        overage: false,
        allow_check_in: check_in,
    }
}

/// The example license's entitlements, with `jobs` floating `Jobs` and a
/// `scans` GB balance of drawdown `Scans`.
fn entitlements(jobs: i64, scans: i64) -> Vec<EntitlementConfig> {
    vec![
        EntitlementConfig {
            name: "ProEdition".to_owned(),
            unit: EntitlementUnit::None,
            value: Some("Enabled".to_owned()),
            max_count: None,
            overage: false,
            allow_check_in: true,
        },
        entitlement("Seats", EntitlementUnit::Count, 20, true),
        entitlement("Jobs", EntitlementUnit::Count, jobs, true),
        entitlement("Scans", EntitlementUnit::Gigabytes, scans, false),
    ]
}

fn config(jobs: i64, scans: i64) -> Config {
    let mut config = frozen_config(UNIX_EPOCH + Duration::from_secs(START));
    config.licenses[0].entitlements = entitlements(jobs, scans);
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
        .checkpoint_interval(Duration::from_millis(50))
        .state_dir(support::state_dir("units", task))
        .clock(move || clock.now())
}

async fn start(sim: &Simulator, task: &str) -> Guard {
    marketgate::start_with(marketgate_tests::catalog(), options(sim, task))
        .await
        .expect("verified")
}

/// Units of `name` the simulator counts as taken: (held by active
/// provisional checkouts, drawn by perpetual ones).
fn taken(sim: &Simulator, name: &str) -> (u64, u64) {
    let mut held = 0;
    let mut drawn = 0;
    for c in sim.licenses().checkouts {
        if c.state != CheckoutState::Active {
            continue;
        }
        for e in c.entitlements.iter().filter(|e| e.name == name) {
            match c.checkout_type {
                CheckoutType::Provisional => held += e.count,
                CheckoutType::Perpetual => drawn += e.count,
            }
        }
    }
    (held, drawn)
}

fn jobs_checkouts(sim: &Simulator) -> Vec<marketgate_simulator::Checkout> {
    sim.licenses()
        .checkouts
        .into_iter()
        .filter(|c| c.entitlements.iter().any(|e| e.name == "Jobs"))
        .collect()
}

fn reason(result: Result<marketgate::Units, marketgate::Denied>) -> DenialReason {
    match result {
        Ok(units) => panic!("expected a denial, got {units:?}"),
        Err(denied) => denied.reason(),
    }
}

#[tokio::test]
async fn quantities_read_back_exactly_as_licensed_and_follow_changes() {
    let _serial = serial().await;
    let sim = simulator(config(3, 100)).await;
    let guard = start(&sim, "AKIDUNITSQTY").await;

    let jobs = marketgate::entitlement!("Jobs").expect("Jobs");
    assert_eq!(jobs.name, "Jobs");
    assert_eq!(jobs.unit, "Count");
    assert_eq!(jobs.model, Some(UnitModel::Floating));
    assert_eq!(jobs.max_count, Some(3));
    assert!(!jobs.overage);
    assert!(jobs.allow_check_in);
    assert_eq!(jobs.held, 0);
    let scans = marketgate::entitlement!("Scans").expect("Scans");
    assert_eq!(scans.unit, "Gigabytes");
    assert_eq!(scans.model, Some(UnitModel::Drawdown));
    assert_eq!(scans.max_count, Some(100));
    assert!(!scans.allow_check_in);
    // The process's own seat, held by its lease.
    let seats = marketgate::entitlement!("Seats").expect("Seats");
    assert_eq!((seats.max_count, seats.held), (Some(20), 1));
    let tier = marketgate::entitlement!("ProEdition").expect("ProEdition");
    assert_eq!(
        (tier.unit.as_str(), tier.max_count, tier.model),
        ("None", None, None)
    );

    // A floating unit in use shows as held by this process.
    let job = start_job().await.expect("a job");
    assert_eq!(marketgate::entitlement!("Jobs").expect("Jobs").held, 1);
    drop(job);
    assert_eq!(marketgate::entitlement!("Jobs").expect("Jobs").held, 0);

    // The seller upgrades the contract: the next re-check (15 minutes) reads it.
    let mut upgraded = entitlements(10, 500);
    upgraded[2].overage = true;
    sim.set_license_entitlements(LICENSE, upgraded)
        .expect("upgrade");
    sim.clock().advance(16 * MIN);
    eventually("the re-check to read the upgrade", || {
        marketgate::entitlement!("Jobs").is_ok_and(|j| j.max_count == Some(10) && j.overage)
    })
    .await;
    assert_eq!(
        marketgate::entitlement!("Scans").expect("Scans").max_count,
        Some(500)
    );
    // An entitlement the license no longer has is refused, not guessed.
    sim.set_license_entitlements(LICENSE, entitlements(10, 500)[..3].to_vec())
        .expect("downgrade");
    sim.clock().advance(16 * MIN);
    eventually("the re-check to read the downgrade", || {
        marketgate::entitlement!("Scans")
            .is_err_and(|d| matches!(d.reason(), DenialReason::NotLicensed { .. }))
    })
    .await;
    guard.shutdown().await;
    // After shutdown: stopped.
    let after = marketgate::entitlement!("Jobs").expect_err("stopped");
    assert_eq!(after.reason(), DenialReason::Stopped);
}

#[tokio::test]
async fn floating_units_never_exceed_the_pool_and_come_back_when_dropped() {
    let _serial = serial().await;
    let sim = simulator(config(2, 100)).await;
    let guard = start(&sim, "AKIDUNITSPOOL").await;

    let a = start_job().await.expect("first");
    let b = start_job().await.expect("second");
    assert_eq!(taken(&sim, "Jobs").0, 2);
    assert!(matches!(
        reason(start_job().await),
        DenialReason::Exhausted { .. }
    ));
    assert_eq!(taken(&sim, "Jobs").0, 2);
    // Zero units is refused without a call.
    assert_eq!(
        reason(marketgate::checkout!("Jobs", 0_u32).await),
        DenialReason::ZeroUnits
    );

    // A dropped guard is checked in at once, on no clock movement.
    drop(a);
    eventually("the dropped units to be checked in", || {
        taken(&sim, "Jobs").0 == 1
    })
    .await;
    let c = start_job().await.expect("a freed unit");
    // `release` waits for AWS's answer.
    b.release().await.expect("checked in");
    assert_eq!(taken(&sim, "Jobs").0, 1);

    // A caller that stops waiting costs the pool nothing: the units the
    // runtime got are checked straight back in.
    let slow = sim
        .inject(
            Operation::CheckoutLicense,
            Fault::Latency(Duration::from_millis(300)),
            Trigger::NextCalls(1),
        )
        .expect("fault");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), start_job())
            .await
            .is_err()
    );
    sim.remove_fault(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    eventually("the abandoned checkout to be checked in", || {
        taken(&sim, "Jobs").0 == 1
    })
    .await;
    assert_eq!(jobs_checkouts(&sim).len(), 4, "the abandoned one was made");

    // Shutdown checks in what is still held.
    assert!(c.is_held());
    guard.shutdown().await;
    assert_eq!(taken(&sim, "Jobs").0, 0);
    assert!(!c.is_held());
    assert_eq!(reason(start_job().await), DenialReason::Stopped);
}

#[tokio::test]
async fn one_long_held_guard_survives_many_lease_periods_with_one_consumption() {
    let _serial = serial().await;
    let sim = simulator(config(2, 100)).await;
    let guard = start(&sim, "AKIDUNITSLONG").await;
    let job = start_job().await.expect("a job");
    for step in 0..36 {
        // Six hours in 10-minute steps, some extensions failing.
        if step % 12 == 5 {
            sim.inject(
                Operation::ExtendLicenseConsumption,
                Fault::RateLimitExceeded,
                Trigger::NextCalls(1),
            )
            .expect("fault");
        }
        sim.clock().advance(10 * MIN);
        let now = sim
            .clock()
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        // Give the runtime a moment to extend what is due (more than 30
        // minutes left once it has); a failed try is retried next step.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until
            && !jobs_checkouts(&sim).iter().any(|c| {
                c.state == CheckoutState::Active && c.expiration.is_some_and(|e| e - now > 30 * 60)
            })
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(job.is_held(), "lost at step {step}");
        assert!(
            jobs_checkouts(&sim)
                .iter()
                .any(|c| c.state == CheckoutState::Active),
            "expired at step {step}"
        );
    }
    let checkouts = jobs_checkouts(&sim);
    assert_eq!(
        checkouts.len(),
        1,
        "one consumption throughout: {checkouts:?}"
    );
    assert!(checkouts[0].extensions >= 10, "{checkouts:?}");
    sim.clear_faults();
    drop(job);
    guard.shutdown().await;
    assert_eq!(taken(&sim, "Jobs").0, 0);
}

#[tokio::test]
async fn floating_units_are_given_up_at_their_deadline_when_license_manager_is_gone() {
    let _serial = serial().await;
    let sim = simulator(config(1, 100)).await;
    let guard = start(&sim, "AKIDUNITSGONE").await;
    let job = start_job().await.expect("a job");
    sim.inject(
        Operation::ExtendLicenseConsumption,
        Fault::DropConnection,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    // Still held before the deadline (55 minutes after the checkout)...
    sim.clock().advance(50 * MIN);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(job.is_held());
    // ...and given up after it: AWS has the unit back by then.
    sim.clock().advance(6 * MIN);
    eventually("the guard to be given up", || !job.is_held()).await;
    tokio::time::timeout(Duration::from_secs(5), job.lost())
        .await
        .expect("lost() resolves once the units are given up");
    sim.clock().advance(5 * MIN);
    assert_eq!(taken(&sim, "Jobs").0, 0);
    sim.clear_faults();
    let again = start_job().await.expect("the unit is free again");
    drop((job, again));
    guard.shutdown().await;
}

#[tokio::test]
async fn drawdown_draws_exactly_what_threads_used_and_denies_once_exhausted() {
    let _serial = serial().await;
    let sim = simulator(config(1, 1000)).await;
    let guard = start(&sim, "AKIDUNITSDRAW").await;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let mut used = 0;
                for gb in 1..=20_u64 {
                    scan(gb).expect("within the balance");
                    used += gb;
                    std::thread::sleep(Duration::from_millis(2));
                }
                used
            })
        })
        .collect();
    // A single draw larger than the whole balance could never be drawn: it
    // is denied without touching the count.
    eventually("the license's quantities", || {
        marketgate::entitlement!("Scans").is_ok_and(|q| q.max_count == Some(1000))
    })
    .await;
    assert!(matches!(
        scan(1001),
        Err(AppError::Denied(d)) if matches!(d.reason(), DenialReason::Exhausted { .. })
    ));
    let used: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(used, 4 * 210);
    eventually("every counted unit to be drawn", || {
        taken(&sim, "Scans").1 == used
    })
    .await;
    let q = marketgate::entitlement!("Scans").expect("Scans");
    assert_eq!((q.drawn, q.pending), (used, 0));

    // 160 GB left. A 200 GB scan overdraws: its batch is refused whole, and
    // from then on draws are denied.
    scan(200).expect("counted");
    eventually("the refused batch to close the balance", || {
        matches!(scan(1), Err(AppError::Denied(d)) if matches!(d.reason(), DenialReason::Exhausted { .. }))
    })
    .await;
    assert_eq!(taken(&sim, "Scans").1, used, "nothing more was drawn");

    // The buyer tops up: the re-check reopens the balance.
    sim.set_license_entitlements(LICENSE, entitlements(1, 2000))
        .expect("top up");
    sim.clock().advance(16 * MIN);
    eventually("draws to be accepted again", || scan(1).is_ok()).await;
    guard.shutdown().await;
    assert_eq!(taken(&sim, "Scans").1, used + 1);
}

#[tokio::test]
async fn a_drawn_batch_whose_answer_was_lost_is_resent_with_its_token_after_a_restart() {
    let _serial = serial().await;
    let sim = simulator(config(1, 1000)).await;
    // Not the task's own directory: `options` empties that one.
    let dir = support::state_dir("units", "lost-answer");
    let opts = || options(&sim, "AKIDUNITSLOST").state_dir(&dir);
    let guard = marketgate::start_with(marketgate_tests::catalog(), opts())
        .await
        .expect("verified");
    // AWS draws every batch and the answer never arrives.
    let fault = sim
        .inject(
            Operation::CheckoutLicense,
            Fault::StoreThenDrop,
            Trigger::Probability(1.0),
        )
        .expect("fault");
    scan(40).expect("counted");
    eventually("the batch to reach AWS", || taken(&sim, "Scans").1 == 40).await;
    let pending = marketgate::entitlement!("Scans").expect("Scans");
    assert_eq!((pending.drawn, pending.pending), (0, 40));
    // Shut down with the batch unanswered (resent meanwhile, same token).
    guard.shutdown().await;
    assert!(sim.remove_fault(fault));
    // The next start sends it once more and learns it was drawn: once.
    let guard = marketgate::start_with(marketgate_tests::catalog(), opts())
        .await
        .expect("verified again");
    eventually("the batch's answer", || {
        marketgate::entitlement!("Scans").is_ok_and(|q| q.drawn == 40 && q.pending == 0)
    })
    .await;
    guard.shutdown().await;
    assert_eq!(taken(&sim, "Scans").1, 40, "drawn twice");
    let perpetual = sim
        .licenses()
        .checkouts
        .into_iter()
        .filter(|c| c.checkout_type == CheckoutType::Perpetual)
        .count();
    assert_eq!(perpetual, 1);
}

#[tokio::test]
async fn draws_stop_while_license_manager_is_blocked_and_resume_when_it_answers() {
    let _serial = serial().await;
    let sim = simulator(config(1, 1000)).await;
    let guard = start(&sim, "AKIDUNITSBLOCK").await;
    // A buyer blocks License Manager's checkouts (the lease's extensions
    // still pass): the batch waits, and after 30 minutes draws stop.
    let fault = sim
        .inject(
            Operation::CheckoutLicense,
            Fault::DropConnection,
            Trigger::Probability(1.0),
        )
        .expect("fault");
    scan(10).expect("counted");
    for _ in 0..4 {
        sim.clock().advance(10 * MIN);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("draws to be denied", || {
        matches!(scan(1), Err(AppError::Denied(d)) if matches!(d.reason(), DenialReason::Unavailable { .. }))
    })
    .await;
    assert_eq!(taken(&sim, "Scans").1, 0);
    assert!(sim.remove_fault(fault));
    eventually("the batch to be drawn and draws accepted", || {
        taken(&sim, "Scans").1 == 10 && scan(1).is_ok()
    })
    .await;

    // The lease lapses (License Manager unreachable past its deadline):
    // draws stop with the features.
    let faults: Vec<u64> = [
        Operation::CheckoutLicense,
        Operation::ExtendLicenseConsumption,
        Operation::GetLicense,
    ]
    .into_iter()
    .map(|op| {
        sim.inject(op, Fault::DropConnection, Trigger::Probability(1.0))
            .expect("fault")
    })
    .collect();
    for _ in 0..7 {
        sim.clock().advance(10 * MIN);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("draws to be denied with the lapsed license", || {
        matches!(scan(1), Err(AppError::Denied(d)) if matches!(d.reason(), DenialReason::LicenseNotRenewed { .. }))
    })
    .await;
    for id in faults {
        sim.remove_fault(id);
    }
    guard.shutdown().await;
}

/// A `units_worker` process on the contract product, following the
/// simulator's clock.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

fn spawn(sim: &Simulator, task: &str, dir: &std::path::Path, args: &[&str]) -> Worker {
    let mut child = sim
        .command(env!("CARGO_BIN_EXE_units_worker"), task)
        .args(args)
        .env("MARKETGATE_PRODUCT_CODE", ENTERPRISE)
        .env("MARKETGATE_DEV_CLOCK", "simulator")
        .env("MARKETGATE_SEAT_WAIT_SECS", "0")
        .env("MARKETGATE_CHECKPOINT_INTERVAL_MS", "100")
        .env("MARKETGATE_STATE_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take();
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Worker {
        child,
        stdin,
        lines,
    }
}

impl Worker {
    /// Lines up to and including `last` (within 60 s).
    fn until(&mut self, last: &str) -> Vec<String> {
        let limit = Instant::now() + MIN;
        let mut seen = Vec::new();
        while let Some(left) = limit.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(last);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no `{last}` from the worker; it printed {seen:?}");
    }

    fn say(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (SIGSTOP): what it printed can be read to the
    /// end before it is killed.
    fn freeze(&self) {
        let status = std::process::Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("kill -STOP");
        assert!(status.success());
    }

    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn floating_pool_is_shared_by_processes_and_a_killed_one_returns_its_units_within_an_hour() {
    let _serial = serial().await;
    let sim = simulator(config(3, 100)).await;
    let dirs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| support::state_dir("units-pool", n))
        .collect();
    let (a, b) = tokio::task::block_in_place(|| {
        let mut a = spawn(&sim, "AKIDPOOLA", &dirs[0], &["hold", "2"]);
        let got_a = a.until("ready");
        let mut b = spawn(&sim, "AKIDPOOLB", &dirs[1], &["hold", "2"]);
        let got_b = b.until("ready");
        let held = |lines: &[String]| lines.iter().filter(|l| *l == "held").count();
        assert_eq!(held(&got_a), 2, "{got_a:?}");
        assert_eq!(held(&got_b), 1, "{got_b:?}");
        assert!(
            got_b.iter().any(|l| l.starts_with("denied Exhausted")),
            "{got_b:?}"
        );
        (a, b)
    });
    assert_eq!(taken(&sim, "Jobs").0, 3);
    // B returns its unit gracefully: at once.
    let mut b = b;
    tokio::task::block_in_place(|| {
        b.say("release");
        b.until("released");
        assert!(b.finish().success());
    });
    assert_eq!(taken(&sim, "Jobs").0, 2);
    // A is killed: its two units stay taken until AWS's 60 minutes pass
    // (measured from its last extension), while C holds one throughout.
    let mut a = a;
    let mut c = tokio::task::block_in_place(|| {
        let mut c = spawn(&sim, "AKIDPOOLC", &dirs[2], &["hold", "1"]);
        let got = c.until("ready");
        assert!(got.iter().any(|l| l == "held"), "{got:?}");
        a.kill();
        c
    });
    assert_eq!(taken(&sim, "Jobs").0, 3);
    for _ in 0..7 {
        sim.clock().advance(10 * MIN);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("the killed process's units to come back", || {
        taken(&sim, "Jobs").0 == 1
    })
    .await;
    tokio::task::block_in_place(|| {
        c.say("release");
        c.until("released");
        assert!(c.finish().success());
    });
    assert_eq!(taken(&sim, "Jobs").0, 0);
}

/// The `counted <ms> <total>` lines of a scan worker.
fn counted(lines: &[String]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("counted ")?.split(' ');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drawdown_killed_at_random_points_never_draws_twice_and_loses_at_most_an_interval() {
    let _serial = serial().await;
    let sim = simulator(config(1, 1_000_000)).await;
    let dir = support::state_dir("units-kill", "scan");
    let mut used = 0_u64;
    let mut lost = 0_u64;
    for round in 0..4_u64 {
        let (counted_at_kill, last_second) = tokio::task::block_in_place(|| {
            let mut w = spawn(&sim, "AKIDSCANKILL", &dir, &["scan", "3"]);
            w.until("ready");
            // Killed somewhere between 300 ms and 1.5 s in.
            let run = Duration::from_millis(300 + (round * 397) % 1200);
            let limit = Instant::now() + run;
            let mut lines = Vec::new();
            while let Some(left) = limit.checked_duration_since(Instant::now()) {
                if let Ok(line) = w.lines.recv_timeout(left) {
                    lines.push(line);
                }
            }
            w.freeze();
            while let Ok(line) = w.lines.recv_timeout(Duration::from_millis(300)) {
                lines.push(line);
            }
            w.kill();
            let seen = counted(&lines);
            let (end_ms, at_kill) = seen.last().copied().unwrap_or((0, 0));
            // What was counted in the last second before the kill: more
            // than enough for the 100 ms interval plus a batch in flight.
            let before = seen
                .iter()
                .rev()
                .find(|(ms, _)| *ms + 1000 <= end_ms)
                .map_or(0, |(_, n)| *n);
            (at_kill, at_kill - before)
        });
        // The next start (the next round, or the final one) resends what the
        // killed one journaled, with the same client tokens.
        used += counted_at_kill;
        lost += last_second;
    }
    // A last run that draws nothing itself: it sends the journal's
    // unanswered batches and exits.
    let status = tokio::task::block_in_place(|| {
        let mut w = spawn(&sim, "AKIDSCANKILL", &dir, &["scan", "0"]);
        w.until("ready");
        w.finish()
    });
    assert!(status.success());
    let drawn = taken(&sim, "Scans").1;
    // Each thread may have counted one unit it had not printed yet.
    assert!(
        drawn <= used + 3 * 4,
        "drew {drawn} of {used} used: more than was used"
    );
    assert!(
        drawn + lost >= used,
        "drew {drawn} of {used}: lost more than the units of the last second before each kill ({lost})"
    );
}
