//! Crash tests: a seller process records usage from several threads and is
//! killed at random moments, then restarted on the same journal. What the
//! simulator accepted must never exceed what was recorded, and may fall
//! short only by what each SIGKILL caught between two checkpoints. With
//! SIGTERM nothing at all may be lost.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use marketgate_simulator::Simulator;

mod support;

use support::{config, serial};

const USAGE: &str = "mgsim-usage-custom";
/// The child's checkpoint interval.
const CHECKPOINT: Duration = Duration::from_millis(100);
/// Allowance for a checkpoint running late on a busy machine.
const SLACK: Duration = Duration::from_millis(600);
/// Units the four threads can record between two `R` lines (5 ms at most
/// one call per 0.5 ms each), a bound for what a kill catches unprinted.
const UNPRINTED: u64 = 4 * 12;

/// A deterministic pseudo-random sequence (a seed per run).
fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    }
}

fn state_dir(name: &str) -> PathBuf {
    support::state_dir("crash", name)
}

/// A running child and its `R` lines, each with when it arrived.
struct Run {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

fn spawn(sim: &Simulator, task: &str, dir: &PathBuf, follow_clock: bool) -> Run {
    spawn_with(sim, task, dir, follow_clock, &[], &[])
}

/// [`spawn`] with extra arguments and environment.
fn spawn_with(
    sim: &Simulator,
    task: &str,
    dir: &PathBuf,
    follow_clock: bool,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut command = sim.command(env!("CARGO_BIN_EXE_meter_load"), task);
    command.args(args);
    command
        .env("MARKETGATE_PRODUCT_CODE", USAGE)
        .env("MARKETGATE_STATE_DIR", dir)
        .env(
            "MARKETGATE_CHECKPOINT_INTERVAL_MS",
            CHECKPOINT.as_millis().to_string(),
        )
        .env("MARKETGATE_SIGNAL_GRACE_SECS", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if follow_clock {
        command.env("MARKETGATE_DEV_CLOCK", "simulator");
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("spawn meter_load");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let (_, first) = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("ready line");
    assert_eq!(first, "ready", "the load generator did not start");
    Run { child, lines }
}

fn count(line: &str, prefix: &str) -> Option<u64> {
    line.strip_prefix(prefix)?.trim().parse().ok()
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn accepted(sim: &Simulator, task: &str) -> u64 {
    sim.usage()
        .iter()
        .filter(|r| r.access_key_id == task && r.dimension == "api_calls")
        .map(|r| r.quantity.as_whole().expect("whole"))
        .sum()
}

/// Stops a run with SIGTERM; returns its exact count and its status line.
fn terminate(mut run: Run) -> (u64, String) {
    signal(&run.child, "-TERM");
    let status = run.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a SIGTERM'd run must exit cleanly");
    let mut exact = None;
    let mut status_line = String::new();
    while let Ok((_, line)) = run.lines.recv_timeout(Duration::from_secs(5)) {
        if let Some(n) = count(&line, "F ") {
            exact = Some(n);
        } else if let Some(json) = line.strip_prefix("S ") {
            json.clone_into(&mut status_line);
        }
    }
    (exact.expect("final count"), status_line)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_at_most_a_checkpoint_and_never_overbills() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let dir = state_dir("sigkill");
    let task = "AKIDCRASHKILL";
    let (mut upper, mut lower) = (0u64, 0u64);
    for seed in 0..20u64 {
        let mut random = lcg(seed);
        let mut run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, false));
        let lifetime = Duration::from_millis(300 + random() % 1700);
        let started = Instant::now();
        let mut seen: Vec<(Instant, u64)> = Vec::new();
        while started.elapsed() < lifetime {
            if let Ok((at, line)) = run.lines.recv_timeout(Duration::from_millis(5))
                && let Some(n) = count(&line, "R ")
            {
                seen.push((at, n));
            }
        }
        let killed = Instant::now();
        signal(&run.child, "-KILL");
        let _ = run.child.wait();
        while let Ok((at, line)) = run.lines.recv_timeout(Duration::from_millis(200)) {
            if let Some(n) = count(&line, "R ") {
                seen.push((at, n));
            }
        }
        let last = seen.last().map_or(0, |(_, n)| *n);
        // Everything printed before the last checkpoint that certainly
        // preceded the kill is on disk.
        let durable = seen
            .iter()
            .filter(|(at, _)| *at + CHECKPOINT + SLACK <= killed)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        upper += last + UNPRINTED;
        lower += durable;
        // Once, damage the journal's tail as a torn write would.
        if seed == 10 {
            let journal = dir.join(format!("metering-{USAGE}.journal"));
            let mut bytes = std::fs::read(&journal).expect("journal");
            bytes.extend_from_slice(&[0x55, 0, 0, 0, 1, 2, 3]);
            std::fs::write(&journal, bytes).expect("damage");
        }
    }
    // A last run, stopped cleanly, delivers everything the journal holds.
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, false));
    std::thread::sleep(Duration::from_millis(300));
    let (exact, _) = tokio::task::block_in_place(|| terminate(run));
    let got = accepted(&sim, task);
    assert!(
        got <= upper + exact,
        "billed {got} units but at most {} were recorded",
        upper + exact
    );
    assert!(
        got >= lower + exact,
        "billed {got} units but at least {} were checkpointed before the kills",
        lower + exact
    );
    assert!(lower > 0, "the runs were too short to checkpoint anything");
    let duplicates = sim
        .calls()
        .iter()
        .filter(|c| c.error_code.as_deref() == Some("DuplicateRequestException"))
        .count();
    assert_eq!(duplicates, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_loses_nothing_across_restarts() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let dir = state_dir("sigterm");
    let task = "AKIDCRASHTERM";
    let mut recorded = 0;
    for seed in 0..5u64 {
        let mut random = lcg(seed + 100);
        let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
        std::thread::sleep(Duration::from_millis(100 + random() % 400));
        let (exact, _) = tokio::task::block_in_place(|| terminate(run));
        recorded += exact;
        // The next run is a restart an hour later, with hours of its own.
        sim.clock().advance(Duration::from_hours(1));
    }
    assert_eq!(accepted(&sim, task), recorded);
}

/// Runs a child for a few checkpoints, then kills it; returns the last
/// count it printed.
fn run_and_kill(sim: &Simulator, task: &str, dir: &PathBuf) -> u64 {
    let mut run = spawn(sim, task, dir, true);
    let mut printed = 0;
    let until = Instant::now() + CHECKPOINT * 6;
    while Instant::now() < until {
        if let Ok((_, line)) = run.lines.recv_timeout(Duration::from_millis(5))
            && let Some(n) = count(&line, "R ")
        {
            printed = n;
        }
    }
    signal(&run.child, "-KILL");
    let _ = run.child.wait();
    assert!(printed > 0);
    printed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_tail_is_dropped_quietly_and_damage_inside_is_reported() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let dir = state_dir("damaged");
    let task = "AKIDCRASHDAMAGE";
    let journal = dir.join(format!("metering-{USAGE}.journal"));

    // A crash in the middle of an append leaves an incomplete last frame:
    // nothing in it was acted on, so it is not damage.
    // Killed runs may have recorded a few units more than they printed.
    let mut recorded = tokio::task::block_in_place(|| run_and_kill(&sim, task, &dir)) + UNPRINTED;
    let mut bytes = std::fs::read(&journal).expect("journal");
    bytes.extend_from_slice(b"\x40\x00\x00\x00an incomplete frame");
    std::fs::write(&journal, bytes).expect("tear");
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    let (exact, status) = tokio::task::block_in_place(|| terminate(run));
    recorded += exact;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    assert!(status["metering"]["journal_damage"].is_null(), "{status}");
    // The killed run's checkpointed usage was recovered and billed.
    let billed = accepted(&sim, task);
    assert!(
        billed > exact && billed <= recorded,
        "{billed} of {recorded}"
    );

    // A bad frame with intact frames after it is damage: reported, and
    // never a reason to bill anything twice.
    sim.clock().advance(Duration::from_hours(1));
    recorded += tokio::task::block_in_place(|| run_and_kill(&sim, task, &dir)) + UNPRINTED;
    let mut bytes = std::fs::read(&journal).expect("journal");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&journal, bytes).expect("damage");
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    let (exact, status) = tokio::task::block_in_place(|| terminate(run));
    recorded += exact;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    let damage = status["metering"]["journal_damage"]
        .as_str()
        .unwrap_or_default();
    assert!(damage.contains("could not be read"), "{status}");
    assert!(
        status["degraded"].to_string().contains("damaged"),
        "the damage must show as degraded: {status}"
    );
    assert!(accepted(&sim, task) <= recorded);
    assert!(
        accepted(&sim, task) >= billed + exact,
        "this run's own usage is billed: {} < {billed} + {exact}; {status}",
        accepted(&sim, task)
    );
}

