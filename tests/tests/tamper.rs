//! The tamper suite (issue 10): a release build talks to real AWS or to
//! nobody.
//!
//! Release binaries of the custom, contract and hourly examples, built as
//! `examples/Dockerfile` builds them, are started against a fake AWS
//! (`fake_aws`: the simulator behind TLS, with a certificate for AWS's real
//! host names from a CA the test makes) by every route a buyer who controls
//! the container has: the trust store (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the
//! CA appended to the system bundle) with `/etc/hosts` pointing AWS's names
//! at the fake, an intercepting proxy (`HTTPS_PROXY`, `https_proxy`,
//! `ALL_PROXY`), the SDK's partition file
//! (`SMITHY_CLIENT_SDK_CUSTOM_PARTITION`) renaming AWS's domain to the
//! buyer's, and the endpoint overrides (`AWS_ENDPOINT_URL*`, `endpoint_url`
//! in an AWS config file, `MARKETGATE_ENDPOINT`). On every route the binary
//! must exit non-zero saying the peer `is not from AWS`, run no paid
//! feature, and the simulator must have answered none of its requests.
//!
//! The positive control shows the fake works: `dev` builds pointed at it
//! through `MARKETGATE_ENDPOINT` and trusting its CA verify and run their
//! paid features, on every trust route and through both proxies. A
//! tunnelling `CONNECT` proxy sees the tunnel to the right AWS host name.
//!
//! Each outer test creates its own network and mount namespaces
//! (`unshare --net --mount --map-root-user`) and re-runs this test binary
//! inside them (the `#[ignore]`d `inner_*` tests), where `/etc/hosts` and
//! the CA bundle can be replaced without touching the machine's, port 443 is
//! free for the fake, and nothing but loopback exists. Every child process
//! and connection has a bounded lifetime.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use marketgate_simulator::{Config, Simulator};
use serde::{Deserialize, Serialize};
use support::fake_aws::child::{Finished, run_bounded};
use support::fake_aws::namespace::{self, BindMount, Namespaces, SYSTEM_BUNDLE, TrustFiles};
use support::fake_aws::pki::FakeCa;
use support::fake_aws::proxy::{self, INTERCEPTING, TUNNELLING};
use support::fake_aws::tls::{self, TERMINATOR};
use support::fake_aws::{
    AWS_SUFFIX, BUYER_DOMAIN, Event, LICENSE_MANAGER_HOST, METERING_HOST, REGION, Witness,
    buyer_host, connect_lines, fake_host_names, handshakes, server_names,
};
use support::standalone::{self, workspace};

/// What a start-up error must say when the peer's certificate is untrusted.
const NOT_FROM_AWS: &str = "is not from AWS";
/// Carries the [`Plan`] to the test binary inside the namespace.
const INNER: &str = "MARKETGATE_TAMPER_INNER";
/// Start-up retries give up after this (a transient failure is retried).
const STARTUP_TIMEOUT_SECS: &str = "2";
/// A seller binary still running after this is killed.
const RUN_LIMIT: Duration = Duration::from_secs(40);
/// The test binary inside a namespace is killed after this.
const NAMESPACE_LIMIT: Duration = Duration::from_mins(10);

// ---------------------------------------------------------------------------
// The binaries under test.

/// `target/tests/tamper`: its own target directory, so that these builds
/// never wait for (or invalidate) the outer `cargo test`'s.
fn target_dir() -> PathBuf {
    workspace().join("target").join("tests").join("tamper")
}

