//! From an HTTP request to an AWS answer: route by `X-Amz-Target`,
//! authenticate, decide faults, read the body, run the operation (unless a
//! fault answers instead), log the call.

use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, Response};
use serde_json::Value;

use crate::calls::{CallRecord, Outcome};
use crate::faults::{Fault, FaultKind};
use crate::license_manager;
use crate::metering;
use crate::operation::{ErrorShape, Operation, Service, UNKNOWN_OPERATION_CODE};
use crate::protocol::{self, Body, Call, Input, Output};
use crate::sigv4::{self, Caller};
use crate::state::{Shared, State};
use crate::timestamp;

/// The largest request body accepted: 2500 allocations of 5 maximal tags
/// stay below it.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The message of the services' HTTP 500 errors.
const INTERNAL_MESSAGE: &str = "An internal error has occurred. Retry your request.";

/// The answer to an AWS request, or a dropped connection.
pub(crate) enum Reply {
    Respond(Response<Body>),
    Drop,
}

/// How the call will be logged.
#[derive(Default)]
struct Log {
    service: Option<Service>,
    operation: String,
    caller: Option<Caller>,
    fault: Option<FaultKind>,
    client_token: Option<String>,
    request: Option<Value>,
    stored: bool,
}

impl Log {
    fn record(self, shared: &Shared, outcome: Outcome, error: Option<&str>, status: Option<u16>) {
        let at = timestamp::epoch_secs(shared.clock.now());
        tracing::debug!(
            operation = %self.operation,
            outcome = ?outcome,
            error = error.unwrap_or(""),
            stored = self.stored,
            "AWS call"
        );
        let mut state = shared.state();
        let seq = state.calls.len() as u64 + 1;
        let (access_key_id, region) = self
            .caller
            .map_or((None, None), |c| (Some(c.access_key_id), Some(c.region)));
        state.calls.push(CallRecord {
            seq,
            at,
            service: self.service,
            operation: self.operation,
            access_key_id,
            region,
            outcome,
            error_code: error.map(str::to_owned),
            http_status: status,
            fault: self.fault,
            client_token: self.client_token,
            request: self.request,
            stored: self.stored,
        });
    }

    fn error(
        self,
        shared: &Shared,
        service: Service,
        status: u16,
        shape: &str,
        message: &str,
    ) -> Reply {
        self.record(shared, Outcome::Error, Some(shape), Some(status));
        Reply::Respond(protocol::error(service, status, shape, message))
    }

    /// Answers a [`Fault::ServerError`] (or [`Fault::InternalError`]): the
    /// operation's modelled server fault for 500, a load balancer's page for
    /// the others.
    fn server_error(self, shared: &Shared, operation: Operation, status: u16) -> Reply {
        if status == 500 {
            let shape = operation.generic_shapes().internal;
            return self.error(shared, operation.service(), 500, shape, INTERNAL_MESSAGE);
        }
        self.record(shared, Outcome::Error, None, Some(status));
        Reply::Respond(protocol::gateway_error(status))
    }
}

/// Serves one AWS API request.
pub(crate) async fn aws<B>(shared: &Shared, request: Request<B>) -> Reply
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let routed = Operation::from_target(&target);
    let mut log = Log {
        service: match routed {
            Ok(op) => Some(op.service()),
            Err(service) => service,
        },
        operation: target
            .split_once('.')
            .map_or(target.as_str(), |(_, op)| op)
            .to_owned(),
        ..Log::default()
    };
    let operation = match route(&parts, &target, routed) {
        Ok(op) => op,
        Err(message) => {
            let service = log.service.unwrap_or(Service::Metering);
            return log.error(shared, service, 400, UNKNOWN_OPERATION_CODE, &message);
        }
    };
    let service = operation.service();

    let caller = match sigv4::authenticate(&parts.headers, service, &shared.catalog.access_keys) {
        Ok(caller) => caller,
        Err((error, message)) => {
            return log.error(shared, service, 400, error.shape(), &message);
        }
    };
    log.caller = Some(caller.clone());
    // A task starts with its first authenticated request.
    shared
        .state()
        .task(&caller.access_key_id, shared.clock.now());

    // A fault may target one task, which the access key id names.
    let decision = shared.faults.decide(operation, &caller.access_key_id);
    if !decision.latency.is_zero() {
        log.fault = Some(FaultKind::Latency);
        tokio::time::sleep(decision.latency).await;
    }

    // The body is read even when a fault answers, so that the call log shows
    // what every attempt sent.
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes);
    log.request = bytes
        .as_ref()
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok());
    log.client_token = operation.client_token_member().and_then(|member| {
        log.request
            .as_ref()?
            .get(member)?
            .as_str()
            .map(str::to_owned)
    });

    let fault = decision.fault;
    if let Some(fault) = &fault {
        log.fault = Some(fault.kind());
        if !runs_first(fault) {
            return answer_instead(shared, operation, fault, log);
        }
    }

    let answer = match &bytes {
        Ok(_) => execute(shared, operation, &caller, &mut log),
        Err(error) => Err((
            400,
            operation.generic_shapes().malformed,
            format!("Could not read the request body: {error}"),
        )),
    };

    match fault {
        Some(Fault::StoreThenDrop) => {
            log.record(shared, Outcome::Dropped, None, None);
            Reply::Drop
        }
        Some(Fault::ServerError { status, .. }) => log.server_error(shared, operation, status),
        _ => match answer {
            Ok(output) => {
                log.record(shared, Outcome::Success, None, Some(200));
                Reply::Respond(protocol::success(&output))
            }
            Err((status, shape, message)) => log.error(shared, service, status, shape, &message),
        },
    }
}

