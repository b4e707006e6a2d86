//! The log of every API call the simulator received, for tests to assert on
//! (retries included: each attempt is one call).

use serde::{Deserialize, Serialize};

use crate::faults::FaultKind;
use crate::operation::Service;

/// One received AWS API request and how it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// 1 for the first call, then counting up.
    pub seq: u64,
    /// When it arrived, simulated clock, epoch seconds.
    pub at: i64,
    /// The service its `X-Amz-Target` named, if any.
    pub service: Option<Service>,
    /// The operation name from `X-Amz-Target` (as sent, even if unknown).
    pub operation: String,
    /// The access key id of its credential scope, when it had one.
    pub access_key_id: Option<String>,
    /// The Region of its credential scope, when it had one.
    pub region: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error shape answered, for errors.
    pub error_code: Option<String>,
    /// The HTTP status answered; none for dropped connections.
    pub http_status: Option<u16>,
    /// The injected fault that decided the answer, if any.
    pub fault: Option<FaultKind>,
    /// The request's idempotency token (`ClientToken` of `MeterUsage` and
    /// `CheckoutLicense`), if it sent one.
    #[serde(default)]
    pub client_token: Option<String>,
    /// The request body as parsed JSON, so that tests can compare what
    /// attempts sent; none when the body was not JSON or was never read (an
    /// unknown operation, failed authentication).
    #[serde(default)]
    pub request: Option<serde_json::Value>,
    /// Whether the call changed the simulator's state: a success that stored
    /// something (a `RegisterUsage` registration, a new `MeterUsage` record, a
    /// checkout, an extension, a check-in; not an idempotent repeat or a
    /// dry run), and a [`FaultKind::StoreThenDrop`] or stored
    /// [`FaultKind::ServerError`] whose operation did. False for errors and
    /// for faults that answer without running the operation.
    #[serde(default)]
    pub stored: bool,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Answered with HTTP 200.
    Success,
    /// Answered with an error.
    Error,
    /// The connection was closed without an answer.
    Dropped,
}
