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

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_marketplacemetering::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;

use crate::transport::{self, Trust, endpoints::EndpointError};

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

/// Builds both clients for `region`: AWS's endpoints for it by the
/// compiled-in rule, or the development endpoint (`dev` builds).
pub(crate) async fn clients(
    region: &str,
    endpoint: &Endpoint,
    static_credentials: Option<(String, String)>,
    call_timeout: Duration,
) -> Result<Clients, EndpointError> {
    // Checked in every build: the Region also goes into the signing scope.
    let aws = transport::endpoints::for_region(region)?;
    let partition = aws.partition;
    let (metering_url, licenses_url, trust) = match endpoint {
        Endpoint::Aws => (aws.metering, aws.license_manager, Trust::AwsRoots),
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
    let credentials = match static_credentials {
        Some((key, secret)) => SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(key, secret, None, None, "marketgate-dev"),
        ),
        None => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .region(region.clone())
                .build()
                .await,
        ),
    };
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

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Throttling, server faults, network trouble: retry with backoff.
    Transient,
    /// Anything else: retrying gives the same answer.
    Permanent,
}

/// Whether a failed request may have been stored by AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// AWS answered with an error: it did not store the request.
    Answered,
    /// The request never left the process (credentials, DNS, connecting).
    NotSent,
    /// It may have reached AWS (timeout or connection lost mid-request, an
    /// unreadable answer): it may have been stored.
    Unknown,
}

/// A failed AWS call, reduced to what decisions and messages need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsFailure {
    /// The operation (`RegisterUsage`, ...).
    pub operation: &'static str,
    /// The modelled error code (`ThrottlingException`, ...), if AWS answered.
    pub code: Option<String>,
    /// AWS's message, or the transport error.
    pub message: String,
    /// HTTP status, if AWS answered.
    pub status: Option<u16>,
    pub(crate) retry: Retry,
    pub(crate) delivery: Delivery,
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            // The runtime's own codes: the message says it all.
            (Some(code), _) if code.starts_with("marketgate:") => {
                write!(f, "{}: {}", self.operation, self.message)
            }
            (Some(code), _) => write!(f, "{} failed with {code}: {}", self.operation, self.message),
            (None, Some(status)) => {
                write!(
                    f,
                    "{} failed with HTTP {status}: {}",
                    self.operation, self.message
                )
            }
            (None, None) => write!(
                f,
                "{} could not reach AWS: {}",
                self.operation, self.message
            ),
        }
    }
}

impl StdError for AwsFailure {}

impl AwsFailure {
    /// Whether the failure is the credentials chain finding nothing.
    pub(crate) fn is_missing_credentials(&self) -> bool {
        self.code.as_deref() == Some(NO_CREDENTIALS)
    }

    /// Whether the TLS handshake failed because the peer's certificate does
    /// not chain to the trusted roots: whatever answered is not AWS.
    pub(crate) fn is_untrusted_certificate(&self) -> bool {
        self.code.as_deref() == Some(UNTRUSTED_CERTIFICATE)
    }
}

const NO_CREDENTIALS: &str = "marketgate:NoCredentials";
const UNTRUSTED_CERTIFICATE: &str = "marketgate:UntrustedCertificate";

/// Codes that mean "slow down or try later" for both services. License
/// Manager's `RateLimitExceededException` is not retried by the SDK itself
/// (AWS-FACTS §3), so it must be here.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RateLimitExceededException",
    "InternalServiceErrorException",
    "ServerInternalException",
    "ServiceUnavailable",
    "RequestTimeout",
];

fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// Whether a transport failure happened before the request left: name
/// resolution or connection establishment.
fn before_sending(e: &(dyn StdError + 'static)) -> bool {
    find::<aws_smithy_runtime_api::client::dns::ResolveDnsError>(e).is_some()
        || find::<hyper_util::client::legacy::Error>(e)
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

/// Classifies an SDK error.
pub(crate) fn classify<E, R>(operation: &'static str, error: &SdkError<E, R>) -> AwsFailure
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: fmt::Debug + 'static,
    SdkError<E, R>: StdError + 'static,
{
    if let Some(creds) = find::<CredentialsError>(error) {
        let retry = match creds {
            CredentialsError::CredentialsNotLoaded(_) => Retry::Permanent,
            _ => Retry::Transient,
        };
        return AwsFailure {
            operation,
            code: matches!(retry, Retry::Permanent).then(|| NO_CREDENTIALS.to_owned()),
            message: error_chain(error),
            status: None,
            retry,
            delivery: Delivery::NotSent,
        };
    }
    // Before anything else reaches AWS: a certificate that does not chain to
    // the compiled-in roots means something else answered. Retried like any
    // network failure while running (an interceptor may go away, and usage
    // must never be written off because of one); start-up refuses at once.
    if let Some(problem) = transport::untrusted_certificate(error) {
        return AwsFailure {
            operation,
            code: Some(UNTRUSTED_CERTIFICATE.to_owned()),
            message: format!(
                "the TLS certificate that answered is not from AWS: it does not chain to the \
                 Amazon Trust Services roots built into this binary ({problem})"
            ),
            status: None,
            retry: Retry::Transient,
            delivery: Delivery::NotSent,
        };
    }
    match error {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().map(str::to_owned);
            let status = raw_status(ctx.raw());
            let transient = code
                .as_deref()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || status.is_some_and(|s| s >= 500);
            AwsFailure {
                operation,
                message: ctx.err().message().unwrap_or("no message").to_owned(),
                code,
                status,
                retry: if transient {
                    Retry::Transient
                } else {
                    Retry::Permanent
                },
                delivery: Delivery::Answered,
            }
        }
        SdkError::ConstructionFailure(_) => AwsFailure {
            operation,
            code: None,
            message: error_chain(error),
            status: None,
            retry: Retry::Permanent,
            delivery: Delivery::NotSent,
        },
        // Timeouts, connection failures, unparsable responses: the network
        // or the service is having a bad moment.
        _ => AwsFailure {
            operation,
            code: None,
            message: error_chain(error),
            status: None,
            retry: Retry::Transient,
            delivery: if before_sending(error) {
                Delivery::NotSent
            } else {
                Delivery::Unknown
            },
        },
    }
}

fn raw_status<R: fmt::Debug + 'static>(raw: &R) -> Option<u16> {
    (raw as &dyn std::any::Any)
        .downcast_ref::<aws_smithy_runtime_api::http::Response>()
        .map(|r| r.status().as_u16())
}