/// Runs `cargo <args> --offline --target-dir target/tests/tamper` in `dir`
/// with no build settings inherited from the outer cargo; returns how long
/// it took.
fn cargo(dir: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO"))
        .current_dir(dir)
        .args(args)
        .args(["--offline", "--target-dir"])
        .arg(target_dir())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("MARKETGATE_MANIFEST")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Paths of built binaries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Binaries {
    custom: Option<PathBuf>,
    contract: Option<PathBuf>,
    hourly: Option<PathBuf>,
    /// A seller program that logs (the examples install no subscriber), for
    /// the warning that it ignores the AWS endpoint overrides.
    seller: Option<PathBuf>,
}

impl Binaries {
    fn of(&self, example: &Example) -> &Path {
        let path = match example.tag {
            "CUSTOM" => &self.custom,
            "CONTRACT" => &self.contract,
            "HOURLY" => &self.hourly,
            _ => &self.seller,
        };
        path.as_deref()
            .unwrap_or_else(|| panic!("no {} binary in the plan", example.name))
    }
}

/// The examples as `examples/Dockerfile` builds them: one `cargo build
/// --release --locked --no-default-features` (so without `dev`), plus the
/// logging seller program built without `dev`. Built once per process.
fn release_binaries() -> &'static Binaries {
    static BUILT: OnceLock<Binaries> = OnceLock::new();
    BUILT.get_or_init(|| {
        let took = cargo(
            &workspace(),
            &[
                "build",
                "--release",
                "--locked",
                "--no-default-features",
                "-p",
                "marketgate-example-custom",
                "-p",
                "marketgate-example-contract",
                "-p",
                "marketgate-example-hourly",
            ],
        );
        eprintln!("tamper: release build of the examples: {took:.1?}");
        let seller = standalone::seller_crate(SELLER_NAME, &[], SELLER_MAIN, SELLER_MANIFEST);
        // tracing-subscriber's default `tracing-log` feature would change
        // `tracing-core`'s features and so rebuild the whole SDK for this
        // one binary; without it, the examples' release artifacts are reused.
        let manifest = seller.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("the seller's Cargo.toml");
        let lean = text.replace(
            "tracing-subscriber = \"0.3\"",
            "tracing-subscriber = { version = \"0.3\", default-features = false, \
             features = [\"fmt\", \"std\"] }",
        );
        assert_ne!(lean, text, "the seller's tracing-subscriber line moved");
        std::fs::write(&manifest, lean).expect("write the seller's Cargo.toml");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/pro.pem"),
            seller.join("pro.pem"),
        )
        .expect("copy the seller's key");
        let took = cargo(&seller, &["build", "--release", "--quiet"]);
        eprintln!("tamper: release build of the logging seller: {took:.1?}");
        let dir = target_dir().join("release");
        Binaries {
            custom: Some(dir.join("marketgate-example-custom")),
            contract: Some(dir.join("marketgate-example-contract")),
            hourly: Some(dir.join("marketgate-example-hourly")),
            seller: Some(dir.join(SELLER_NAME)),
        }
    })
}

/// `dev` builds (the examples' default features) of the custom and
/// contract examples, for the positive control. Built once per process.
fn dev_binaries() -> &'static Binaries {
    static BUILT: OnceLock<Binaries> = OnceLock::new();
    BUILT.get_or_init(|| {
        let took = cargo(
            &workspace(),
            &[
                "build",
                "-p",
                "marketgate-example-custom",
                "-p",
                "marketgate-example-contract",
            ],
        );
        eprintln!("tamper: dev build of the examples: {took:.1?}");
        let dir = target_dir().join("debug");
        Binaries {
            custom: Some(dir.join("marketgate-example-custom")),
            contract: Some(dir.join("marketgate-example-contract")),
            ..Binaries::default()
        }
    })
}

const SELLER_NAME: &str = "tamper-release-seller";

const SELLER_MAIN: &str = r#"fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    match marketgate::start_blocking(marketgate::catalog!()) {
        Ok(guard) => {
            println!("VERIFIED");
            guard.shutdown_blocking();
        }
        Err(e) => {
            eprintln!("REFUSED: {e}");
            std::process::exit(1);
        }
    }
}
"#;

const SELLER_MANIFEST: &str = "[[product]]\nname = \"pro\"\ncode = \"mgsim-pro-hourly\"\n\
    tier = \"paid\"\npricing = \"hourly\"\npublic-key = \"pro.pem\"\npublic-key-version = 1\n\
    features = [\"export\"]\n";

/// One program under test and what it prints when its paid features run.
#[derive(Clone, Copy, Debug)]
struct Example {
    name: &'static str,
    /// Upper case, for access key ids.
    tag: &'static str,
    /// The AWS host it calls first.
    host: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// Output lines of paid features start with one of these; a paid
    /// feature ran when such a line does not say `DENIED`.
    paid: &'static [&'static str],
    /// How many such lines a fully entitled run prints.
    paid_lines: usize,
}

const CUSTOM: Example = Example {
    name: "custom",
    tag: "CUSTOM",
    host: METERING_HOST,
    env: &[("MARKETGATE_PRODUCT_CODE", "mgsim-usage-custom")],
    paid: &["export(", "handle(", "scan("],
    paid_lines: 5,
};

const CONTRACT: Example = Example {
    name: "contract",
    tag: "CONTRACT",
    host: LICENSE_MANAGER_HOST,
    env: &[],
    paid: &["dashboard:", "sso_login:"],
    paid_lines: 2,
};