/// A journal the runtime could not rewrite must never be replayed behind
/// its back: a run that took over the previous run's journal and failed to
/// compact it, then reported that run's hour and was killed, would otherwise
/// leave the old file to the next run, which would bill the hour again under
/// new tokens (carried past `DuplicateRequestException`).
#[tokio::test(flavor = "multi_thread")]
async fn a_journal_that_could_not_be_rewritten_is_never_replayed_to_bill_twice() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let dir = state_dir("stale");
    let task = "AKIDCRASHSTALE";
    // Run A records in hour H and is killed: its usage is in the journal.
    let mut upper = tokio::task::block_in_place(|| run_and_kill(&sim, task, &dir)) + UNPRINTED;
    sim.clock().advance(Duration::from_hours(1));
    // Run B takes the journal over, but cannot rewrite it (a directory
    // squats the temporary file's name, as a full disk would fail it).
    let tmp = dir.join(format!("metering-{USAGE}.journal.tmp"));
    std::fs::create_dir_all(&tmp).expect("squat");
    let mut run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    // B carries A's usage into its own first hour (no record of B's may
    // predate its start), reports that hour when it ends, then dies.
    std::thread::sleep(CHECKPOINT * 3);
    sim.clock().advance(Duration::from_hours(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted(&sim, task) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let billed_by_b = accepted(&sim, task);
    assert!(billed_by_b > 0, "run B reported nothing");
    signal(&run.child, "-KILL");
    let _ = run.child.wait();
    // Every line it printed, up to the kill.
    let printed = run
        .lines
        .iter()
        .filter_map(|(_, line)| count(&line, "R "))
        .max()
        .unwrap_or(0);
    upper += printed + UNPRINTED;
    // The disk recovers; run C starts on whatever B left.
    std::fs::remove_dir_all(&tmp).expect("unsquat");
    sim.clock().advance(Duration::from_hours(1));
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    let (exact, _) = tokio::task::block_in_place(|| terminate(run));
    upper += exact;
    let billed = accepted(&sim, task);
    assert!(
        billed <= upper,
        "billed {billed} of at most {upper} recorded: an hour was billed twice"
    );
    let duplicates = sim
        .calls()
        .iter()
        .filter(|c| c.error_code.as_deref() == Some("DuplicateRequestException"))
        .count();
    assert_eq!(duplicates, 0, "no hour of this task was sent twice");
}

/// Usage recorded before SIGTERM is reported at once, not when `main`
/// returns or the grace ends: both are the deployment's to stretch, and a
/// buyer who replaces containers would otherwise kill each one before its
/// report. Here the program ignores SIGTERM, the deployment asks for an
/// hour of grace, and the container is killed once AWS has the usage.
#[tokio::test(flavor = "multi_thread")]
async fn usage_before_a_signal_is_reported_at_once_whatever_the_grace() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let dir = state_dir("signal");
    let task = "AKIDCRASHSIGNAL";
    let mut run = tokio::task::block_in_place(|| {
        spawn_with(
            &sim,
            task,
            &dir,
            true,
            &["--ignore-sigterm"],
            &[("MARKETGATE_SIGNAL_GRACE_SECS", "3600")],
        )
    });
    std::thread::sleep(CHECKPOINT * 4);
    let before = run
        .lines
        .try_iter()
        .filter_map(|(_, line)| count(&line, "R "))
        .max()
        .unwrap_or(0);
    assert!(before > 0);
    signal(&run.child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted(&sim, task) < before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive = run.child.try_wait().expect("wait").is_none();
    let reported = accepted(&sim, task);
    signal(&run.child, "-KILL");
    let _ = run.child.wait();
    assert!(alive, "the program was still in its grace");
    assert!(
        reported >= before,
        "only {reported} of the {before} units recorded before the signal were reported"
    );
    let after = run
        .lines
        .iter()
        .filter_map(|(_, line)| count(&line, "R "))
        .max()
        .unwrap_or(before);
    assert!(
        reported <= after + UNPRINTED,
        "never more than was recorded"
    );
}