/// Runs the operation on the request body in `log` and notes whether it
/// changed the state.
fn execute(shared: &Shared, operation: Operation, caller: &Caller, log: &mut Log) -> Wire {
    let Some(Value::Object(input)) = &log.request else {
        let message = "The request body must be a JSON object of the operation's members.";
        return Err((
            400,
            operation.generic_shapes().malformed,
            message.to_owned(),
        ));
    };
    let call = Call {
        catalog: &shared.catalog,
        caller,
        now: shared.clock.now(),
        input: Input(input),
    };
    let mut state = shared.state();
    let revision = state.revision;
    let answer = run(operation, &call, &mut state);
    log.stored = state.revision != revision;
    answer
}

/// `awsJson1_1` requests are `POST /` with the protocol's content type and a
/// target naming an emulated operation.
fn route(
    parts: &hyper::http::request::Parts,
    target: &str,
    routed: Result<Operation, Option<Service>>,
) -> Result<Operation, String> {
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match routed {
        _ if target.is_empty() => Err(
            "Missing X-Amz-Target header: name the operation as <Service>.<Operation>".to_owned(),
        ),
        Ok(op)
            if parts.method == Method::POST
                && parts.uri.path() == "/"
                && content_type.starts_with(protocol::CONTENT_TYPE) =>
        {
            Ok(op)
        }
        Ok(_) => Err(format!(
            "{target} must be sent as POST / with Content-Type: {}",
            protocol::CONTENT_TYPE
        )),
        Err(_) => Err(format!(
            "The simulator does not emulate operation {target:?}"
        )),
    }
}

/// Whether a fault lets the operation run (and keep its effect) before it
/// replaces the answer.
fn runs_first(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::StoreThenDrop | Fault::ServerError { stored: true, .. } | Fault::Latency(_)
    )
}

/// The answer of a fault that replaces the operation, which does not run.
fn answer_instead(shared: &Shared, operation: Operation, fault: &Fault, log: Log) -> Reply {
    let service = operation.service();
    match fault {
        Fault::DropConnection => {
            log.record(shared, Outcome::Dropped, None, None);
            Reply::Drop
        }
        Fault::Throttling | Fault::RateLimitExceeded => {
            let shape = operation.generic_shapes().throttling;
            log.error(shared, service, 400, shape, "Rate exceeded")
        }
        Fault::Error(code) => {
            // Rules are checked when added, so the code has a status.
            let status = operation.error_status(code).unwrap_or(400);
            log.error(
                shared,
                service,
                status,
                code,
                &error_message(operation, code),
            )
        }
        Fault::ServerError { status, .. } => log.server_error(shared, operation, *status),
        // Faults that run the operation first never get here.
        Fault::InternalError | Fault::StoreThenDrop | Fault::Latency(_) => {
            log.server_error(shared, operation, 500)
        }
    }
}

/// The message AWS gives the common access errors; the models' own errors
/// get a message that says where they came from.
fn error_message(operation: Operation, code: &str) -> String {
    let action = format!(
        "{}:{}",
        operation.service().signing_name(),
        operation.name()
    );
    match code {
        "AccessDeniedException" => {
            format!("User is not authorized to perform: {action}")
        }
        "ExpiredTokenException" => {
            "The security token included in the request is expired".to_owned()
        }
        "UnrecognizedClientException" => {
            "The security token included in the request is invalid.".to_owned()
        }
        "InvalidSignatureException" => "The request signature we calculated does not match the \
            signature you provided. Check your AWS Secret Access Key and signing method. Consult \
            the service documentation for details."
            .to_owned(),
        "IncompleteSignature" | "IncompleteSignatureException" => {
            "The request signature does not conform to AWS standards.".to_owned()
        }
        "MissingAuthenticationTokenException" => "Missing Authentication Token".to_owned(),
        _ => format!("{code} injected by a simulator fault for {action}"),
    }
}

/// A handler's answer as it goes on the wire: output, or status, shape and
/// message.
type Wire = Result<Value, (u16, &'static str, String)>;

fn run(operation: Operation, call: &Call<'_>, state: &mut State) -> Wire {
    fn wire<E: ErrorShape>(result: Output<E>) -> Wire {
        result.map_err(|f| (f.kind.status(), f.kind.shape(), f.message))
    }
    match operation {
        Operation::RegisterUsage => wire(metering::register_usage(call, state)),
        Operation::MeterUsage => wire(metering::meter_usage(call, state)),
        Operation::CheckoutLicense => wire(license_manager::checkout_license(call, state)),
        Operation::ExtendLicenseConsumption => {
            wire(license_manager::extend_license_consumption(call, state))
        }
        Operation::CheckInLicense => wire(license_manager::check_in_license(call, state)),
        Operation::GetLicense => wire(license_manager::get_license(call, state)),
        Operation::ListReceivedLicenses => {
            wire(license_manager::list_received_licenses(call, state))
        }
    }
}