const HOURLY: Example = Example {
    name: "hourly",
    tag: "HOURLY",
    host: METERING_HOST,
    env: &[],
    paid: &["monthly_report:", "export_csv:"],
    paid_lines: 2,
};

const SELLER: Example = Example {
    name: "logging seller (hourly)",
    tag: "SELLER",
    host: METERING_HOST,
    env: &[],
    paid: &["VERIFIED"],
    paid_lines: 1,
};

/// The lines of `stdout` that show a paid feature of `example` running.
fn paid_features_run(example: &Example, stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| example.paid.iter().any(|p| l.starts_with(p)) && !l.contains("DENIED"))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// Outer tests: build, then run the inner test in fresh namespaces.

/// What the outer test hands to the test binary inside the namespace.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    release: Binaries,
    dev: Binaries,
    /// A directory for this namespace's files.
    scratch: PathBuf,
    /// The outer process's namespaces, which the inner must not be in.
    outer: Namespaces,
}

impl Plan {
    fn new(inner: &str, release: Binaries, dev: Binaries) -> Self {
        let scratch =
            std::env::temp_dir().join(format!("marketgate-{inner}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).expect("scratch directory");
        std::fs::write(scratch.join("partition.json"), namespace::partition_json())
            .expect("write the partition file");
        Self {
            release,
            dev,
            scratch,
            outer: Namespaces::current(),
        }
    }

    fn partition_file(&self) -> PathBuf {
        self.scratch.join("partition.json")
    }
}

/// Runs the `#[ignore]`d test `inner` inside new network and mount
/// namespaces (loopback up) and asserts that it passed.
fn in_namespace(inner: &str, plan: &Plan, envs: &[(&str, &Path)]) {
    let test_binary = std::env::current_exe().expect("this test binary");
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--mount", "--map-root-user", "sh", "-c"])
        .arg("ip link set lo up && exec \"$@\"")
        .arg("sh")
        .arg(test_binary)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, serde_json::to_string(plan).expect("plan"))
        .envs(envs.iter().copied());
    let out = run_bounded(&mut command, NAMESPACE_LIMIT);
    eprintln!("tamper: {inner} ran for {:.1?}", out.took);
    let _ = std::fs::remove_dir_all(&plan.scratch);
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("1 passed"),
        "{inner}, inside its own network namespace (unshare from util-linux), failed \
         ({:?}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    eprintln!("{}", out.stdout);
}

#[test]
fn release_builds_refuse_a_fake_aws_on_every_route() {
    let plan = Plan::new(
        "inner_release_routes",
        release_binaries().clone(),
        Binaries::default(),
    );
    in_namespace("inner_release_routes", &plan, &[]);
}

#[test]
fn a_tunnelling_proxy_sees_the_aws_host_name() {
    let plan = Plan::new(
        "inner_tunnelling_proxy",
        release_binaries().clone(),
        dev_binaries().clone(),
    );
    in_namespace("inner_tunnelling_proxy", &plan, &[]);
}

#[test]
fn the_fake_aws_serves_dev_builds_that_trust_it() {
    let plan = Plan::new(
        "inner_positive_control",
        Binaries::default(),
        dev_binaries().clone(),
    );
    // Only the inner process itself reads it (the SDK's endpoint resolver);
    // the programs it starts get a cleared environment.
    let partition = plan.partition_file();
    in_namespace(
        "inner_positive_control",
        &plan,
        &[("SMITHY_CLIENT_SDK_CUSTOM_PARTITION", &partition)],
    );
}

// ---------------------------------------------------------------------------
// Inside the namespace.

/// The plan from the outer test; panics when run any other way.
fn plan() -> Plan {
    let Ok(plan) = std::env::var(INNER) else {
        panic!("run through the outer tests of tamper.rs, which create a namespace for it");
    };
    serde_json::from_str(&plan).expect("the plan")
}

/// The fake AWS, set up inside the namespace.
struct Fake {
    sim: Simulator,
    ca: Arc<FakeCa>,
    witness: Witness,
    trust: TrustFiles,
    scratch: PathBuf,
    _hosts: BindMount,
}

/// One run of a program against the fake.
struct Outcome {
    finished: Finished,
    /// What the fake and the proxies saw during the run.
    events: Vec<Event>,
    /// Calls the simulator received with the run's access key.
    calls: usize,
}

impl Fake {
    async fn start(plan: &Plan) -> Self {
        Namespaces::assert_inside_other_than(&plan.outer);
        namespace::make_mounts_private();
        let hosts = plan.scratch.join("hosts");
        std::fs::write(&hosts, namespace::hosts_file()).expect("write the hosts file");
        let hosts = BindMount::new(&hosts, "/etc/hosts");
        let ca = Arc::new(FakeCa::new());
        let trust = TrustFiles::write(&plan.scratch, ca.pem());
        let sim = Simulator::start(Config::example())
            .await
            .expect("simulator");
        assert_eq!(sim.region(), REGION);
        let witness = Witness::default();
        tls::start_terminator(
            ca.server_config(&fake_host_names()),
            sim.local_addr(),
            witness.clone(),
        )
        .await;
        Self {
            sim,
            ca,
            witness,
            trust,
            scratch: plan.scratch.clone(),
            _hosts: hosts,
        }
    }

