//! The `marketgate-sim` binary: its first stdout line, serving the real SDK,
//! clean exit on SIGTERM and SIGINT, `--example-config`, `--config`, and the
//! loopback guard.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_marketplacemetering::error::ProvideErrorMetadata;
use marketgate_simulator::{Config, EXAMPLE_TOML};

const BIN: &str = env!("CARGO_BIN_EXE_marketgate-sim");

/// A running `marketgate-sim`, killed if a test fails before stopping it.
struct Sim {
    child: Child,
    endpoint: String,
}

impl Sim {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("marketgate-sim starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("first line");
        let endpoint = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self { child, endpoint }
    }

    /// Sends `signal` (by name, e.g. TERM) to this child only, and waits for
    /// it to exit.
    fn stop(mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "marketgate-sim did not exit on SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn metering_client(endpoint: &str) -> aws_sdk_marketplacemetering::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(common::REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDSIMULATORBIN",
            "secret",
            None,
            None,
            "marketgate-simulator-tests",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    aws_sdk_marketplacemetering::Client::new(&sdk)
}

#[tokio::test]
async fn serves_the_sdk_and_exits_cleanly_on_sigterm() {
    let sim = Sim::spawn(&["--listen", "127.0.0.1:0"]);
    assert!(
        sim.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        sim.endpoint
    );
    assert!(!sim.endpoint.ends_with(":0"), "the real port is printed");
    let out = common::register_pro(&metering_client(&sim.endpoint).await)
        .await
        .expect("the example config serves the pro product");
    assert!(out.signature().is_some());
    let status = sim.stop("TERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn runs_a_config_file_and_exits_cleanly_on_sigint() {
    let dir = std::env::temp_dir().join(format!("mgsim-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("sim.toml");
    let config = EXAMPLE_TOML.replace("platform = \"ecs\"", "platform = \"unsupported\"");
    std::fs::write(&file, config).expect("write config");
    let sim = Sim::spawn(&["--config", file.to_str().expect("utf-8 path")]);
    let err = common::register_pro(&metering_client(&sim.endpoint).await)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_platform_not_supported_exception(),
        "{:?}",
        err.code()
    );
    let status = sim.stop("INT");
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn example_config_prints_exactly_the_built_in_example() {
    let output = Command::new(BIN)
        .arg("--example-config")
        .output()
        .expect("runs");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text, EXAMPLE_TOML);
    assert_eq!(
        Config::from_toml_str(&text).expect("parses"),
        Config::example()
    );
}

#[test]
fn refuses_non_loopback_addresses_and_bad_configs() {
    let output = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing is served");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let output = Command::new(BIN)
        .args(["--config", "/nonexistent/sim.toml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/sim.toml"));

    let output = Command::new(BIN).arg("--bogus").output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
}

/// The manifest check prints what the macros would embed: every product
/// with its tier, pricing and verification, and which features are paid
/// paths (granted by no free product).
#[test]
fn manifest_check_shows_the_catalog_and_its_paid_paths() {
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/custom/Marketplace.toml"
    );
    let out = Command::new(BIN)
        .args(["check-manifest", manifest])
        .output()
        .expect("marketgate-sim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"))
    };
    assert_eq!(line("usage "), "usage mgsim-usage-custom paid custom");
    assert_eq!(
        line("community "),
        "community mgsim-community-free free hourly"
    );
    assert_eq!(line("export "), "export paid path granted by usage");
    assert_eq!(line("search "), "search free granted by usage, community");
    assert_eq!(line("gb_scanned "), "gb_scanned metered by usage");
    assert!(
        line("verified by: RegisterUsage").contains("key version 1 (RSA 2048 bits)"),
        "{stdout}"
    );
}

/// A broken manifest gets the messages a build would give, and a failing
/// exit status; nothing is printed as if it were valid.
#[test]
fn manifest_check_reports_every_problem_and_fails() {
    let dir = std::env::temp_dir().join(format!("mgsim-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("Marketplace.toml");
    std::fs::write(
        &path,
        r#"
[[product]]
name = "pro"
code = "<paste the product code here>"
tier = "paid"
pricing = "hourly"
features = ["export"]

[[product]]
name = "pro"
code = "prod-ok"
tier = "free"
pricing = "custom"
"#,
    )
    .expect("write manifest");
    let out = Command::new(BIN)
        .args(["check-manifest", path.to_str().expect("utf-8 path")])
        .output()
        .expect("marketgate-sim runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for expected in [
        "is not an AWS product code",
        "needs `public-key",
        "a free product cannot use `custom` pricing",
        "needs `dimensions",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    let missing = Command::new(BIN)
        .args(["manifest", dir.join("nope.toml").to_str().expect("utf-8")])
        .output()
        .expect("marketgate-sim runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    let _ = std::fs::remove_dir_all(dir);
}
