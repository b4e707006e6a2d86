//! Start-up verification for every pricing model, every refusal and every
//! tamper case, with the real AWS SDK clients talking to the simulator over
//! loopback.

use std::time::Duration;

use marketgate::{DenialReason, Options, RunState, StartError, status};
use marketgate_simulator::{
    CheckoutState, Config, EntitlementConfig, EntitlementUnit, Fault, KeyConfig, LicenseStatus,
    Operation, Outcome, Platform, Simulator, Subscription, Trigger,
};
use marketgate_tests::{AppError, api_call, basic, catalog, export};

mod support;

use support::{calls, config, eventually, serial, tamper_proxy};

const PRO: &str = "mgsim-pro-hourly";
const COMMUNITY: &str = "mgsim-community-free";
const USAGE: &str = "mgsim-usage-custom";
const ENTERPRISE: &str = "mgsim-enterprise-contract";

async fn simulator(config: Config) -> Simulator {
    Simulator::start(config).await.expect("start the simulator")
}

/// Options for one emulated task (the simulator tells tasks apart by access key).
fn options(endpoint: &str, code: &str, task: &str) -> Options {
    Options::default()
        .product_code(code)
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials(task, "not-a-real-secret")
        .startup_timeout(Duration::from_secs(10))
        .handle_signals(false)
        .state_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/tests/startup")
                .join(format!("{task}-{}", std::process::id())),
        )
}

fn denial(result: Result<impl Sized, AppError>) -> DenialReason {
    match result {
        Err(AppError::Denied(d)) => d.reason(),
        Err(other) => panic!("expected a denial, got {other}"),
        Ok(_) => panic!("expected a denial, got Ok"),
    }
}

#[tokio::test]
async fn hourly_verifies_the_signature_and_grants_paid_features() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDHOURLY"))
        .await
        .expect("verified");
    assert_eq!(export("q3"), Ok("report q3".to_owned()));
    let s = status();
    assert_eq!(s.state, RunState::Running);
    assert_eq!(s.product.as_ref().map(|p| p.name), Some("pro"));
    assert_eq!(s.features, ["basic", "export", "sso"]);
    assert!(s.aws["RegisterUsage"].ok);
    // Options::credentials: the static pair, not the default chain.
    assert_eq!(
        s.credentials
            .as_ref()
            .map(|c| (c.source, c.marketplace_accepts)),
        Some((marketgate::CredentialSource::DevStatic, Some(true)))
    );
    let register = calls(&sim, "RegisterUsage");
    assert_eq!(register.len(), 1);
    assert_eq!(register[0].outcome, Outcome::Success);
    assert_eq!(register[0].access_key_id.as_deref(), Some("AKIDHOURLY"));
    // Metering is a paid path of another product: still denied.
    assert!(api_call("x").is_err());

    guard.shutdown().await;
    assert_eq!(status().state, RunState::Stopped);
    assert_eq!(denial(export("q3")), DenialReason::NotVerified);
}

#[tokio::test]
async fn custom_pricing_dry_runs_every_dimension() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), USAGE, "AKIDCUSTOM"))
        .await
        .expect("verified");
    let mut dry_runs: Vec<String> = calls(&sim, "MeterUsage")
        .iter()
        .map(|c| format!("{:?}", c.outcome))
        .collect();
    dry_runs.sort();
    assert_eq!(dry_runs, ["Success", "Success", "Success"]);
    assert!(sim.usage().is_empty(), "a dry run records no usage");
    assert_eq!(api_call("ping"), Ok(4));
    assert_eq!(
        status().dimensions,
        ["api_calls", "gb-egress", "gb_scanned"]
    );
    guard.shutdown().await;
}

#[tokio::test]
async fn contract_checks_out_once_extends_rechecks_and_checks_in() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let opts = options(&sim.endpoint(), ENTERPRISE, "AKIDCONTRACT")
        .license_extend_interval(Duration::from_millis(50))
        .license_check_interval(Duration::from_millis(80));
    let guard = marketgate::start_with(catalog(), opts)
        .await
        .expect("verified");
    assert_eq!(export("q3"), Ok("report q3".to_owned()));
    assert_eq!(status().features, ["export", "seat", "sso"]);

    // Well past the 60-minute TTL on the simulated clock, in two steps with
    // extensions in between: the consumption must still be active.
    let extensions = || sim.licenses().checkouts[0].extensions;
    let before = extensions();
    sim.clock().advance(Duration::from_mins(50));
    eventually("an extension after the first jump", || {
        extensions() > before
    })
    .await;
    let before = extensions();
    sim.clock().advance(Duration::from_mins(50));
    eventually("an extension after the second jump", || {
        extensions() > before
    })
    .await;
    eventually("a license re-check", || {
        calls(&sim, "GetLicense").len() >= 2
    })
    .await;
    let view = sim.licenses();
    assert_eq!(
        view.checkouts.len(),
        1,
        "re-checks must not take another seat"
    );
    let checkout = &view.checkouts[0];
    assert_eq!(checkout.state, CheckoutState::Active);
    assert!(checkout.extensions >= 2, "{checkout:?}");
    assert!(calls(&sim, "GetLicense").len() >= 2);
    assert_eq!(calls(&sim, "CheckoutLicense").len(), 1);
    let seats = view.licenses[0]
        .entitlements
        .iter()
        .find(|e| e.name == "Seats")
        .map(|e| e.in_use);
    assert_eq!(seats, Some(1));
    let license = status().license.expect("license status");
    assert!(license.last_extended.is_some() && license.last_checked.is_some());

    guard.shutdown().await;
    let view = sim.licenses();
    assert_eq!(view.checkouts[0].state, CheckoutState::CheckedIn);
    assert_eq!(calls(&sim, "CheckInLicense").len(), 1);
}

