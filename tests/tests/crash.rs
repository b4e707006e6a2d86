//! Crash tests: a seller process records usage from several threads and is
//! killed at random moments, then restarted on the same journal. What the
//! simulator accepted must never exceed what was recorded, and may fall
//! short only by what each SIGKILL caught between two checkpoints. With
//! SIGTERM nothing at all may be lost.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use marketgate_simulator::{CallRecord, Fault, Operation, Simulator, Trigger};

mod support;

use support::{config, frozen_config, serial};

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

/// `seed` with its bits spread (the finalizer of `SplitMix64`): [`lcg`] started
/// from neighbouring seeds makes strongly correlated first choices.
fn scramble(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

/// The start of an hour (epoch seconds) for the tests on a frozen clock.
const H0: u64 = 1_795_687_200;
/// Killed runs between two drains. Each moves the simulated clock by at most
/// an hour and a drain reports everything, so no record waits anywhere near
/// the 6 hours after which an unconfirmed one could no longer be resent.
const RUNS_PER_DRAIN: u64 = 4;
/// The longest latency injected on `MeterUsage`: how long a request of a
/// killed run may still land.
const MAX_LATENCY: Duration = Duration::from_millis(700);

/// The faults of one killed run, chosen by its seed: `MeterUsage` answers
/// late with probability `late` (so that kills land while requests are in
/// flight) and, on two runs in three, stores the record and then loses the
/// answer (a dropped connection or a stored 500). Returns what was injected.
fn inject_faults(
    sim: &Simulator,
    seed: u64,
    late: f64,
    random: &mut impl FnMut() -> u64,
) -> String {
    sim.clear_faults();
    let latency = Duration::from_millis(200 + random() % 500);
    sim.inject(
        Operation::MeterUsage,
        Fault::Latency(latency),
        Trigger::Probability(late),
    )
    .expect("latency");
    let lost = match seed % 3 {
        0 => Some(Fault::StoreThenDrop),
        1 => Some(Fault::ServerError {
            status: 500,
            stored: true,
        }),
        _ => None,
    };
    let mut what = format!("latency {latency:?} at {late}");
    if let Some(fault) = lost {
        write!(what, ", {fault:?} at 0.4").expect("to a string");
        sim.inject(Operation::MeterUsage, fault, Trigger::Probability(0.4))
            .expect("lost answers");
    }
    what
}

/// The task's `MeterUsage` calls that could bill: every one but the dry
/// runs, and but those whose body never arrived (their client was killed).
fn sends(sim: &Simulator, task: &str) -> Vec<CallRecord> {
    sim.calls()
        .into_iter()
        .filter(|c| c.operation == "MeterUsage" && c.access_key_id.as_deref() == Some(task))
        .filter(|c| {
            c.request
                .as_ref()
                .is_some_and(|r| r.get("DryRun") != Some(&serde_json::Value::Bool(true)))
        })
        .collect()
}

/// Checks the simulator's log against the pipeline's promises: every attempt
/// at a (dimension, hour) is the same request under the same client token, no
/// attempt was answered as a duplicate, no hour holds two records, and each
/// record was stored from that request. `runs` names the run in which each
/// call was logged (by the first sequence number logged in it).
fn check_sends(sim: &Simulator, task: &str, runs: &[(u64, String)]) -> Result<(), String> {
    let run_of = |seq: u64| {
        runs.iter()
            .rev()
            .find(|(from, _)| *from <= seq)
            .map_or("before the runs", |(_, run)| run.as_str())
    };
    let describe = |c: &CallRecord| {
        format!(
            "call {} ({}; {:?} {:?} {:?} stored={}): {}",
            c.seq,
            run_of(c.seq),
            c.outcome,
            c.error_code,
            c.fault,
            c.stored,
            c.request
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        )
    };
    let mut first: BTreeMap<(String, i64), CallRecord> = BTreeMap::new();
    for call in sends(sim, task) {
        if call.error_code.as_deref() == Some("DuplicateRequestException") {
            return Err(format!("an hour was sent twice: {}", describe(&call)));
        }
        let request = call.request.as_ref().expect("sends have a body");
        let dimension = request["UsageDimension"].as_str().unwrap_or_default();
        // Epoch seconds, which the SDK may write as a float.
        #[allow(clippy::cast_possible_truncation)]
        let hour = request["Timestamp"].as_f64().unwrap_or_default() as i64;
        match first.entry((dimension.to_owned(), hour)) {
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(call);
            }
            std::collections::btree_map::Entry::Occupied(entry) => {
                let earlier = entry.get();
                if earlier.client_token.is_none()
                    || earlier.client_token != call.client_token
                    || earlier.request != call.request
                {
                    return Err(format!(
                        "a record was resent as another request:\n  {}\n  {}",
                        describe(earlier),
                        describe(&call)
                    ));
                }
            }
        }
    }
    let mut stored: BTreeMap<(String, i64), u32> = BTreeMap::new();
    for record in sim.usage().iter().filter(|r| r.access_key_id == task) {
        let key = (record.dimension.clone(), record.timestamp);
        let copies = stored.entry(key.clone()).or_default();
        *copies += 1;
        if *copies > 1 {
            return Err(format!("two records stored for {key:?}"));
        }
        let token = first.get(&key).and_then(|c| c.client_token.as_ref());
        if record.client_token.as_ref() != token {
            return Err(format!(
                "the record for {key:?} was stored under {:?}, not the token its calls sent ({token:?})",
                record.client_token
            ));
        }
    }
    Ok(())
}