    /// Runs `binary` as `example` with the task's access key `key`, a
    /// cleared environment but for a throwaway task identity, and `env`.
    fn run(
        &self,
        binary: &Path,
        example: &Example,
        key: &str,
        env: &[(String, String)],
    ) -> Outcome {
        let state = self.scratch.join("state").join(key);
        std::fs::create_dir_all(&state).expect("state directory");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            )
            .env("MARKETGATE_STARTUP_TIMEOUT_SECS", STARTUP_TIMEOUT_SECS)
            .env("MARKETGATE_STATE_DIR", &state)
            .envs(example.env.iter().copied())
            .envs(env.iter().map(|(k, v)| (k, v)));
        let _ = self.witness.take();
        let finished = tokio::task::block_in_place(|| run_bounded(&mut command, RUN_LIMIT));
        let events = self.witness.take();
        let calls = self
            .sim
            .calls()
            .iter()
            .filter(|c| c.access_key_id.as_deref() == Some(key))
            .count();
        Outcome {
            finished,
            events,
            calls,
        }
    }
}

/// Results of one inner test, by route and program.
#[derive(Default)]
struct Report {
    table: String,
    failures: Vec<String>,
}

impl Report {
    fn add(&mut self, route: &str, example: &Example, outcome: &Outcome, problems: Vec<String>) {
        let what = format!(
            "{route} / {} ({:.2?}, exit {:?})",
            example.name,
            outcome.finished.took,
            outcome.finished.status.and_then(|s| s.code())
        );
        let name = format!("route `{route}`, {}", example.name);
        self.add_check(&what, &name, problems);
    }

    /// Adds a line `what` to the table; `problems` as failures of `name`.
    fn add_check(&mut self, what: &str, name: &str, problems: Vec<String>) {
        let verdict = if problems.is_empty() { "ok" } else { "FAILED" };
        let _ = writeln!(self.table, "  {verdict:6} {what}");
        for problem in problems {
            let _ = writeln!(self.table, "         - {problem}");
            self.failures.push(format!("{name}: {problem}"));
        }
    }

