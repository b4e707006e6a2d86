//! Disk faults after the journal had been working, on a real file system:
//! the test makes the state directory immutable (`chattr +i`, as root on
//! ext4, xfs or btrfs), so the journal can still be appended to but can be
//! neither rewritten nor removed, the worst case for a journal that falls
//! behind memory. Nothing leaves the machine: the simulator listens on
//! loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use marketgate_simulator::Simulator;

mod support;

use support::{config, serial};

const USAGE: &str = "mgsim-usage-custom";
/// The child's checkpoint interval.
const CHECKPOINT: Duration = Duration::from_millis(100);
/// Units the child's four threads can record between two printed counts.
const UNPRINTED: u64 = 4 * 12;

/// A child in its own namespaces, and the counts it prints.
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Starts `meter_load` plainly, on the same state directory.
fn spawn_plain(sim: &Simulator, task: &str, dir: &Path) -> Run {
    let mut command = sim.command(env!("CARGO_BIN_EXE_meter_load"), task);
    command
        .env("MARKETGATE_PRODUCT_CODE", USAGE)
        .env("MARKETGATE_STATE_DIR", dir)
        .env(
            "MARKETGATE_CHECKPOINT_INTERVAL_MS",
            CHECKPOINT.as_millis().to_string(),
        )
        .env("MARKETGATE_DEV_CLOCK", "simulator")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    start(command)
}

fn start(mut command: Command) -> Run {
    let mut child = command.spawn().expect("spawn meter_load");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("ready line");
    assert_eq!(first, "ready", "the load generator did not start");
    Run { child, lines }
}

/// Sets or clears the immutable attribute of `dir`.
fn immutable(dir: &Path, on: bool) {
    let output = Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(dir)
        .output()
        .expect("chattr (e2fsprogs) must be installed");
    assert!(
        output.status.success(),
        "chattr {} failed: {} (this test needs root and a file system with immutable \
         attributes, such as ext4, xfs or btrfs, under target/)",
        if on { "+i" } else { "-i" },
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Clears the attribute even when the test fails, so `target/` stays
/// removable.
struct Mutable(PathBuf);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn signal(run: &Run, name: &str) {
    let status = Command::new("kill")
        .args([name, &run.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The last count a run printed (after it ended: every line it wrote).
fn printed(run: &Run, prefix: &str) -> (u64, Vec<String>) {
    let lines: Vec<String> = run.lines.iter().collect();
    let n = lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .max()
        .unwrap_or(0);
    (n, lines)
}

fn accepted(sim: &Simulator, task: &str) -> u64 {
    sim.usage()
        .iter()
        .filter(|r| r.access_key_id == task && r.dimension == "api_calls")
        .map(|r| r.quantity.as_whole().expect("whole"))
        .sum()
}

fn state_dir(name: &str) -> PathBuf {
    let dir = support::state_dir("disk_faults", name);
    std::fs::create_dir_all(&dir).expect("state dir");
    // `mount` names mount points by their canonical path.
    dir.canonicalize().expect("canonical state dir")
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

/// The journal stops being rewritable under a working pipeline: the file
/// can be neither compacted nor removed, so it falls behind memory.
/// Reporting from memory now would leave a journal that a restart replays
/// into a second bill; nothing is sent until the journal can be written
/// again, and a crash meanwhile leaves a journal that bills every hour once.
#[tokio::test(flavor = "multi_thread")]
async fn a_journal_that_can_be_neither_rewritten_nor_removed_holds_reports_back() {
    let _serial = serial().await;
    let sim = Simulator::start(config()).await.expect("simulator");
    let task = "AKIDDISKSTUCK";
    let dir = state_dir("stuck");
    let _mutable = Mutable(dir.clone());
    // Run A journals an hour's usage and is killed.
    let run = tokio::task::block_in_place(|| spawn_plain(&sim, task, &dir));
    std::thread::sleep(CHECKPOINT * 4);
    signal(&run, "-KILL");
    let mut run = run;
    let _ = run.child.wait();
    let (a, _) = printed(&run, "R ");
    assert!(a > 0);
    // Run B takes the journal over but cannot rewrite or remove it.
    sim.clock().advance(Duration::from_hours(1));
    immutable(&dir, true);
    let run = tokio::task::block_in_place(|| spawn_plain(&sim, task, &dir));
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
    signal(&run, "-KILL");
    let mut run = run;
    let _ = run.child.wait();
    let (b, _) = printed(&run, "R ");
    immutable(&dir, false);
    // A new container on the same volume drains the journal.
    sim.clock().advance(Duration::from_hours(1));
    let run = tokio::task::block_in_place(|| spawn_plain(&sim, task, &dir));
    std::thread::sleep(CHECKPOINT * 4);
    signal(&run, "-TERM");
    let mut run = run;
    let status = run.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let (c, lines) = printed(&run, "F ");
    let recorded = a + b + c + 2 * UNPRINTED;
    let billed = accepted(&sim, task);
    assert!(
        billed <= recorded,
        "billed {billed} of at most {recorded} recorded: an hour was billed twice; {lines:?}"
    );
    let duplicates = sim
        .calls()
        .iter()
        .filter(|c| c.error_code.as_deref() == Some("DuplicateRequestException"))
        .count();
    assert_eq!(duplicates, 0, "no hour of this task was sent twice");
}