fn entitlement(name: &str, unit: EntitlementUnit, max_count: Option<i64>) -> EntitlementConfig {
    EntitlementConfig {
        name: name.to_owned(),
        unit,
        value: (unit == EntitlementUnit::None).then(|| "Enabled".to_owned()),
        max_count,
        overage: false,
        allow_check_in: true,
    }
}

#[tokio::test]
async fn contract_upgrades_and_downgrades_appear_without_a_restart() {
    let _serial = serial().await;
    let seats_only = vec![entitlement("Seats", EntitlementUnit::Count, Some(5))];
    let mut config = config();
    config.licenses[0].entitlements = seats_only.clone();
    let sim = simulator(config).await;
    let opts = options(&sim.endpoint(), ENTERPRISE, "AKIDUPGRADE")
        .license_check_interval(Duration::from_millis(50));
    let guard = marketgate::start_with(catalog(), opts)
        .await
        .expect("verified");
    assert_eq!(status().features, ["seat"]);
    assert_eq!(
        denial(export("q3")),
        DenialReason::NotLicensed {
            product: "enterprise"
        }
    );

    let mut upgraded = seats_only.clone();
    upgraded.push(entitlement("ProEdition", EntitlementUnit::None, None));
    sim.set_license_entitlements("enterprise-contract", upgraded)
        .expect("upgrade");
    eventually("the upgrade", || export("q3").is_ok()).await;
    assert_eq!(export("q3"), Ok("report q3".to_owned()));
    assert_eq!(
        calls(&sim, "CheckoutLicense").len(),
        1,
        "no second checkout"
    );

    sim.set_license_entitlements("enterprise-contract", seats_only)
        .expect("downgrade");
    eventually("the downgrade", || export("q3").is_err()).await;
    assert_eq!(status().features, ["seat"]);
    guard.shutdown().await;
}

#[tokio::test]
async fn an_expired_contract_prevents_new_starts_but_not_a_running_one() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let opts = options(&sim.endpoint(), ENTERPRISE, "AKIDEXPIRY")
        .license_check_interval(Duration::from_millis(50));
    let guard = marketgate::start_with(catalog(), opts.clone())
        .await
        .expect("verified");
    sim.set_license_status("enterprise-contract", LicenseStatus::Expired)
        .expect("expire");
    // The running process keeps its checkout until the consumption's
    // deadline (tests/tests/lease.rs goes on to it), and says so.
    eventually("the expiry in status()", || {
        status().degraded.iter().any(|d| d.contains("EXPIRED"))
    })
    .await;
    assert!(export("q3").is_ok());
    guard.shutdown().await;

    let err = marketgate::start_with(
        catalog(),
        options(&sim.endpoint(), ENTERPRISE, "AKIDEXPIRY2").seat_wait(Duration::ZERO),
    )
    .await
    .expect_err("an expired license must not start");
    assert!(matches!(err, StartError::NotLicensed { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(export("q3").is_err());
}

#[tokio::test]
async fn a_free_code_unlocks_only_free_features() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    // The deployment passes the free listing's code where a paid one is expected.
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), COMMUNITY, "AKIDFREE"))
        .await
        .expect("AWS accepts the free code");
    assert_eq!(calls(&sim, "RegisterUsage")[0].outcome, Outcome::Success);
    assert_eq!(basic(), Ok("basic"));
    assert_eq!(
        denial(export("q3")),
        DenialReason::FreeTier {
            product: "community"
        }
    );
    assert!(api_call("x").is_err(), "metering is always a paid path");
    assert_eq!(status().features, ["basic"]);
    guard.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_product_code_is_refused_before_any_call() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let err = marketgate::start_with(
        catalog(),
        options(&sim.endpoint(), "someone-elses-free-code", "AKIDUNKNOWN"),
    )
    .await
    .expect_err("untrusted code");
    let message = err.to_string();
    assert!(
        matches!(err, StartError::UnknownProduct { .. }),
        "{message}"
    );
    assert!(
        message.contains("pro (mgsim-pro-hourly, paid hourly)"),
        "{message}"
    );
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn a_region_that_is_not_an_aws_region_is_refused_before_any_call() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    // Each would put something other than a Region into the AWS host name.
    for region in [
        "us-east-1.attacker.example",
        "us-east-1:8443",
        "cn-northwest-1",
    ] {
        let err = marketgate::start_with(
            catalog(),
            options(&sim.endpoint(), PRO, "AKIDBADREGION").region(region),
        )
        .await
        .expect_err(region);
        let message = err.to_string();
        assert!(
            matches!(err, StartError::Endpoint { .. }),
            "{region}: {message}"
        );
        assert!(
            message.contains(region) && message.contains("development options"),
            "the message names the value and its source: {message}"
        );
    }
    assert!(sim.calls().is_empty(), "{:?}", sim.calls());
}

