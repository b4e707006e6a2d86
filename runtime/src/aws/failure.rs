//! A failed AWS call reduced to what decisions and messages need: whether
//! retrying can help, and whether AWS may have stored the request.

use std::error::Error as StdError;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_marketplacemetering::error::{ProvideErrorMetadata, SdkError};

use super::transport;

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
    /// AWS (or a proxy) answered with a client error (4xx): the request was
    /// not stored.
    Answered,
    /// The request never left the process (credentials, DNS, connecting).
    NotSent,
    /// It may have reached AWS (timeout or connection lost mid-request, an
    /// unreadable answer, a server error): it may have been stored.
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
/// (docs/aws-rules.md, "Retries"), so it must be here.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RateLimitExceededException",
    "InternalServiceErrorException",
    "ServerInternalException",
    "ServiceUnavailable",
    "RequestTimeout",
];

/// `e` and each of its sources, joined, skipping a source whose text the
/// chain already shows.
pub(super) fn error_chain(e: &(dyn StdError + 'static)) -> String {
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
                // A server error says nothing about whether the request was
                // stored: the service (or a gateway in front of it) may have
                // failed after storing it. Only a 4xx answer is certain.
                delivery: if status.is_some_and(|s| s >= 500) {
                    Delivery::Unknown
                } else {
                    Delivery::Answered
                },
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

#[cfg(test)]
mod tests {
    use aws_sdk_marketplacemetering::operation::meter_usage::MeterUsageError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::Response;

    use super::*;

    /// A handshake refused on the certificate, nested as hyper-rustls
    /// nests it: a rustls error inside an `io::Error`.
    fn untrusted_handshake() -> SdkError<MeterUsageError, Response> {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        SdkError::dispatch_failure(ConnectorError::io(Box::new(io)))
    }

    #[test]
    fn an_untrusted_certificate_is_recognised_and_never_a_reason_to_write_usage_off() {
        let failure = classify("MeterUsage", &untrusted_handshake());
        assert!(failure.is_untrusted_certificate(), "{failure:?}");
        // While running it is retried like an outage (start-up alone turns
        // it into a refusal), and the request never left the process.
        assert_eq!(failure.retry, Retry::Transient);
        assert_eq!(failure.delivery, Delivery::NotSent);
        assert!(failure.to_string().contains("is not from AWS"), "{failure}");
    }
}
