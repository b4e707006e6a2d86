//! The `awsJson1_1` wire protocol: reading request members and writing
//! responses and errors the way AWS does.
//!
//! Requests are `POST /` with `Content-Type: application/x-amz-json-1.1` and
//! `X-Amz-Target: <targetPrefix>.<Operation>`; the body is a JSON object with
//! the model's `PascalCase` member names, `null` meaning absent. Errors carry
//! the bare shape name in the body's `__type` (botocore reads only that) and
//! in `X-Amzn-Errortype` (the Rust SDK prefers it), plus the message in the
//! member the shape declares.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::ids;
use crate::operation::Service;

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

/// Typed, null-aware access to a request's members.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a>(pub(crate) &'a Map<String, Value>);

/// Why a member could not be read: it has the wrong JSON type.
pub(crate) type MemberError = String;

impl<'a> Input<'a> {
    fn get(self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn wrong(name: &str, expected: &str) -> MemberError {
        format!("{name} must be {expected}")
    }

    /// A string member.
    pub(crate) fn str(self, name: &str) -> Result<Option<&'a str>, MemberError> {
        self.get(name)
            .map(|v| v.as_str().ok_or_else(|| Self::wrong(name, "a string")))
            .transpose()
    }

    /// An integer member; a JSON number with a fraction is a type error.
    pub(crate) fn int(self, name: &str) -> Result<Option<i64>, MemberError> {
        self.get(name)
            .map(|v| v.as_i64().ok_or_else(|| Self::wrong(name, "an integer")))
            .transpose()
    }

    /// A number member (timestamps as epoch seconds, fractions allowed).
    pub(crate) fn number(self, name: &str) -> Result<Option<f64>, MemberError> {
        self.get(name)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| Self::wrong(name, "a number (epoch seconds)"))
            })
            .transpose()
    }

    /// A boolean member.
    pub(crate) fn bool(self, name: &str) -> Result<Option<bool>, MemberError> {
        self.get(name)
            .map(|v| v.as_bool().ok_or_else(|| Self::wrong(name, "a boolean")))
            .transpose()
    }

    /// A list member.
    pub(crate) fn list(self, name: &str) -> Result<Option<&'a [Value]>, MemberError> {
        self.get(name)
            .map(|v| {
                v.as_array()
                    .map(Vec::as_slice)
                    .ok_or_else(|| Self::wrong(name, "a list"))
            })
            .transpose()
    }

    /// A structure member, or a structure in a list.
    pub(crate) fn structure(value: &'a Value, name: &str) -> Result<Self, MemberError> {
        value
            .as_object()
            .map(Input)
            .ok_or_else(|| Self::wrong(name, "a structure"))
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

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
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            json!({"__type": "NoEntitlementsAllowedException", "Message": "no seats"})
        );
        let response = error(Service::Metering, 409, "IdempotencyConflictException", "x");
        assert_eq!(response.status(), 409);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["message"], "x");
    }

    #[test]
    fn members_are_typed_and_null_is_absent() {
        let map = json!({"S": "x", "I": 3, "F": 1.5, "B": true, "L": [1], "N": null});
        let input = Input(map.as_object().expect("object"));
        assert_eq!(input.str("S"), Ok(Some("x")));
        assert_eq!(input.str("N"), Ok(None));
        assert_eq!(input.str("Missing"), Ok(None));
        assert_eq!(input.str("I"), Err("I must be a string".to_owned()));
        assert_eq!(input.int("I"), Ok(Some(3)));
        assert!(input.int("F").is_err());
        assert_eq!(input.number("F"), Ok(Some(1.5)));
        assert_eq!(input.number("I"), Ok(Some(3.0)));
        assert_eq!(input.bool("B"), Ok(Some(true)));
        assert_eq!(input.list("L").map(|l| l.map(<[Value]>::len)), Ok(Some(1)));
        assert!(input.list("S").is_err());
    }
}
