//! From an HTTP request to an AWS answer: route by `X-Amz-Target`,
//! authenticate, apply faults, read the body, run the operation, log the call.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::Value;

use crate::calls::{CallRecord, Outcome};
use crate::faults::{Action, FaultKind};
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

/// The answer to an AWS request, or a dropped connection.
pub(crate) enum Reply {
    Respond(Response<Body>),
    Drop,
}

/// How the call will be logged.
struct Log {
    service: Option<Service>,
    operation: String,
    caller: Option<Caller>,
    fault: Option<FaultKind>,
}

impl Log {
    fn record(self, shared: &Shared, outcome: Outcome, error: Option<&str>, status: Option<u16>) {
        let at = timestamp::epoch_secs(shared.clock.now());
        tracing::debug!(
            operation = %self.operation,
            outcome = ?outcome,
            error = error.unwrap_or(""),
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
}

/// Serves one AWS API request.
pub(crate) async fn aws(shared: &Shared, request: Request<Incoming>) -> Reply {
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
        caller: None,
        fault: None,
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

    let log = match apply_faults(shared, operation, log).await {
        Ok(log) => log,
        Err(reply) => return reply,
    };

    let malformed = operation.generic_shapes().malformed;
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let message = format!("Could not read the request body: {error}");
            return log.error(shared, service, 400, malformed, &message);
        }
    };
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(&bytes) else {
        let message = "The request body must be a JSON object of the operation's members.";
        return log.error(shared, service, 400, malformed, message);
    };

    let call = Call {
        catalog: &shared.catalog,
        caller: &caller,
        now: shared.clock.now(),
        input: Input(&input),
    };
    let answer = run(operation, &call, &mut shared.state());
    match answer {
        Ok(output) => {
            log.record(shared, Outcome::Success, None, Some(200));
            Reply::Respond(protocol::success(&output))
        }
        Err((status, shape, message)) => log.error(shared, service, status, shape, &message),
    }
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

/// Applies injected faults: waits out latency, then answers with the fault's
/// error or drops the connection if one fired; otherwise hands the log back.
async fn apply_faults(shared: &Shared, operation: Operation, mut log: Log) -> Result<Log, Reply> {
    let decision = shared.faults.decide(operation);
    if !decision.latency.is_zero() {
        log.fault = Some(FaultKind::Latency);
        tokio::time::sleep(decision.latency).await;
    }
    let Some(action) = decision.action else {
        return Ok(log);
    };
    let service = operation.service();
    let shapes = operation.generic_shapes();
    Err(match action {
        Action::Drop => {
            log.fault = Some(FaultKind::DropConnection);
            log.record(shared, Outcome::Dropped, None, None);
            Reply::Drop
        }
        Action::Throttle => {
            log.fault = Some(match service {
                Service::Metering => FaultKind::Throttling,
                Service::LicenseManager => FaultKind::RateLimitExceeded,
            });
            log.error(shared, service, 400, shapes.throttling, "Rate exceeded")
        }
        Action::Internal => {
            log.fault = Some(FaultKind::InternalError);
            log.error(
                shared,
                service,
                500,
                shapes.internal,
                "An internal error has occurred. Retry your request.",
            )
        }
    })
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
