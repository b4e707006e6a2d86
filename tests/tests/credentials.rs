//! Which credential source the AWS SDK's default chain used (issue 15):
//! each source against a fake credentials endpoint, the runtime verifying
//! against the simulator with what the fake handed out.
//!
//! Each outer test runs one `#[ignore]`d `inner_*` test of this binary in a
//! child process with a cleared environment (only `PATH`, `HOME` and the
//! variables of the source under test; empty AWS config and credentials
//! files), inside its own network namespace (`unshare --net
//! --map-root-user`), where the fake listens at the source's real address
//! (`169.254.170.2`, `169.254.170.23`, `169.254.169.254`, added to the
//! namespace's `lo`) or on loopback, and nothing else exists: no request can
//! leave the machine, and the machine's own AWS settings play no part.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use marketgate::{CredentialSource, Options, StartError, status};
use marketgate_simulator::{Config, Platform, Simulator};
use marketgate_tests::catalog;
use support::fake_aws::child::run_bounded;
use support::{calls, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PRO: &str = "mgsim-pro-hourly";
const ENTERPRISE: &str = "mgsim-enterprise-contract";
/// The scratch directory, from the outer test to the inner.
const SCRATCH: &str = "MARKETGATE_CREDENTIALS_SCRATCH";
/// The token EKS Pod Identity and IRSA read from a file.
const TOKEN: &str = "fake-service-account-token";
/// Far enough ahead that the SDK never refreshes during a test.
const EXPIRATION: &str = "2099-01-01T00:00:00Z";
/// The inner test binary is killed after this.
const INNER_LIMIT: Duration = Duration::from_mins(5);

// ---------------------------------------------------------------------------
// Outer tests.

/// Runs `inner` in a new network namespace with `addresses` on `lo`, an
/// environment of only `envs` (plus `PATH`, `HOME`, empty AWS files and the
/// scratch directory), and asserts it passed.
fn run_inner(inner: &str, addresses: &[&str], envs: &[(&str, &str)]) {
    let scratch = std::env::temp_dir().join(format!(
        "marketgate-credentials-{inner}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    std::fs::write(scratch.join("config"), "").expect("empty AWS config");
    std::fs::write(scratch.join("credentials"), "").expect("empty AWS credentials");
    std::fs::write(scratch.join("token"), TOKEN).expect("token file");
    let mut setup = "ip link set lo up".to_owned();
    for address in addresses {
        let _ = write!(setup, " && ip addr add {address} dev lo");
    }
    setup.push_str(" && exec \"$@\"");
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--map-root-user", "sh", "-c"])
        .arg(setup)
        .arg("sh")
        .arg(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch)
        .env(SCRATCH, &scratch)
        .env("AWS_CONFIG_FILE", scratch.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", scratch.join("credentials"))
        .envs(
            envs.iter()
                .map(|(k, v)| (*k, v.replace("{scratch}", &scratch.display().to_string()))),
        );
    let out = run_bounded(&mut command, INNER_LIMIT);
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("1 passed"),
        "{inner}, in its own network namespace (unshare from util-linux), failed ({:?}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// IMDS is off unless the test is about it (in the namespace it would only
/// fail to connect, slowly, with retries).
const NO_IMDS: (&str, &str) = ("AWS_EC2_METADATA_DISABLED", "true");

#[test]
fn environment_variables() {
    run_inner(
        "inner_environment",
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEENV"),
            ("AWS_SECRET_ACCESS_KEY", "fake-secret"),
            NO_IMDS,
        ],
    );
}

#[test]
fn irsa_web_identity() {
    run_inner(
        "inner_web_identity",
        &[],
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "{scratch}/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/irsa"),
            ("AWS_ROLE_SESSION_NAME", "marketgate-test"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:4566"),
            NO_IMDS,
        ],
    );
}

#[test]
fn ecs_task_role() {
    run_inner(
        "inner_ecs_task_role",
        &["169.254.170.2/32"],
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/fake-task",
            ),
            NO_IMDS,
        ],
    );
}

#[test]
fn eks_pod_identity() {
    run_inner(
        "inner_eks_pod_identity",
        &["169.254.170.23/32"],
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "{scratch}/token"),
            NO_IMDS,
        ],
    );
}

#[test]
fn instance_metadata_node_role() {
    run_inner("inner_instance_metadata", &["169.254.169.254/32"], &[]);
}

#[test]
fn no_credentials_at_all() {
    run_inner("inner_no_credentials", &[], &[NO_IMDS]);
}

// ---------------------------------------------------------------------------
// Inside the namespace.

/// One request the fake received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