/// What a drained run's status must show: nothing left to report, and
/// nothing given up as unconfirmed or unbillable.
fn check_drained(status: &str) -> Result<(), String> {
    let json: serde_json::Value =
        serde_json::from_str(status).map_err(|e| format!("status json: {e}: {status}"))?;
    let metering = &json["metering"];
    let empty = |field: &str| metering[field].as_array().is_some_and(Vec::is_empty);
    if !empty("unbillable") {
        return Err(format!(
            "usage was given up (unconfirmed when its window closed, or unbillable): {}",
            metering["unbillable"]
        ));
    }
    if !empty("pending") {
        return Err(format!(
            "records are left unreported after SIGTERM: {}; status: {json:#}",
            metering["pending"]
        ));
    }
    Ok(())
}

/// How one killed run goes, drawn from its seed.
struct Plan {
    seed: u64,
    /// Whether the clock moves on an hour while the run lives.
    cross: bool,
    /// Whether every report is answered late and the run is killed once one
    /// is in flight (within `aim_delay`), rather than at `lifetime`.
    aim: bool,
    advance_at: Duration,
    lifetime: Duration,
    aim_delay: Duration,
}

impl Plan {
    fn new(seed: u64, random: &mut impl FnMut() -> u64) -> Plan {
        let cross = !random().is_multiple_of(4);
        // Most runs that close an hour are killed once a report is in
        // flight; the others at a random moment.
        let aim = cross && !random().is_multiple_of(3);
        let advance_at = Duration::from_millis(50 + random() % 350);
        let lifetime = if aim {
            // Long enough for the report (spread over up to 600 ms) to leave.
            advance_at + Duration::from_millis(1500)
        } else if cross {
            advance_at + Duration::from_millis(100 + random() % 1200)
        } else {
            Duration::from_millis(300 + random() % 1200)
        };
        let aim_delay = Duration::from_millis(random() % 150);
        Plan {
            seed,
            cross,
            aim,
            advance_at,
            lifetime,
            aim_delay,
        }
    }
}

/// What a killed run left: its `R` lines, when it was killed, the faults it
/// met, and how many requests were in flight at the kill.
struct Killed {
    seen: Vec<(Instant, u64)>,
    at: Instant,
    faults: String,
    in_flight: u64,
}

