//! The `awsJson1_1` wire protocol: reading request members and writing
//! responses and errors the way AWS does.
//!
//! Requests are `POST /` with `Content-Type: application/x-amz-json-1.1` and
//! `X-Amz-Target: <targetPrefix>.<Operation>`; the body is a JSON object with
//! the model's `PascalCase` member names, `null` meaning absent. Errors carry
//! the bare shape name in the body's `__type` (botocore reads only that) and
//! in `X-Amzn-Errortype` (the Rust SDK prefers it), plus the message in the
//! member the shape declares.

use std::time::SystemTime;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::ids;
use crate::operation::{ErrorShape, Failure, Service};
use crate::sigv4::Caller;

/// The content type of every request and response.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

/// A successful response with `body` as JSON.
pub(crate) fn success(body: &Value) -> Response<Body> {
    json(StatusCode::OK, body, None)
}

/// An error response in the service's error format.
pub(crate) fn error(service: Service, status: u16, shape: &str, message: &str) -> Response<Body> {
    let mut body = Map::new();
    body.insert("__type".to_owned(), Value::from(shape));
    body.insert(service.message_member().to_owned(), Value::from(message));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, &Value::Object(body), Some(shape))
}

/// What a load balancer in front of an AWS service answers when the service
/// fails (502), is overloaded (503) or too slow (504): an HTML page no model
/// describes, without `X-Amzn-Errortype` or a request id, as Elastic Load
/// Balancing's own error pages are.
pub(crate) fn gateway_error(status: u16) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let title = format!(
        "{} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/html")
        .body(Full::new(Bytes::from(page.clone())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from(page))))
}

fn json(status: StatusCode, body: &Value, error_type: Option<&str>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amzn-requestid", ids::uuid());
    if let Some(shape) = error_type {
        builder = builder.header("x-amzn-errortype", shape);
    }
    let bytes = Bytes::from(body.to_string());
    builder
        .body(Full::new(bytes.clone()))
        // Only invalid header values make the builder fail, and the shape names
        // and ids are ASCII; fall back to a bare response all the same.
        .unwrap_or_else(|_| Response::new(Full::new(bytes)))
}

/// What a handler gets besides the mutable state: the request's members and
/// who sent it when.
pub(crate) struct Call<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) caller: &'a Caller,
    pub(crate) now: SystemTime,
    pub(crate) input: Input<'a>,
}

/// What a handler answers: the operation's output members, or one of the
/// errors its model declares.
pub(crate) type Output<E> = Result<Value, Failure<E>>;

/// The message AWS's request validation gives a member that breaks a
/// constraint of the model ("1 validation error detected: ..."), as License
/// Manager's `ValidationException` carries it.
pub(crate) fn validation(member: &str, constraint: &str) -> String {
    format!(
        "1 validation error detected: Value at '{member}' failed to satisfy constraint: {constraint}"
    )
}

/// Typed, null-aware access to a request's members. A member of the wrong
/// JSON type, or a required member that is absent, is answered with the
/// operation's error `invalid` (each operation picks the error its model
/// declares for that member).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a>(pub(crate) &'a Map<String, Value>);

impl<'a> Input<'a> {
    fn member<T, E>(
        self,
        name: &str,
        invalid: E,
        expected: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, Failure<E>> {
        match self.0.get(name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(value) => read(value)
                .map(Some)
                .ok_or_else(|| Failure::new(invalid, format!("{name} must be {expected}"))),
        }
    }

    /// A string member.
    pub(crate) fn str<E>(self, name: &str, invalid: E) -> Result<Option<&'a str>, Failure<E>> {
        self.member(name, invalid, "a string", Value::as_str)
    }

    /// An integer member; a JSON number with a fraction is a type error.
    pub(crate) fn int<E>(self, name: &str, invalid: E) -> Result<Option<i64>, Failure<E>> {
        self.member(name, invalid, "an integer", Value::as_i64)
    }

    /// A number member (timestamps as epoch seconds, fractions allowed).
    pub(crate) fn number<E>(self, name: &str, invalid: E) -> Result<Option<f64>, Failure<E>> {
        self.member(name, invalid, "a number (epoch seconds)", Value::as_f64)
    }

    /// A boolean member.
    pub(crate) fn bool<E>(self, name: &str, invalid: E) -> Result<Option<bool>, Failure<E>> {
        self.member(name, invalid, "a boolean", Value::as_bool)
    }