    /// Prints the table; panics listing every failure by route.
    fn finish(self, title: &str) {
        println!("{title}:\n{}", self.table);
        assert!(
            self.failures.is_empty(),
            "{title}: {} failure(s):\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The end of `text`, at most 1500 characters.
fn tail(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len().saturating_sub(1500);
    let tail: String = chars[start..].iter().collect();
    if start > 0 {
        format!("…{tail}")
    } else {
        tail
    }
}

/// What must hold besides the refusal itself, per route.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The fake on 127.0.0.1:443 saw a `ClientHello` for the program's AWS
    /// host: the route really sent it there.
    HelloAtFake,
    /// This proxy received `CONNECT <AWS host>:443`.
    ConnectAt(&'static str),
    /// The tunnelling proxy connected that tunnel to the fake.
    TunnelToFake,
    /// This proxy received nothing (`NO_PROXY`).
    NoConnectAt(&'static str),
    /// Every server name the fake saw is an `amazonaws.com` name and none
    /// is the buyer's domain.
    AwsNamesOnly,
    /// Programs that log must have logged each of these.
    Logged(&'static [&'static str]),
}

/// The problems with a run that must have been refused.
fn check_refused(example: &Example, outcome: &Outcome, expect: &[Expect]) -> Vec<String> {
    let Outcome {
        finished,
        events,
        calls,
    } = outcome;
    let mut problems = Vec::new();
    match finished.status {
        None => problems.push(format!("still running after {RUN_LIMIT:?}; killed")),
        Some(status) if status.success() => {
            problems.push("exited with status 0: start-up did not fail".to_owned());
        }
        Some(_) => {}
    }
    if !finished.stderr.contains(NOT_FROM_AWS) {
        problems.push(format!(
            "stderr does not say `{NOT_FROM_AWS}`; stderr: {}",
            tail(&finished.stderr)
        ));
    }
    let ran = paid_features_run(example, &finished.stdout);
    if !ran.is_empty() {
        problems.push(format!("paid features ran: {ran:?}"));
    }
    if *calls > 0 {
        problems.push(format!(
            "the fake AWS (simulator) received {calls} request(s) from this run"
        ));
    }
    let trusted = handshakes(events);
    if !trusted.is_empty() {
        problems.push(format!(
            "completed TLS handshakes with the fake, i.e. trusted its certificate: {trusted:?}"
        ));
    }
    for e in expect {
        problems.extend(check_expectation(*e, example, outcome));
    }
    problems
}

fn check_expectation(expect: Expect, example: &Example, outcome: &Outcome) -> Option<String> {
    let events = &outcome.events;
    let host = Some(example.host.to_owned());
    let connect = format!("CONNECT {}:443 ", example.host);
    match expect {
        Expect::HelloAtFake => {
            let names = server_names(events, TERMINATOR);
            (!names.contains(&host)).then(|| {
                format!(
                    "the fake saw no ClientHello for {}, so the route was not exercised \
                     (server names it saw: {names:?})",
                    example.host
                )
            })
        }
        Expect::ConnectAt(proxy) => {
            let lines = connect_lines(events, proxy);
            (!lines.iter().any(|l| l.starts_with(&connect))).then(|| {
                format!(
                    "the {proxy} received no `{}` (it received {lines:?})",
                    connect.trim_end()
                )
            })
        }
        Expect::TunnelToFake => {
            let tunnelled = events.iter().any(|e| {
                matches!(e, Event::Tunnel { target, to }
                    if *target == format!("{}:443", example.host) && to == tls::FAKE_ADDR)
            });
            (!tunnelled).then(|| {
                format!(
                    "the {TUNNELLING} opened no tunnel from {}:443 to the fake at {} \
                     (events: {events:?})",
                    example.host,
                    tls::FAKE_ADDR
                )
            })
        }
        Expect::NoConnectAt(proxy) => {
            let lines = connect_lines(events, proxy);
            (!lines.is_empty()).then(|| format!("the {proxy} was used despite NO_PROXY: {lines:?}"))
        }
        Expect::AwsNamesOnly => {
            let names: Vec<Option<String>> = [TERMINATOR, INTERCEPTING, TUNNELLING]
                .iter()
                .flat_map(|at| server_names(events, at))
                .collect();
            let foreign: Vec<&Option<String>> = names
                .iter()
                .filter(|n| {
                    n.as_deref()
                        .is_none_or(|n| !n.ends_with(AWS_SUFFIX) || n.contains(BUYER_DOMAIN))
                })
                .collect();
            if !foreign.is_empty() {
                Some(format!(
                    "it went to names other than *{AWS_SUFFIX} (the buyer's domain \
                     {BUYER_DOMAIN}?): {foreign:?}"
                ))
            } else if !names.contains(&host) {
                Some(format!(
                    "the fake saw no ClientHello for {} (server names: {names:?})",
                    example.host
                ))
            } else {
                None
            }
        }
        Expect::Logged(needles) => {
            let missing: Vec<&&str> = needles
                .iter()
                .filter(|n| example.tag == SELLER.tag && !outcome.finished.stderr.contains(**n))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "not logged: {missing:?}; stderr: {}",
                    tail(&outcome.finished.stderr)
                )
            })
        }
    }
}

/// The problems with a run that must have verified and run every paid
/// feature, through a handshake `at` for `host`.
fn check_served(example: &Example, outcome: &Outcome, at: &str, host: &str) -> Vec<String> {
    let Outcome {
        finished,
        events,
        calls,
    } = outcome;
    let mut problems = Vec::new();
    if !finished.status.is_some_and(|s| s.success()) {
        problems.push(format!(
            "did not exit 0 ({:?}); stderr: {}",
            finished.status,
            tail(&finished.stderr)
        ));
    }
    let ran = paid_features_run(example, &finished.stdout);
    if ran.len() != example.paid_lines {
        problems.push(format!(
            "expected {} paid features to run, got {ran:?}; stdout: {}",
            example.paid_lines, finished.stdout
        ));
    }
    if *calls == 0 {
        problems.push("the simulator received no request from this run".to_owned());
    }
    let expected = format!("{at} ({host})");
    let trusted = handshakes(events);
    if !trusted.contains(&expected) {
        problems.push(format!(
            "no completed handshake {expected} (handshakes: {trusted:?})"
        ));
    }
    problems
}

