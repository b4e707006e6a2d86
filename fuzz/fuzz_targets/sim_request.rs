//! The simulator's request handling (the handler `server.rs` runs for every
//! request, called in-process through `marketgate_simulator::fuzzing`): no
//! request makes it panic, and every answer is one the service models or the
//! simulator's documentation describe.
//!
//! The input is up to eight requests separated by lines `###`, run in order
//! against a fresh simulator (the example config, clock frozen at
//! 2026-11-26T12:00:00Z). Each request is written like HTTP/1.1 without the
//! version: a line `METHOD PATH`, header lines `Name: value`, an empty line,
//! then the body. A header or request line `http` refuses is left out, as a
//! real server's parser would not pass it on. `$LicenseConsumptionToken` and
//! `$LicenseArn` in a body stand for the last such value an earlier answer
//! carried, so that sequences (check out, extend, check in) reach past the
//! random tokens.
//!
//! An AWS answer (any path outside `/_marketgate/`) must be:
//! - a success (HTTP 200, `application/x-amz-json-1.1`, a JSON object) of an
//!   operation the simulator emulates, or
//! - an error in the `awsJson1_1` format: `X-Amzn-Errortype` equal to the
//!   body's `__type`, the message in the member the service declares, and
//!   the type and status one of `UnknownOperationException` (400), the
//!   authentication errors (400), or an error of the operation's own
//!   handler (its model's shape and status), or
//! - only after an injected fault: that fault's answer (an injectable error
//!   with its status, a load balancer page for 502/503/504, a dropped
//!   connection).
//!
//! An inspection answer (`/_marketgate/...`) must be JSON with status 200,
//! 400, 404 or 405, `{"error": "..."}` unless 200.

#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use marketgate_simulator::fuzzing::Harness;
use marketgate_simulator::{AUTH_ERROR_CODES, Config, Operation, Service, UNKNOWN_OPERATION_CODE};
use serde_json::Value;

const AWS_JSON: &str = "application/x-amz-json-1.1";
const SEPARATOR: &[u8] = b"\n###\n";
const MAX_REQUESTS: usize = 8;
/// The members whose values later requests may refer to as `$Name`.
const REMEMBERED: [&str; 2] = ["LicenseConsumptionToken", "LicenseArn"];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    harness: Harness,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut config = Config::example();
    // 2026-11-26T12:00:00Z, as the simulator's tests use.
    config.clock.start = Some(UNIX_EPOCH + Duration::from_hours(498_804));
    config.clock.frozen = true;
    // Paused time: an injected latency passes at once.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a Tokio runtime");
    let harness = Harness::new(&config).expect("the example config is valid");
    Fixture { runtime, harness }
});

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    fixture.harness.reset();
    let mut remembered = BTreeMap::new();
    let mut faults_injected = false;
    for raw in split(data).take(MAX_REQUESTS) {
        let Some(request) = parse(raw, &remembered) else {
            continue;
        };
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let response = fixture.runtime.block_on(fixture.harness.handle(request));
        if path.starts_with("/_marketgate/") {
            let response = response.expect("the inspection API never drops a connection");
            check_inspection(&response);
            faults_injected |= method == Method::POST
                && path.trim_end_matches('/') == "/_marketgate/faults"
                && response.status() == StatusCode::OK;
        } else {
            match response {
                Some(response) => {
                    check_aws(&target, &response, faults_injected);
                    remember(response.body(), &mut remembered);
                }
                None => assert!(faults_injected, "dropped a connection without a fault"),
            }
        }
    }
});

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let data = rest?;
        if let Some(at) = data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            rest = Some(&data[at + SEPARATOR.len()..]);
            Some(&data[..at])
        } else {
            rest = None;
            Some(data)
        }
    })
}

fn parse(raw: &[u8], remembered: &BTreeMap<&'static str, String>) -> Option<Request<Bytes>> {
    let (head, body) = match raw.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&raw[..at], &raw[at + 2..]),
        None => (raw, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let request_line = lines.next()?;
    let (method, path) = match request_line.iter().position(|b| *b == b' ') {
        Some(at) => (&request_line[..at], &request_line[at + 1..]),
        None => (request_line, &b"/"[..]),
    };
    let mut builder = Request::builder()
        .method(Method::from_bytes(method).ok()?)
        .uri(Uri::try_from(path).ok()?);
    for line in lines {
        let Some(at) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..at]),
            HeaderValue::from_bytes(line[at + 1..].trim_ascii()),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    builder.body(substitute(body, remembered)).ok()
}

