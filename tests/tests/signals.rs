//! SIGTERM (what ECS and Kubernetes send before killing a task) checks the
//! license in and ends the process within the grace period, whether or not
//! the program handles the signal itself.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use marketgate_simulator::{CheckoutState, Simulator};

mod support;

fn spawn(sim: &Simulator, task: &str, args: &[&str]) -> Child {
    let mut child = sim
        .command(env!("CARGO_BIN_EXE_serve_until_signal"), task)
        .args(args)
        .env("MARKETGATE_PRODUCT_CODE", "mgsim-enterprise-contract")
        .env("MARKETGATE_SIGNAL_GRACE_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "ready", "the service did not start");
    // Keep reading, so that the program's later output has somewhere to go.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    child
}

fn terminate(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_ins(sim: &Simulator) -> usize {
    sim.calls()
        .iter()
        .filter(|c| c.operation == "CheckInLicense")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_ignores_sigterm_is_checked_in_and_exits_after_the_grace() {
    let sim = Simulator::start(support::config())
        .await
        .expect("simulator");
    let mut child = tokio::task::block_in_place(|| spawn(&sim, "AKIDSIGIGNORE", &[]));
    assert_eq!(sim.licenses().checkouts[0].state, CheckoutState::Active);
    let sent = Instant::now();
    terminate(&child);
    let code = tokio::task::block_in_place(|| wait(&mut child, Duration::from_secs(10)));
    assert_eq!(code, Some(143), "128 + SIGTERM");
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "the grace period was skipped"
    );
    assert_eq!(sim.licenses().checkouts[0].state, CheckoutState::CheckedIn);
    assert_eq!(check_ins(&sim), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_handles_sigterm_returns_normally_and_checks_in_once() {
    let sim = Simulator::start(support::config())
        .await
        .expect("simulator");
    let mut child =
        tokio::task::block_in_place(|| spawn(&sim, "AKIDSIGHANDLE", &["--handles-signals"]));
    terminate(&child);
    let code = tokio::task::block_in_place(|| wait(&mut child, Duration::from_secs(10)));
    assert_eq!(code, Some(0));
    assert_eq!(sim.licenses().checkouts[0].state, CheckoutState::CheckedIn);
    assert_eq!(
        check_ins(&sim),
        1,
        "the signal and the return of main check in once"
    );
}