/// One way of pointing a program at the fake.
struct Route {
    name: &'static str,
    /// Upper case, for access key ids.
    tag: &'static str,
    env: Vec<(String, String)>,
    /// Mount the system bundle with the fake CA appended for this route.
    bundle: bool,
    examples: Vec<Example>,
    expect: Vec<Expect>,
}

fn env(pairs: &[(&str, &Path)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.display().to_string()))
        .collect()
}

/// Every route against the release binaries.
fn release_routes(fake: &Fake, intercepting: &str) -> Vec<Route> {
    let ca = fake.trust.ca_file.as_path();
    let all = vec![CUSTOM, CONTRACT, HOURLY];
    let intercept = |name, tag, var: &str| Route {
        name,
        tag,
        env: env(&[(var, Path::new(intercepting)), ("SSL_CERT_FILE", ca)]),
        bundle: false,
        examples: all.clone(),
        expect: vec![Expect::ConnectAt(INTERCEPTING)],
    };
    let trust = |name, tag, env| Route {
        name,
        tag,
        env,
        bundle: false,
        examples: all.clone(),
        expect: vec![Expect::HelloAtFake],
    };
    vec![
        trust(
            "SSL_CERT_FILE = the fake CA, /etc/hosts -> fake",
            "SSLFILE",
            env(&[("SSL_CERT_FILE", ca)]),
        ),
        trust(
            "SSL_CERT_DIR holds the fake CA (c_rehash name), /etc/hosts -> fake",
            "SSLDIR",
            env(&[("SSL_CERT_DIR", &fake.trust.cert_dir)]),
        ),
        Route {
            bundle: true,
            ..trust(
                "the fake CA appended to the system bundle, /etc/hosts -> fake",
                "BUNDLE",
                Vec::new(),
            )
        },
        intercept(
            "intercepting proxy in HTTPS_PROXY (+ SSL_CERT_FILE)",
            "HTTPSPROXY",
            "HTTPS_PROXY",
        ),
        intercept(
            "intercepting proxy in https_proxy (+ SSL_CERT_FILE)",
            "LOWERPROXY",
            "https_proxy",
        ),
        intercept(
            "intercepting proxy in ALL_PROXY (+ SSL_CERT_FILE)",
            "ALLPROXY",
            "ALL_PROXY",
        ),
        Route {
            name: "SMITHY_CLIENT_SDK_CUSTOM_PARTITION renames AWS's domain to the buyer's \
                   (+ SSL_CERT_FILE)",
            tag: "PARTITION",
            env: env(&[
                (
                    "SMITHY_CLIENT_SDK_CUSTOM_PARTITION",
                    &fake.scratch.join("partition.json"),
                ),
                ("SSL_CERT_FILE", ca),
            ]),
            bundle: false,
            examples: all.clone(),
            expect: vec![Expect::AwsNamesOnly],
        },
        endpoint_overrides_route(fake),
    ]
}

/// The endpoint overrides (all pointing at the simulator's plain HTTP
/// endpoint), which release builds ignore and log that they did.
fn endpoint_overrides_route(fake: &Fake) -> Route {
    let endpoint = fake.sim.endpoint();
    let config_file = fake.scratch.join("aws-config");
    std::fs::write(
        &config_file,
        format!(
            "[default]\nendpoint_url = {endpoint}\nservices = fake\n\n[services fake]\n\
             marketplace_metering =\n  endpoint_url = {endpoint}\nlicense_manager =\n  \
             endpoint_url = {endpoint}\n"
        ),
    )
    .expect("write the AWS config file");
    let mut env: Vec<(String, String)> = [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
        "AWS_ENDPOINT_URL_LICENSE_MANAGER",
        "MARKETGATE_ENDPOINT",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), endpoint.clone()))
    .collect();
    env.push((
        "AWS_CONFIG_FILE".to_owned(),
        config_file.display().to_string(),
    ));
    Route {
        name: "AWS_ENDPOINT_URL*, endpoint_url in AWS_CONFIG_FILE and MARKETGATE_ENDPOINT \
               -> the simulator",
        tag: "OVERRIDES",
        env,
        bundle: false,
        examples: vec![CUSTOM, CONTRACT, HOURLY, SELLER],
        expect: vec![
            Expect::HelloAtFake,
            Expect::Logged(&[
                "ignoring AWS endpoint",
                "AWS_ENDPOINT_URL,",
                "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
                "AWS_ENDPOINT_URL_LICENSE_MANAGER",
                "endpoint_url in ",
                "MARKETGATE_ENDPOINT (only builds with the `dev` feature read it)",
            ]),
        ],
    }
}