type Handler = fn(&Request) -> (u16, Vec<(&'static str, String)>, String);

/// A plain-HTTP fake credentials endpoint (one request per connection).
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Vec<Request>>>);

impl Fake {
    async fn start(addr: &str, handler: Handler) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind the fake at {addr}: {e}"));
        let fake = Fake::default();
        let seen = fake.0.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let (status, headers, body) = handler(&request);
                    seen.lock().expect("requests").push(request);
                    let mut head = format!(
                        "HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        let _ = write!(head, "{name}: {value}\r\n");
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        fake
    }

    fn requests(&self) -> Vec<Request> {
        self.0.lock().expect("requests").clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The container credentials JSON (ECS agent, Pod Identity agent, IMDS).
fn credentials_json(key: &str) -> String {
    serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": key,
        "SecretAccessKey": "fake-secret",
        "Token": "fake-session-token",
        "Expiration": EXPIRATION,
        "LastUpdated": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

/// Everything the runtime logs in this process.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = Captured(log.clone());
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        )
        .expect("the only subscriber of this process");
        log
    })
}

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&log().lock().expect("log")).into_owned()
}

fn scratch() -> PathBuf {
    PathBuf::from(std::env::var_os(SCRATCH).expect("run through the outer tests"))
}

/// Options for the default chain: no static credentials.
fn options(sim: &Simulator, code: &str) -> Options {
    Options::default()
        .product_code(code)
        .endpoint(sim.endpoint())
        .region("us-east-1")
        .startup_timeout(Duration::from_secs(2))
        .handle_signals(false)
        .state_dir(scratch().join("state"))
}

/// Starts `code` against a simulator with `config`, with the default chain.
async fn start(config: Config, code: &str) -> (Simulator, Result<marketgate::Guard, StartError>) {
    log();
    let sim = Simulator::start(config).await.expect("simulator");
    let result = marketgate::start_with(catalog(), options(&sim, code)).await;
    (sim, result)
}

/// The access key the simulator saw on `RegisterUsage`.
fn signed_with(sim: &Simulator) -> Vec<Option<String>> {
    calls(sim, "RegisterUsage")
        .into_iter()
        .map(|c| c.access_key_id)
        .collect()
}

/// Starts the hourly product and checks what the runtime reports: the
/// source in `status()` and in the start-up log line, and whether it warned.
async fn verifies_with(
    source: CredentialSource,
    key: &str,
    accepted: Option<bool>,
) -> Option<String> {
    let (sim, result) = start(config(), PRO).await;
    let guard = result.expect("verified");
    let credentials = status().credentials.expect("credentials in status()");
    guard.shutdown().await;
    assert_eq!(credentials.source, source, "{credentials:?}");
    assert_eq!(credentials.marketplace_accepts, accepted, "{credentials:?}");
    assert_eq!(signed_with(&sim), [Some(key.to_owned())]);
    let log = log_text();
    let line = log
        .lines()
        .find(|l| l.contains("verifying AWS Marketplace entitlement"))
        .unwrap_or_else(|| panic!("no start-up line in:\n{log}"));
    assert!(line.contains(&format!("credentials={source}")), "{line}");
    credentials.warning
}

#[tokio::test]
#[ignore = "run by environment_variables, in its own namespace"]
async fn inner_environment() {
    let warning = verifies_with(CredentialSource::Environment, "AKIDEXAMPLEENV", None).await;
    // Against the simulator (how every simulator run signs), no warning;
    // against AWS the runtime warns (unit-tested in the runtime).
    assert_eq!(warning, None);
}

#[tokio::test]
#[ignore = "run by irsa_web_identity, in its own namespace"]
async fn inner_web_identity() {
    let sts = Fake::start("127.0.0.1:4566", |request| {
        let ok = request.method == "POST"
            && request.body.contains("Action=AssumeRoleWithWebIdentity")
            && request.body.contains(&format!("WebIdentityToken={TOKEN}"));
        if !ok {
            return (400, vec![], String::new());
        }
        let xml = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult><Credentials>\
             <AccessKeyId>AKIDEXAMPLEIRSA</AccessKeyId><SecretAccessKey>fake-secret</SecretAccessKey>\
             <SessionToken>fake-session-token</SessionToken><Expiration>{EXPIRATION}</Expiration>\
             </Credentials><AssumedRoleUser>\
             <Arn>arn:aws:sts::111122223333:assumed-role/irsa/marketgate-test</Arn>\
             <AssumedRoleId>AROAEXAMPLE:marketgate-test</AssumedRoleId></AssumedRoleUser>\
             </AssumeRoleWithWebIdentityResult>\
             <ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata>\
             </AssumeRoleWithWebIdentityResponse>"
        );
        (200, vec![("Content-Type", "text/xml".to_owned())], xml)
    })
    .await;
    let warning = verifies_with(CredentialSource::WebIdentity, "AKIDEXAMPLEIRSA", Some(true)).await;
    assert_eq!(warning, None);
    assert!(!sts.requests().is_empty(), "STS was not asked");
}