/// Runs a child under faults (injected once it is ready, so that its dry
/// runs stay quick) as `plan` says, and kills it.
fn kill_under_faults(
    sim: &Simulator,
    task: &str,
    dir: &PathBuf,
    plan: &Plan,
    random: &mut impl FnMut() -> u64,
) -> Killed {
    let mut run = spawn(sim, task, dir, true);
    let late = if plan.aim { 1.0 } else { 0.5 };
    let faults = inject_faults(sim, plan.seed, late, random);
    // Counts every `MeterUsage` arrival, to see what a kill interrupts.
    let counter = sim
        .inject(
            Operation::MeterUsage,
            Fault::Latency(Duration::ZERO),
            Trigger::Probability(1.0),
        )
        .expect("counter");
    let logged_before = sim.calls().len();
    // Requests that arrived since and are not answered yet.
    let outstanding = || {
        let arrived = sim
            .faults()
            .iter()
            .find(|r| r.id == counter)
            .map_or(0, |r| r.fired);
        let answered = sim.calls()[logged_before..]
            .iter()
            .filter(|c| c.operation == "MeterUsage")
            .count() as u64;
        arrived.saturating_sub(answered)
    };
    let started = Instant::now();
    let mut seen: Vec<(Instant, u64)> = Vec::new();
    let mut advanced = false;
    let mut kill_at = started + plan.lifetime;
    let mut polled = started;
    while Instant::now() < kill_at {
        if plan.cross && !advanced && started.elapsed() >= plan.advance_at {
            // The run closes its hour and reports it (spread over up to 6
            // checkpoints), late or not, while it lives.
            sim.clock().advance(Duration::from_hours(1));
            advanced = true;
        }
        // Every 20 ms (requests are late by 200 ms at least): the call log
        // is copied each time, and the other crash tests share the machine.
        if plan.aim && advanced && polled.elapsed() >= Duration::from_millis(20) {
            polled = Instant::now();
            if outstanding() > 0 {
                kill_at = kill_at.min(Instant::now() + plan.aim_delay);
            }
        }
        if let Ok((at, line)) = run.lines.recv_timeout(Duration::from_millis(5))
            && let Some(n) = count(&line, "R ")
        {
            seen.push((at, n));
        }
    }
    let in_flight = outstanding();
    let at = Instant::now();
    signal(&run.child, "-KILL");
    let _ = run.child.wait();
    // The next run starts without faults (requests already delayed still
    // land late).
    sim.clear_faults();
    while let Ok((at, line)) = run.lines.recv_timeout(Duration::from_millis(200)) {
        if let Some(n) = count(&line, "R ") {
            seen.push((at, n));
        }
    }
    Killed {
        seen,
        at,
        faults,
        in_flight,
    }
}