/// Runs `routes` against `binaries`, refusal expected, into `report`.
fn run_refused(fake: &Fake, binaries: &Binaries, routes: &[Route], report: &mut Report) {
    for route in routes {
        let _bundle = route
            .bundle
            .then(|| BindMount::new(&fake.trust.bundle, SYSTEM_BUNDLE));
        for example in &route.examples {
            let key = format!("AKID{}{}", route.tag, example.tag);
            let outcome = fake.run(binaries.of(example), example, &key, &route.env);
            let problems = check_refused(example, &outcome, &route.expect);
            report.add(route.name, example, &outcome, problems);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run inside its own namespaces by release_builds_refuse_a_fake_aws_on_every_route"]
async fn inner_release_routes() {
    let plan = plan();
    let fake = Fake::start(&plan).await;
    let intercepting = proxy::start_intercepting(
        Arc::clone(&fake.ca),
        fake.sim.local_addr(),
        fake.witness.clone(),
    )
    .await;
    let routes = release_routes(&fake, &format!("http://{intercepting}"));
    let mut report = Report::default();
    run_refused(&fake, &plan.release, &routes, &mut report);
    report.finish("release builds against the fake AWS");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run inside its own namespaces by a_tunnelling_proxy_sees_the_aws_host_name"]
async fn inner_tunnelling_proxy() {
    let plan = plan();
    let fake = Fake::start(&plan).await;
    let tunnel = format!(
        "http://{}",
        proxy::start_tunnelling(fake.witness.clone()).await
    );
    let mut report = Report::default();
    let routes = [
        Route {
            name: "HTTPS_PROXY = a tunnelling CONNECT proxy",
            tag: "TUNNEL",
            env: vec![("HTTPS_PROXY".to_owned(), tunnel.clone())],
            bundle: false,
            examples: vec![CUSTOM, CONTRACT, HOURLY],
            expect: vec![
                Expect::ConnectAt(TUNNELLING),
                Expect::TunnelToFake,
                Expect::HelloAtFake,
            ],
        },
        Route {
            name: "HTTPS_PROXY = the tunnelling proxy, NO_PROXY = amazonaws.com",
            tag: "NOPROXY",
            env: vec![
                ("HTTPS_PROXY".to_owned(), tunnel.clone()),
                ("NO_PROXY".to_owned(), "amazonaws.com".to_owned()),
            ],
            bundle: false,
            examples: vec![CUSTOM, CONTRACT],
            expect: vec![Expect::NoConnectAt(TUNNELLING), Expect::HelloAtFake],
        },
    ];
    run_refused(&fake, &plan.release, &routes, &mut report);

    // The tunnel carries a working connection: a dev build that trusts the
    // fake gets through it.
    let env = vec![
        ("HTTPS_PROXY".to_owned(), tunnel),
        (
            "MARKETGATE_ENDPOINT".to_owned(),
            format!("https://{METERING_HOST}"),
        ),
        (
            "SSL_CERT_FILE".to_owned(),
            fake.trust.ca_file.display().to_string(),
        ),
    ];
    let outcome = fake.run(plan.dev.of(&CUSTOM), &CUSTOM, "AKIDTUNNELDEV", &env);
    let mut problems = check_served(&CUSTOM, &outcome, TERMINATOR, METERING_HOST);
    problems.extend(check_expectation(
        Expect::ConnectAt(TUNNELLING),
        &CUSTOM,
        &outcome,
    ));
    report.add(
        "control: dev build through the tunnelling proxy, trusting the fake",
        &CUSTOM,
        &outcome,
        problems,
    );
    report.finish("the tunnelling proxy");
}

/// A `dev` build pointed at the fake, and how it reaches and trusts it.
struct Control {
    name: &'static str,
    tag: &'static str,
    example: Example,
    /// The `MARKETGATE_ENDPOINT` host.
    host: String,
    env: Vec<(String, String)>,
    bundle: bool,
    /// Where the handshake must complete.
    at: &'static str,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run inside its own namespaces by the_fake_aws_serves_dev_builds_that_trust_it"]
async fn inner_positive_control() {
    let plan = plan();
    let fake = Fake::start(&plan).await;
    let intercepting = proxy::start_intercepting(
        Arc::clone(&fake.ca),
        fake.sim.local_addr(),
        fake.witness.clone(),
    )
    .await;
    let ca = fake.trust.ca_file.as_path();
    let control = |name, tag, example, env| Control {
        name,
        tag,
        example,
        host: METERING_HOST.to_owned(),
        env,
        bundle: false,
        at: TERMINATOR,
    };
    let controls = [
        control(
            "SSL_CERT_FILE",
            "SSLFILE",
            CUSTOM,
            env(&[("SSL_CERT_FILE", ca)]),
        ),
        control(
            "SSL_CERT_FILE",
            "SSLFILE",
            CONTRACT,
            env(&[("SSL_CERT_FILE", ca)]),
        ),
        control(
            "SSL_CERT_DIR",
            "SSLDIR",
            CUSTOM,
            env(&[("SSL_CERT_DIR", &fake.trust.cert_dir)]),
        ),
        Control {
            bundle: true,
            ..control("the system bundle", "BUNDLE", CUSTOM, Vec::new())
        },
        Control {
            at: INTERCEPTING,
            ..control(
                "the intercepting proxy in HTTPS_PROXY",
                "PROXY",
                CUSTOM,
                env(&[
                    ("HTTPS_PROXY", Path::new(&format!("http://{intercepting}"))),
                    ("SSL_CERT_FILE", ca),
                ]),
            )
        },
        Control {
            host: buyer_host(METERING_HOST),
            ..control(
                "the buyer's domain",
                "BUYER",
                CUSTOM,
                env(&[("SSL_CERT_FILE", ca)]),
            )
        },
    ];
    let mut report = Report::default();
    for c in &controls {
        let _bundle = c
            .bundle
            .then(|| BindMount::new(&fake.trust.bundle, SYSTEM_BUNDLE));
        let mut env = c.env.clone();
        env.push((
            "MARKETGATE_ENDPOINT".to_owned(),
            format!("https://{}", c.host),
        ));
        let key = format!("AKIDDEV{}{}", c.tag, c.example.tag);
        let outcome = fake.run(plan.dev.of(&c.example), &c.example, &key, &env);
        let problems = check_served(&c.example, &outcome, c.at, &c.host);
        let name = format!(
            "control: dev build, MARKETGATE_ENDPOINT=https://{}, {}",
            c.host, c.name
        );
        report.add(&name, &c.example, &outcome, problems);
    }
    let what = format!(
        "control: SMITHY_CLIENT_SDK_CUSTOM_PARTITION sends the SDKs' own endpoint resolvers \
         to {BUYER_DOMAIN}"
    );
    let problems = partition_file_redirects_the_sdk().await;
    report.add_check(&what, "control: the partition file", problems);
    report.finish("dev builds that trust the fake AWS");
}

/// The partition file in `SMITHY_CLIENT_SDK_CUSTOM_PARTITION` (set for
/// this process by the outer test) makes the SDKs' own endpoint resolvers
/// send both services to the buyer's domain: the partition route is real
/// for any client that uses them.
async fn partition_file_redirects_the_sdk() -> Vec<String> {
    use aws_sdk_licensemanager::config::endpoint as lm;
    use aws_sdk_marketplacemetering::config::endpoint as metering;
    let mut problems = Vec::new();
    let params = metering::Params::builder()
        .region(REGION)
        .build()
        .expect("params");
    let resolved = <metering::DefaultResolver as metering::ResolveEndpoint>::resolve_endpoint(
        &metering::DefaultResolver::new(),
        &params,
    )
    .await
    .map(|e| e.url().to_owned());
    let want = format!("https://{}", buyer_host(METERING_HOST));
    if resolved.as_deref().ok() != Some(want.as_str()) {
        problems.push(format!(
            "the resolver does not send Metering to {want}: {resolved:?}"
        ));
    }
    let params = lm::Params::builder()
        .region(REGION)
        .build()
        .expect("params");
    let resolved = <lm::DefaultResolver as lm::ResolveEndpoint>::resolve_endpoint(
        &lm::DefaultResolver::new(),
        &params,
    )
    .await
    .map(|e| e.url().to_owned());
    let want = format!("https://{}", buyer_host(LICENSE_MANAGER_HOST));
    if resolved.as_deref().ok() != Some(want.as_str()) {
        problems.push(format!(
            "the resolver does not send License Manager to {want}: {resolved:?}"
        ));
    }
    problems
}
