//! The AWS clients (official SDK) and how their errors are classified.
//!
//! Clients are built from a bare service config — Region, the default
//! credentials chain, no SDK retries (the runtime retries with its own
//! budget) — and never from `SdkConfig`, which is where the SDK applies
//! `AWS_ENDPOINT_URL*` and `endpoint_url` in AWS config files. Each client
//! gets an explicit endpoint from the compiled-in Region rule and an HTTP
//! client whose trust store is compiled in ([`crate::transport`]), so a
//! buyer who controls the container's environment and file system cannot
//! point these two services at a fake AWS. Only a build with the `dev`
//! cargo feature honours `MARKETGATE_ENDPOINT`, for the simulator.

pub(crate) mod credentials;
pub(crate) mod failure;
pub(crate) mod retry;
pub(crate) mod transport;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;

pub(crate) use failure::{AwsFailure, Delivery, Retry, classify};
use transport::{Trust, endpoints::EndpointError};

/// Environment variables that redirect AWS SDKs, which every build ignores
/// (`dev` builds follow `MARKETGATE_ENDPOINT` only).
pub(crate) const ENDPOINT_OVERRIDES: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
    "AWS_ENDPOINT_URL_LICENSE_MANAGER",
    "SMITHY_CLIENT_SDK_CUSTOM_PARTITION",
];

/// Environment variables that name certificate authorities to trust, which
/// builds without `dev` ignore (they trust only the compiled-in roots).
pub(crate) const TRUST_OVERRIDES: &[&str] = &["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The development endpoint variable (honoured only with the `dev` feature).
pub(crate) const DEV_ENDPOINT: &str = "MARKETGATE_ENDPOINT";

/// The two service clients.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub(crate) metering: aws_sdk_marketplacemetering::Client,
    pub(crate) licenses: aws_sdk_licensemanager::Client,
}

/// Where requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// AWS's own endpoints for the Region.
    Aws,
    /// A development endpoint (the simulator); `dev` builds only.
    #[cfg_attr(not(feature = "dev"), allow(dead_code))]
    Dev(String),
}

/// Logs every endpoint override present in the environment or AWS config
/// files that this build will not follow.
pub(crate) fn report_ignored_overrides(endpoint: &Endpoint) {
    let mut ignored: Vec<String> = ENDPOINT_OVERRIDES
        .iter()
        .filter(|v| std::env::var_os(v).is_some())
        .map(|v| (*v).to_owned())
        .collect();
    if let Some(file) = config_file_endpoint() {
        ignored.push(format!("endpoint_url in {file}"));
    }
    if *endpoint == Endpoint::Aws {
        ignored.extend(
            TRUST_OVERRIDES
                .iter()
                .filter(|v| std::env::var_os(v).is_some())
                .map(|v| (*v).to_owned()),
        );
    }
    #[cfg(not(feature = "dev"))]
    if std::env::var_os(DEV_ENDPOINT).is_some() {
        ignored.push(format!(
            "{DEV_ENDPOINT} (only builds with the `dev` feature read it)"
        ));
    }
    if !ignored.is_empty() {
        tracing::warn!(
            target: "marketgate",
            ignored = %ignored.join(", "),
            endpoint = ?endpoint,
            "ignoring AWS endpoint and trust overrides: AWS Marketplace Metering and License \
             Manager are always called at AWS's own endpoints, trusting only the Amazon Trust \
             Services roots built into this binary"
        );
    }
}

/// The AWS config file, if it sets `endpoint_url` anywhere.
fn config_file_endpoint() -> Option<String> {
    let path = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/config"))
        })?;
    let text = std::fs::read_to_string(&path).ok()?;
    text.lines()
        .any(|l| l.trim_start().starts_with("endpoint_url"))
        .then(|| path.display().to_string())
}

/// Builds both clients for `region`, signing with `credentials`
/// ([`credentials::provider`]): AWS's endpoints for it by the compiled-in
/// rule, or the development endpoint (`dev` builds).
#[allow(
    clippy::unused_async,
    reason = "async since it built the default chain; kept so that the public \
              `testing::simulation::Process::start`, which only awaits this, stays async"
)]
pub(crate) async fn clients(
    region: &str,
    endpoint: &Endpoint,
    credentials: SharedCredentialsProvider,
    call_timeout: Duration,
) -> Result<Clients, EndpointError> {
    // Checked in every build: the Region also goes into the signing scope.
    let aws = transport::endpoints::for_region(region)?;
    let partition = aws.partition;
    let (metering_url, licenses_url, trust) = match endpoint {
        Endpoint::Aws => (aws.metering, aws.license_manager, Trust::AwsRoots),
        // Plain HTTP (the simulator on loopback) needs no trust store:
        // loading the system's roots would only cost time.
        Endpoint::Dev(url) if url.starts_with("http://") => {
            (url.clone(), url.clone(), Trust::AwsRoots)
        }
        Endpoint::Dev(url) => (url.clone(), url.clone(), Trust::AwsRootsAndSystem),
    };
    tracing::debug!(
        target: "marketgate",
        %partition,
        metering = %metering_url,
        license_manager = %licenses_url,
        ?trust,
        "AWS endpoints"
    );
    let region = Region::new(region.to_owned());
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(call_timeout)
        .connect_timeout(call_timeout.min(Duration::from_secs(5)))
        .build();
    let http = transport::http_client(trust);

    let metering = aws_sdk_marketplacemetering::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.clone())
        .endpoint_url(metering_url)
        .http_client(http.clone())
        .credentials_provider(credentials.clone())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.clone());
    let licenses = aws_sdk_licensemanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .endpoint_url(licenses_url)
        .http_client(http)
        .credentials_provider(credentials)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    Ok(Clients {
        metering: aws_sdk_marketplacemetering::Client::from_conf(metering.build()),
        licenses: aws_sdk_licensemanager::Client::from_conf(licenses.build()),
    })
}