#[tokio::test]
#[ignore = "run by ecs_task_role, in its own namespace"]
async fn inner_ecs_task_role() {
    let agent = Fake::start("169.254.170.2:80", |request| {
        if request.path == "/v2/credentials/fake-task" {
            (200, vec![], credentials_json("AKIDEXAMPLEECS"))
        } else {
            (404, vec![], String::new())
        }
    })
    .await;
    let warning = verifies_with(CredentialSource::EcsTaskRole, "AKIDEXAMPLEECS", Some(true)).await;
    assert_eq!(warning, None);
    assert!(
        agent
            .requests()
            .iter()
            .all(|r| r.path == "/v2/credentials/fake-task"),
        "{:?}",
        agent.requests()
    );
}

#[tokio::test]
#[ignore = "run by eks_pod_identity, in its own namespace"]
async fn inner_eks_pod_identity() {
    let agent = Fake::start("169.254.170.23:80", |request| {
        let authorised = request.headers.get("authorization").map(String::as_str) == Some(TOKEN);
        if request.path == "/v1/credentials" && authorised {
            (200, vec![], credentials_json("AKIDEXAMPLEPODID"))
        } else {
            (403, vec![], String::new())
        }
    })
    .await;

    // The simulator accepts any credentials: start-up succeeds, with the
    // source named and the warning giving the fix.
    let warning = verifies_with(
        CredentialSource::EksPodIdentity,
        "AKIDEXAMPLEPODID",
        Some(false),
    )
    .await
    .expect("a warning for Pod Identity");
    for needed in [
        "EKS Pod Identity",
        "does not accept",
        "eks.amazonaws.com/role-arn",
        "IRSA",
    ] {
        assert!(warning.contains(needed), "{needed:?} not in {warning}");
    }
    assert!(
        log_text()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("eks.amazonaws.com/role-arn")),
        "{}",
        log_text()
    );
    assert!(!agent.requests().is_empty());

    // AWS refuses such a call (here: the platform answer AWS gives to a
    // signer that is not a task or pod): the error names the source and fix.
    let mut refusing = config();
    refusing.task.platform = Platform::Unsupported;
    let (_sim, result) = start(refusing, PRO).await;
    let error = result.expect_err("refused");
    assert!(
        matches!(
            error,
            StartError::RefusedCredentials {
                credentials: CredentialSource::EksPodIdentity,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    for needed in [
        "PlatformNotSupportedException",
        "EKS Pod Identity",
        "eks.amazonaws.com/role-arn",
    ] {
        assert!(message.contains(needed), "{needed:?} not in {message}");
    }
    assert_eq!(
        status().refusal.as_deref(),
        Some(message.as_str()),
        "status() carries the same refusal"
    );

    // License Manager (contract pricing) has no such rule: no warning.
    let (_sim, result) = start(config(), ENTERPRISE).await;
    let guard = result.expect("verified");
    let credentials = status().credentials.expect("credentials");
    guard.shutdown().await;
    assert_eq!(credentials.source, CredentialSource::EksPodIdentity);
    assert_eq!(credentials.marketplace_accepts, Some(true));
    assert_eq!(credentials.warning, None);
}

#[tokio::test]
#[ignore = "run by instance_metadata_node_role, in its own namespace"]
async fn inner_instance_metadata() {
    let imds = Fake::start("169.254.169.254:80", |request| {
        let token = request
            .headers
            .get("x-aws-ec2-metadata-token")
            .map(String::as_str);
        match (request.method.as_str(), request.path.as_str(), token) {
            ("PUT", "/latest/api/token", _) => (
                200,
                vec![("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600".to_owned())],
                "fake-imds-token".to_owned(),
            ),
            ("GET", "/latest/meta-data/iam/security-credentials/", Some("fake-imds-token")) => {
                (200, vec![], "fake-node-role".to_owned())
            }
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/fake-node-role",
                Some("fake-imds-token"),
            ) => (200, vec![], credentials_json("AKIDEXAMPLEIMDS")),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let warning = verifies_with(
        CredentialSource::InstanceMetadata,
        "AKIDEXAMPLEIMDS",
        Some(false),
    )
    .await
    .expect("a warning for the node role");
    for needed in [
        "instance metadata",
        "does not accept",
        "eks.amazonaws.com/role-arn",
        "task role (taskRoleArn)",
    ] {
        assert!(warning.contains(needed), "{needed:?} not in {warning}");
    }
    assert!(imds.requests().iter().any(|r| r.method == "PUT"));
}

#[tokio::test]
#[ignore = "run by no_credentials_at_all, in its own namespace"]
async fn inner_no_credentials() {
    let (sim, result) = start(config(), PRO).await;
    let error = result.expect_err("no credentials");
    assert!(
        matches!(error, StartError::NoCredentials { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    for link in [
        "Environment",
        "Profile",
        "WebIdentityToken",
        "EcsContainer",
        "Ec2InstanceMetadata",
        "eks.amazonaws.com/role-arn",
    ] {
        assert!(message.contains(link), "{link:?} not in {message}");
    }
    assert!(sim.calls().is_empty(), "no AWS call without credentials");
    let credentials = status().credentials.expect("credentials in status()");
    assert_eq!(credentials.source, CredentialSource::Unknown);
    assert!(credentials.error.is_some());
}