#[tokio::test]
async fn off_ecs_eks_fargate_start_up_says_to_use_the_simulator() {
    let _serial = serial().await;
    let mut config = config();
    config.task.platform = Platform::Unsupported;
    let sim = simulator(config).await;
    let err = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDLAPTOP"))
        .await
        .expect_err("unsupported platform");
    assert!(matches!(err, StartError::NotOnAws(_)), "{err}");
    assert!(err.to_string().contains("marketgate-sim"), "{err}");
    assert_eq!(calls(&sim, "RegisterUsage").len(), 1, "not retried");
    assert_eq!(status().state, RunState::Refused);
}

#[tokio::test]
async fn a_region_mismatch_names_the_region_and_its_source() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let err = marketgate::start_with(
        catalog(),
        options(&sim.endpoint(), PRO, "AKIDREGION").region("eu-west-1"),
    )
    .await
    .expect_err("wrong region");
    let message = err.to_string();
    assert!(
        matches!(err, StartError::RegionMismatch { .. }),
        "{message}"
    );
    assert!(message.contains("called in eu-west-1"), "{message}");
    assert!(message.contains("InvalidRegionException"), "{message}");

    let err = marketgate::start_with(
        catalog(),
        options(&sim.endpoint(), USAGE, "AKIDREGION2").region("eu-west-1"),
    )
    .await
    .expect_err("wrong region");
    assert!(matches!(err, StartError::RegionMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("InvalidEndpointRegionException"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unsubscribed_buyer_is_refused_but_a_running_task_is_not_revoked() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    sim.set_subscription(PRO, Subscription::Never)
        .expect("subscription");
    let err = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDNEVER"))
        .await
        .expect_err("not subscribed");
    assert!(matches!(err, StartError::NotSubscribed { .. }), "{err}");
    assert!(
        err.to_string().contains("not subscribed to product `pro`"),
        "{err}"
    );

    sim.set_subscription(PRO, Subscription::Subscribed)
        .expect("subscription");
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDRUNNING"))
        .await
        .expect("verified");
    sim.set_subscription(PRO, Subscription::Unsubscribed)
        .expect("unsubscribe");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        export("q3").is_ok(),
        "an unsubscribe never revokes a running task"
    );
    guard.shutdown().await;
    // AWS: only a task's first call can be refused; a restart of the same
    // task (same credentials) registers again.
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDRUNNING"))
        .await
        .expect("a restarted task still registers");
    guard.shutdown().await;
}

#[tokio::test]
async fn a_simulator_signing_with_another_key_fails_the_signature_check() {
    let _serial = serial().await;
    let mut config = config();
    let pro = config
        .products
        .iter_mut()
        .find(|p| p.name == "pro")
        .expect("pro");
    pro.keys = vec![KeyConfig {
        version: 1,
        private_key: Some(
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../simulator/keys/license-issuer.key.pem"
            ))
            .expect("another key"),
        ),
        private_key_file: None,
        expires_at: None,
    }];
    let sim = simulator(config).await;
    let err = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDFORGED"))
        .await
        .expect_err("forged signature");
    assert!(
        matches!(
            err,
            StartError::Signature {
                source: marketgate::SignatureError::Invalid { version: 1 },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("possible tampering"), "{err}");
    assert!(export("q3").is_err());
}

#[tokio::test]
async fn a_signature_for_another_nonce_or_product_is_refused() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    // A man in the middle that replays a nonce: the signature is genuine but
    // answers another request.
    let proxy = tamper_proxy::start(&sim.endpoint(), |body| {
        tamper_proxy::replace_member(body, "Nonce", "replayed-nonce")
    })
    .await;
    let err = marketgate::start_with(catalog(), options(&proxy, PRO, "AKIDNONCE"))
        .await
        .expect_err("replayed nonce");
    assert!(
        matches!(
            err,
            StartError::Signature {
                source: marketgate::SignatureError::Mismatch { claim: "nonce", .. },
                ..
            }
        ),
        "{err}"
    );

    // One that registers the free product instead of the paid one.
    let proxy = tamper_proxy::start(&sim.endpoint(), |body| {
        tamper_proxy::replace_member(body, "ProductCode", COMMUNITY)
    })
    .await;
    let err = marketgate::start_with(catalog(), options(&proxy, PRO, "AKIDSWAP"))
        .await
        .expect_err("swapped product");
    assert!(matches!(err, StartError::Signature { .. }), "{err}");
    assert!(export("q3").is_err());
}