/// `body` with `$Name` replaced by the remembered value of `Name`.
fn substitute(body: &[u8], remembered: &BTreeMap<&'static str, String>) -> Bytes {
    let mut body = body.to_vec();
    for (name, value) in remembered {
        let placeholder = format!("${name}");
        while let Some(at) = body
            .windows(placeholder.len())
            .position(|w| w == placeholder.as_bytes())
        {
            body.splice(at..at + placeholder.len(), value.bytes());
        }
    }
    Bytes::from(body)
}

fn remember(body: &[u8], remembered: &mut BTreeMap<&'static str, String>) {
    fn walk(value: &Value, remembered: &mut BTreeMap<&'static str, String>) {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    if let (Some(name), Some(text)) =
                        (REMEMBERED.iter().find(|n| *n == key), value.as_str())
                    {
                        remembered.insert(name, text.to_owned());
                    }
                    walk(value, remembered);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, remembered)),
            _ => {}
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        walk(&value, remembered);
    }
}

/// The operation an `X-Amz-Target` names, and the service of its prefix.
fn route(target: &str) -> (Option<Operation>, Option<Service>) {
    let Some((prefix, name)) = target.split_once('.') else {
        return (None, None);
    };
    let service = [Service::Metering, Service::LicenseManager]
        .into_iter()
        .find(|s| s.target_prefix() == prefix);
    let operation = Operation::ALL
        .into_iter()
        .find(|op| Some(op.service()) == service && op.name() == name);
    (operation, service)
}

fn header<'a>(response: &'a Response<Bytes>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn check_aws(target: &str, response: &Response<Bytes>, faults_injected: bool) {
    let status = response.status().as_u16();
    let (operation, service) = route(target);
    let shown = || {
        format!(
            "{target:?} answered {status} {:?} {}",
            response.headers(),
            String::from_utf8_lossy(response.body())
        )
    };
    if matches!(status, 502..=504) {
        assert!(
            faults_injected,
            "a gateway error without a fault: {}",
            shown()
        );
        assert_eq!(header(response, "content-type"), Some("text/html"));
        assert!(header(response, "x-amzn-errortype").is_none());
        return;
    }
    assert_eq!(
        header(response, "content-type"),
        Some(AWS_JSON),
        "{}",
        shown()
    );
    assert!(
        header(response, "x-amzn-requestid").is_some(),
        "{}",
        shown()
    );
    let body: Value = serde_json::from_slice(response.body())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", shown()));
    let body = body
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {}", shown()));
    if status == 200 {
        assert!(
            operation.is_some(),
            "a success for no operation: {}",
            shown()
        );
        assert!(header(response, "x-amzn-errortype").is_none());
        return;
    }
    let kind = body.get("__type").and_then(Value::as_str);
    assert!(
        kind.is_some() && kind == header(response, "x-amzn-errortype"),
        "`__type` and X-Amzn-Errortype differ: {}",
        shown()
    );
    let kind = kind.unwrap_or_default();
    let service = operation.map(Operation::service).or(service);
    let member = match service {
        Some(Service::LicenseManager) => "Message",
        _ => "message",
    };
    assert!(
        body.get(member).is_some_and(Value::is_string),
        "no `{member}`: {}",
        shown()
    );
    let modelled = match operation {
        _ if kind == UNKNOWN_OPERATION_CODE => status == 400,
        None => false,
        Some(_) if AUTH_ERROR_CODES.contains(&kind) => status == 400,
        Some(op) => {
            let declared = op.injectable_errors().contains(&(kind, status));
            let handled = op.error_codes().contains(&kind);
            declared && (handled || faults_injected)
        }
    };
    assert!(modelled, "an error no model declares: {}", shown());
}

fn check_inspection(response: &Response<Bytes>) {
    let status = response.status().as_u16();
    let body = String::from_utf8_lossy(response.body());
    assert!(
        matches!(status, 200 | 400 | 404 | 405),
        "inspection answered {status}: {body}"
    );
    assert_eq!(
        response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{status} {body}"
    );
    let value: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {status} {body}"));
    if status != 200 {
        assert!(
            value.get("error").is_some_and(Value::is_string),
            "{status} {body}"
        );
    }
}