    /// A list member.
    pub(crate) fn list<E>(self, name: &str, invalid: E) -> Result<Option<&'a [Value]>, Failure<E>> {
        self.member(name, invalid, "a list", |v| v.as_array().map(Vec::as_slice))
    }

    /// A structure member, or a structure in a list.
    pub(crate) fn structure<E>(
        value: &'a Value,
        name: &str,
        invalid: E,
    ) -> Result<Self, Failure<E>> {
        value
            .as_object()
            .map(Input)
            .ok_or_else(|| Failure::new(invalid, format!("{name} must be a structure")))
    }

    /// A string member the model marks required.
    pub(crate) fn required_str<E: ErrorShape>(
        self,
        name: &str,
        invalid: E,
    ) -> Result<&'a str, Failure<E>> {
        required(self.str(name, invalid)?, name, invalid)
    }

    /// An integer member the model marks required.
    pub(crate) fn required_int<E: ErrorShape>(
        self,
        name: &str,
        invalid: E,
    ) -> Result<i64, Failure<E>> {
        required(self.int(name, invalid)?, name, invalid)
    }

    /// A number member the model marks required.
    pub(crate) fn required_number<E: ErrorShape>(
        self,
        name: &str,
        invalid: E,
    ) -> Result<f64, Failure<E>> {
        required(self.number(name, invalid)?, name, invalid)
    }

    /// A list member the model marks required.
    pub(crate) fn required_list<E: ErrorShape>(
        self,
        name: &str,
        invalid: E,
    ) -> Result<&'a [Value], Failure<E>> {
        required(self.list(name, invalid)?, name, invalid)
    }
}

/// A required member's value, or the error for its absence in the style of
/// the operation's service: Metering's terse "X is required", License
/// Manager's validation message.
fn required<T, E: ErrorShape>(found: Option<T>, name: &str, invalid: E) -> Result<T, Failure<E>> {
    found.ok_or_else(|| {
        let message = match E::SERVICE {
            Service::Metering => format!("{name} is required"),
            Service::LicenseManager => validation(name, "Member must not be null"),
        };
        Failure::new(invalid, message)
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

    async fn body(response: Response<Body>) -> Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn errors_carry_type_in_body_and_header() {
        let response = error(
            Service::LicenseManager,
            400,
            "NoEntitlementsAllowedException",
            "no seats",
        );
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "NoEntitlementsAllowedException"
        );
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
        assert_eq!(
            body(response).await,
            json!({"__type": "NoEntitlementsAllowedException", "Message": "no seats"})
        );
        let response = error(Service::Metering, 409, "IdempotencyConflictException", "x");
        assert_eq!(response.status(), 409);
        assert_eq!(body(response).await["message"], "x");
    }

    #[test]
    fn members_are_typed_and_null_is_absent() {
        let map = json!({"S": "x", "I": 3, "F": 1.5, "B": true, "L": [1], "N": null});
        let input = Input(map.as_object().expect("object"));
        assert_eq!(input.str("S", ()), Ok(Some("x")));
        assert_eq!(input.str("N", ()), Ok(None));
        assert_eq!(input.str("Missing", ()), Ok(None));
        assert_eq!(
            input.str("I", ()),
            Err(Failure::new((), "I must be a string"))
        );
        assert_eq!(input.int("I", ()), Ok(Some(3)));
        assert!(input.int("F", ()).is_err());
        assert_eq!(input.number("F", ()), Ok(Some(1.5)));
        assert_eq!(input.number("I", ()), Ok(Some(3.0)));
        assert_eq!(input.bool("B", ()), Ok(Some(true)));
        assert_eq!(
            input.list("L", ()).map(|l| l.map(<[Value]>::len)),
            Ok(Some(1))
        );
        assert!(input.list("S", ()).is_err());
    }

    #[test]
    fn required_members_are_reported_in_each_services_style() {
        use crate::operation::{GetLicenseError, MeterUsageError};
        let map = json!({"S": "x", "N": null});
        let input = Input(map.as_object().expect("object"));
        let metering = MeterUsageError::InvalidProductCodeException;
        let license_manager = GetLicenseError::ValidationException;
        assert_eq!(input.required_str("S", metering), Ok("x"));
        assert_eq!(
            input.required_str("N", metering),
            Err(Failure::new(metering, "N is required"))
        );
        assert_eq!(
            input.required_str("Missing", license_manager),
            Err(Failure::new(
                license_manager,
                "1 validation error detected: Value at 'Missing' failed to satisfy \
                 constraint: Member must not be null"
            ))
        );
        assert_eq!(
            input.required_int("S", metering),
            Err(Failure::new(metering, "S must be an integer"))
        );
    }
}