#[tokio::test]
async fn throttling_rate_limits_server_errors_and_dropped_connections_are_retried() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    sim.inject(
        Operation::RegisterUsage,
        Fault::Throttling,
        Trigger::NextCalls(2),
    )
    .expect("fault");
    sim.inject(
        Operation::RegisterUsage,
        Fault::InternalError,
        Trigger::NextCalls(1),
    )
    .expect("fault");
    sim.inject(
        Operation::RegisterUsage,
        Fault::DropConnection,
        Trigger::NextCalls(1),
    )
    .expect("fault");
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDRETRY"))
        .await
        .expect("verified after retries");
    let outcomes: Vec<Outcome> = calls(&sim, "RegisterUsage")
        .iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert_eq!(outcomes.last(), Some(&Outcome::Success));
    guard.shutdown().await;

    // License Manager's RateLimitExceededException, which the SDK itself does
    // not retry: one consumption, whatever the attempts.
    sim.inject(
        Operation::CheckoutLicense,
        Fault::RateLimitExceeded,
        Trigger::NextCalls(2),
    )
    .expect("fault");
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), ENTERPRISE, "AKIDRATE"))
        .await
        .expect("verified after retries");
    assert_eq!(calls(&sim, "CheckoutLicense").len(), 3);
    assert_eq!(sim.licenses().checkouts.len(), 1);
    guard.shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_the_start_up_budget() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::Probability(1.0),
    )
    .expect("fault");
    let err = marketgate::start_with(
        catalog(),
        options(&sim.endpoint(), USAGE, "AKIDBUDGET").startup_timeout(Duration::from_secs(1)),
    )
    .await
    .expect_err("budget spent");
    match &err {
        StartError::Unavailable { attempts, last, .. } => {
            assert!(*attempts >= 2, "{attempts}");
            assert_eq!(last.code.as_deref(), Some("ThrottlingException"));
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("MARKETGATE_STARTUP_TIMEOUT_SECS"),
        "{err}"
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_development_build_announces_itself_at_start_up() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The announcement is made on the thread that starts the runtime.
    let scope = tracing::subscriber::set_default(subscriber);
    let guard = marketgate::start_with(catalog(), options(&sim.endpoint(), PRO, "AKIDANNOUNCE"))
        .await
        .expect("verified");
    drop(scope);
    let status = status();
    guard.shutdown().await;
    let log = String::from_utf8(log.0.lock().expect("log buffer").clone()).expect("UTF-8");
    // This crate's tests build marketgate with both features.
    for (feature, allows) in [
        ("dev", "MARKETGATE_ENDPOINT"),
        ("testing", "grant entitlements without AWS"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("built with marketgate's `{feature}` feature")))
            .unwrap_or_else(|| panic!("no warning for `{feature}` in:\n{log}"));
        assert!(
            line.contains("WARN") && line.contains(allows) && line.contains("never ship"),
            "{line}"
        );
    }
    assert!(status.dev_build && status.testing_build);
}

#[tokio::test]
async fn status_serialises_for_a_health_endpoint() {
    let _serial = serial().await;
    let sim = simulator(config()).await;
    let guard = marketgate::start_with(
        catalog(),
        options(&sim.endpoint(), ENTERPRISE, "AKIDSTATUS"),
    )
    .await
    .expect("verified");
    let json = serde_json::to_value(status()).expect("serialise");
    assert_eq!(json["state"], "running");
    assert_eq!(json["product"]["name"], "enterprise");
    assert_eq!(json["product"]["pricing"], "contract");
    assert_eq!(json["region"]["name"], "us-east-1");
    assert_eq!(
        json["features"],
        serde_json::json!(["export", "seat", "sso"])
    );
    assert_eq!(json["aws"]["CheckoutLicense"]["ok"], true);
    assert!(
        json["license"]["license_arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:license-manager"))
    );
    assert_eq!(json["dev_build"], true);
    guard.shutdown().await;
}