/// Appends an incomplete frame to the journal, as a torn write leaves.
fn tear_tail(dir: &std::path::Path) {
    let journal = dir.join(format!("metering-{USAGE}.journal"));
    let mut bytes = std::fs::read(&journal).expect("journal");
    bytes.extend_from_slice(&[0x55, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&journal, bytes).expect("damage");
}

/// Kills runs at random moments while the simulated hours they meter close
/// and their records are sent, answered late, or stored without an answer
/// reaching the process; every few runs a run stopped with SIGTERM (and
/// without faults) reports everything. Whatever a kill interrupts, what the
/// simulator accepted never exceeds what was recorded, falls short only by
/// what each kill caught between two checkpoints (nothing is given up as
/// unconfirmed: no record waits 6 hours), and every retry of a record is the
/// request first sent for it.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_at_most_a_checkpoint_and_never_overbills() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    // Frozen five minutes into an hour: only the test moves time.
    let start = UNIX_EPOCH + Duration::from_secs(H0) + Duration::from_mins(5);
    let sim = Simulator::start(frozen_config(start))
        .await
        .expect("simulator");
    let dir = state_dir("sigkill");
    let task = "AKIDCRASHKILL";
    let seeds = 0..12u64;
    // Units recorded at most and checkpointed at least, over all runs.
    let (mut upper, mut lower) = (0u64, 0u64);
    // Where each run's calls begin in the simulator's log, and its name.
    let mut runs: Vec<(u64, String)> = Vec::new();
    let mut block = Vec::new();
    let (mut in_flight_kills, mut hours_closed) = (0u32, 0u32);
    let began = Instant::now();
    for seed in seeds.clone() {
        let mut random = lcg(scramble(seed));
        let plan = Plan::new(seed, &mut random);
        runs.push((sim.calls().len() as u64 + 1, format!("seed {seed}")));
        let killed =
            tokio::task::block_in_place(|| kill_under_faults(&sim, task, &dir, &plan, &mut random));
        hours_closed += u32::from(plan.cross);
        in_flight_kills += u32::from(killed.in_flight > 0);
        let last = killed.seen.last().map_or(0, |(_, n)| *n);
        // Everything printed before the last checkpoint that certainly
        // preceded the kill is on disk.
        let durable = killed
            .seen
            .iter()
            .filter(|(at, _)| *at + CHECKPOINT + SLACK <= killed.at)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        upper += last + UNPRINTED;
        lower += durable;
        block.push(seed);
        eprintln!(
            "{:.1?} seed {seed}: {}; hour closed: {}; killed {} with {} request(s) in \
             flight; printed {last}, {durable} durable",
            began.elapsed(),
            killed.faults,
            plan.cross,
            if plan.aim {
                "once a report was sent"
            } else {
                "at a random moment"
            },
            killed.in_flight,
        );
        let got = accepted(&sim, task);
        assert!(
            got <= upper,
            "seed {seed}: billed {got} units but at most {upper} were recorded"
        );
        if let Err(e) = check_sends(&sim, task, &runs) {
            panic!("seed {seed}: {e}");
        }
        // Once, damage the journal's tail as a torn write would.
        if seed == 5 {
            tear_tail(&dir);
        }
        if !(seed + 1).is_multiple_of(RUNS_PER_DRAIN) && seed + 1 != seeds.end {
            continue;
        }
        // A run stopped cleanly, without faults, delivers everything the
        // journal holds; then requests of the killed run still delayed land.
        sim.clear_faults();
        let label = format!("the drain after seeds {block:?}");
        runs.push((sim.calls().len() as u64 + 1, label.clone()));
        let (exact, status) = tokio::task::block_in_place(|| {
            let run = spawn(&sim, task, &dir, true);
            std::thread::sleep(Duration::from_millis(100 + random() % 200));
            let stopped = terminate(run);
            std::thread::sleep(MAX_LATENCY.saturating_sub(killed.at.elapsed()));
            stopped
        });
        upper += exact;
        lower += exact;
        let got = accepted(&sim, task);
        assert!(
            got <= upper,
            "{label}: billed {got} units but at most {upper} were recorded"
        );
        assert!(
            got >= lower,
            "{label}: billed {got} units but at least {lower} were checkpointed before the kills"
        );
        if let Err(e) = check_drained(&status).and_then(|()| check_sends(&sim, task, &runs)) {
            panic!("{label}: {e}");
        }
        eprintln!(
            "{:.1?} {label}: {exact} exact; billed {got} of {lower}..={upper}",
            began.elapsed()
        );
        block.clear();
        // The next run starts in an hour of its own: this one was reported
        // at the signal, so usage still recorded in it would wait for the
        // next hour to close.
        sim.clock().advance(Duration::from_hours(1));
    }
    assert!(lower > 0, "the runs were too short to checkpoint anything");
    assert!(
        hours_closed > 0,
        "no run of seeds {seeds:?} saw its hour close"
    );
    assert!(
        in_flight_kills > 0,
        "no kill of seeds {seeds:?} landed while a request was in flight"
    );
    eprintln!("{in_flight_kills} kills with requests in flight, {hours_closed} hours closed");
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
    // Units recorded after the report at a signal (between the runtime's
    // handling of it and the program's) cannot go into the hour that report
    // took: they wait in the journal, and the next start reports them. Only
    // the last run's are still waiting, a few at most.
    let billed = accepted(&sim, task);
    assert!(
        billed <= recorded && billed + UNPRINTED >= recorded,
        "billed {billed} of {recorded} recorded"
    );
}

/// Kills a run and returns the last count it printed (every line it wrote
/// reaches the channel before the pipe closes).
fn kill_and_count(mut run: Run) -> u64 {
    signal(&run.child, "-KILL");
    let _ = run.child.wait();
    run.lines
        .iter()
        .filter_map(|(_, line)| count(&line, "R "))
        .max()
        .unwrap_or(0)
}

/// How many calls AWS answered with `DuplicateRequestException`.
fn duplicate_answers(sim: &Simulator) -> usize {
    sim.calls()
        .iter()
        .filter(|c| c.error_code.as_deref() == Some("DuplicateRequestException"))
        .count()
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
    // Units recorded after the report at the signal wait in the journal.
    let journaled = UNPRINTED;
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
        accepted(&sim, task) + journaled >= billed + exact,
        "this run's own usage is billed or journaled: {} + {journaled} < {billed} + {exact}; \
         {status}",
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
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    // B carries A's usage into its own first hour (no record of B's may
    // predate its start), reports that hour when it ends, then dies.
    std::thread::sleep(CHECKPOINT * 3);
    sim.clock().advance(Duration::from_hours(1));
    within(Duration::from_secs(20), || accepted(&sim, task) > 0);
    let billed_by_b = accepted(&sim, task);
    assert!(billed_by_b > 0, "run B reported nothing");
    upper += kill_and_count(run) + UNPRINTED;
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
    assert_eq!(
        duplicate_answers(&sim),
        0,
        "no hour of this task was sent twice"
    );
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
    within(Duration::from_secs(20), || accepted(&sim, task) >= before);
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

/// Sets or clears the immutable attribute of `dir` (`chattr`, as root on
/// ext4, xfs or btrfs).
fn immutable(dir: &Path, on: bool) {
    let flag = if on { "+i" } else { "-i" };
    let output = std::process::Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .output()
        .expect("chattr (e2fsprogs) must be installed");
    assert!(
        output.status.success(),
        "chattr {flag} failed: {} (this test needs root and a file system with immutable \
         attributes, such as ext4, xfs or btrfs, under target/)",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Clears the attribute even when the test fails, so `target/` stays
/// removable.
struct Mutable(PathBuf);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// Waits up to `limit` for `done`; returns whether it held.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A disk fault after the journal had been working, on a real file system:
/// the state directory becomes immutable under a running process, so the
/// journal can still be appended to but can be neither rewritten nor
/// removed, and falls behind memory. Reporting from memory now would leave
/// a journal that a restart replays into a second bill; nothing is sent
/// until the journal can be written again, and a crash meanwhile leaves a
/// journal that bills every hour once.
#[tokio::test(flavor = "multi_thread")]
async fn a_journal_that_can_be_neither_rewritten_nor_removed_holds_reports_back() {
    // One child at a time: the timing bounds assume no other crash test runs.
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let task = "AKIDCRASHSTUCK";
    let dir = state_dir("stuck");
    let _mutable = Mutable(dir.clone());
    // Run A journals an hour's usage and is killed.
    let a = tokio::task::block_in_place(|| run_and_kill(&sim, task, &dir));
    // Run B takes the journal over but cannot rewrite or remove it.
    sim.clock().advance(Duration::from_hours(1));
    immutable(&dir, true);
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    std::thread::sleep(CHECKPOINT * 3);
    sim.clock().advance(Duration::from_hours(1));
    let reported_while_stuck = within(CHECKPOINT * 15, || accepted(&sim, task) > 0);
    assert!(
        !reported_while_stuck,
        "usage was reported from memory while the journal could not follow"
    );
    // The directory can be written again: the journal is rewritten from
    // memory and the reports go out.
    immutable(&dir, false);
    assert!(
        within(Duration::from_secs(20), || accepted(&sim, task) > 0),
        "reports did not resume once the journal could be written"
    );
    // Stuck again, a new hour, then a crash.
    immutable(&dir, true);
    sim.clock().advance(Duration::from_hours(1));
    std::thread::sleep(CHECKPOINT * 10);
    let b = kill_and_count(run);
    immutable(&dir, false);
    // A new container on the same volume drains the journal.
    sim.clock().advance(Duration::from_hours(1));
    let run = tokio::task::block_in_place(|| spawn(&sim, task, &dir, true));
    std::thread::sleep(CHECKPOINT * 4);
    let (c, status) = tokio::task::block_in_place(|| terminate(run));
    let recorded = a + b + c + 2 * UNPRINTED;
    let billed = accepted(&sim, task);
    assert!(
        billed <= recorded,
        "billed {billed} of at most {recorded} recorded: an hour was billed twice; {status}"
    );
    assert_eq!(
        duplicate_answers(&sim),
        0,
        "no hour of this task was sent twice"
    );
}
