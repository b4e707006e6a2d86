//! Checks the structure of a request's `SigV4` `Authorization` header, the way
//! AWS front ends reject unsigned or mis-scoped requests.
//!
//! The HMAC itself is not verified: the simulator has no secret keys. What is
//! checked is what AWS checks before it looks at the signature and what the
//! simulator needs: the header exists, names `AWS4-HMAC-SHA256`, carries
//! `Credential`, `SignedHeaders` and `Signature`; the credential scope is
//! `AKID/YYYYMMDD/REGION/SERVICE/aws4_request` with the service's signing
//! name and the date of `X-Amz-Date`. The scope's access key id identifies
//! the task and its Region is the Region of the request.

use std::collections::BTreeSet;

use hyper::HeaderMap;

use crate::operation::Service;

/// The authentication errors every AWS API shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::enum_variant_names,
    reason = "the variants are AWS's error code names, which all end in Exception"
)]
pub(crate) enum AuthError {
    MissingAuthenticationTokenException,
    IncompleteSignatureException,
    InvalidSignatureException,
    UnrecognizedClientException,
}

impl AuthError {
    pub(crate) fn shape(self) -> &'static str {
        match self {
            Self::MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            Self::IncompleteSignatureException => "IncompleteSignatureException",
            Self::InvalidSignatureException => "InvalidSignatureException",
            Self::UnrecognizedClientException => "UnrecognizedClientException",
        }
    }
}

/// A rejected request: the error and AWS's message for it.
pub(crate) type Rejection = (AuthError, String);

/// The parts of a valid credential scope the simulator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The access key id; it identifies the task.
    pub(crate) access_key_id: String,
    /// The Region the request was signed for.
    pub(crate) region: String,
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Checks the request's `Authorization` header for `service`. `allowed` is
/// the configured set of access key ids; empty allows any.
pub(crate) fn authenticate(
    headers: &HeaderMap,
    service: Service,
    allowed: &BTreeSet<String>,
) -> Result<Caller, Rejection> {
    use AuthError::{
        IncompleteSignatureException as Incomplete, InvalidSignatureException as Invalid,
        MissingAuthenticationTokenException as Missing,
        UnrecognizedClientException as Unrecognized,
    };

    let Some(value) = headers.get(hyper::header::AUTHORIZATION) else {
        return Err((Missing, "Missing Authentication Token".to_owned()));
    };
    let value = value
        .to_str()
        .map_err(|_| (Incomplete, "Authorization header is not ASCII".to_owned()))?;
    let (credential, signed_headers, signature) = parse_header(value)?;
    let caller = check_scope(credential, service)?;
    check_request_date(headers, credential.split('/').nth(1).unwrap_or_default())?;
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err((
            Invalid,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err((
            Invalid,
            "The request signature is not 64 lowercase hex digits (a SHA-256 HMAC).".to_owned(),
        ));
    }
    if !allowed.is_empty() && !allowed.contains(&caller.access_key_id) {
        return Err((
            Unrecognized,
            "The security token included in the request is invalid.".to_owned(),
        ));
    }
    Ok(caller)
}

/// Splits `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
fn parse_header(value: &str) -> Result<(&str, &str, &str), Rejection> {
    use AuthError::IncompleteSignatureException as Incomplete;
    let (algorithm, params) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err((
            Incomplete,
            format!("Unsupported AWS 'algorithm': '{algorithm}'; expected '{ALGORITHM}'"),
        ));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, v) = part.split_once('=').unwrap_or((part, ""));
        match name {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let missing: Vec<String> = [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ]
    .iter()
    .filter(|(_, v)| v.is_none_or(str::is_empty))
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    if !missing.is_empty() {
        return Err((
            Incomplete,
            format!("{} Authorization={value}", missing.join(" ")),
        ));
    }
    match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) => Ok((c, h, s)),
        _ => Err((Incomplete, "Authorization header is incomplete".to_owned())),
    }
}

/// Checks `AKID/YYYYMMDD/REGION/SERVICE/aws4_request`.
fn check_scope(credential: &str, service: Service) -> Result<Caller, Rejection> {
    use AuthError::{
        IncompleteSignatureException as Incomplete, InvalidSignatureException as Invalid,
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, scope_service, terminator] = scope.as_slice() else {
        return Err((
            Incomplete,
            format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. \
                 keyid/date/region/service/term, got '{credential}'"
            ),
        ));
    };
    if access_key_id.is_empty() {
        return Err((
            Incomplete,
            "Credential has an empty access key id".to_owned(),
        ));
    }
    if *terminator != "aws4_request" {
        return Err((
            Invalid,
            format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
            ),
        ));
    }
    if *scope_service != service.signing_name() {
        return Err((
            Invalid,
            format!(
                "Credential should be scoped to correct service: '{}'. ",
                service.signing_name()
            ),
        ));
    }
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err((
            Invalid,
            format!("Credential should be scoped to a valid region, not '{region}'. "),
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            Invalid,
            format!("Date in Credential scope is not YYYYMMDD: '{date}'. "),
        ));
    }
    Ok(Caller {
        access_key_id: (*access_key_id).to_owned(),
        region: (*region).to_owned(),
    })
}

/// The scope's date must be the date of `X-Amz-Date` (`YYYYMMDD'T'HHMMSS'Z'`).
fn check_request_date(headers: &HeaderMap, scope_date: &str) -> Result<(), Rejection> {
    let Some(amz_date) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()) else {
        return Err((
            AuthError::IncompleteSignatureException,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .to_owned(),
        ));
    };
    let well_formed = amz_date.len() == 16
        && amz_date.as_bytes()[8] == b'T'
        && amz_date.ends_with('Z')
        && amz_date[..8].bytes().all(|b| b.is_ascii_digit())
        && amz_date[9..15].bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err((
            AuthError::IncompleteSignatureException,
            format!("X-Amz-Date must be YYYYMMDD'T'HHMMSS'Z', got '{amz_date}'"),
        ));
    }
    if &amz_date[..8] != scope_date {
        return Err((
            AuthError::InvalidSignatureException,
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of \
                 date from HTTP: '{scope_date}' != '{}', from '{amz_date}'.",
                &amz_date[..8]
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn headers(auth: Option<&str>, date: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(auth) = auth {
            h.insert("authorization", HeaderValue::from_str(auth).expect("ascii"));
        }
        if let Some(date) = date {
            h.insert("x-amz-date", HeaderValue::from_str(date).expect("ascii"));
        }
        h
    }

    fn auth(credential: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={SIG}"
        )
    }

    fn check(
        auth: Option<&str>,
        date: Option<&str>,
        service: Service,
    ) -> Result<Caller, Rejection> {
        authenticate(&headers(auth, date), service, &BTreeSet::new())
    }

    #[test]
    fn a_well_formed_header_names_the_task_and_region() {
        let caller = check(
            Some(&auth(
                "AKIDTASK1/20261126/eu-west-1/aws-marketplace/aws4_request",
            )),
            Some("20261126T120000Z"),
            Service::Metering,
        )
        .expect("accepted");
        assert_eq!(caller.access_key_id, "AKIDTASK1");
        assert_eq!(caller.region, "eu-west-1");
    }

    #[test]
    fn missing_header_is_missing_token() {
        let (err, msg) = check(None, Some("20261126T120000Z"), Service::Metering).unwrap_err();
        assert_eq!(err, AuthError::MissingAuthenticationTokenException);
        assert_eq!(msg, "Missing Authentication Token");
    }

    #[test]
    fn wrong_service_uses_aws_wording() {
        let (err, msg) = check(
            Some(&auth(
                "AKID/20261126/us-east-1/metering.marketplace/aws4_request",
            )),
            Some("20261126T120000Z"),
            Service::Metering,
        )
        .unwrap_err();
        assert_eq!(err, AuthError::InvalidSignatureException);
        assert_eq!(
            msg,
            "Credential should be scoped to correct service: 'aws-marketplace'. "
        );
        let (err, _) = check(
            Some(&auth(
                "AKID/20261126/us-east-1/aws-marketplace/aws4_request",
            )),
            Some("20261126T120000Z"),
            Service::LicenseManager,
        )
        .unwrap_err();
        assert_eq!(err, AuthError::InvalidSignatureException);
    }

    #[test]
    fn malformed_headers_are_incomplete() {
        let date = Some("20261126T120000Z");
        for bad in [
            "AWS4-HMAC-SHA256".to_owned(),
            format!("AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/aws-marketplace/aws4_request, Signature={SIG}"),
            "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/aws-marketplace/aws4_request, SignedHeaders=host".to_owned(),
            auth("AKID/us-east-1/aws-marketplace/aws4_request"),
            "Basic dXNlcjpwYXNz".to_owned(),
        ] {
            let (err, _) = check(Some(&bad), date, Service::Metering).unwrap_err();
            assert_eq!(err, AuthError::IncompleteSignatureException, "{bad}");
        }
        let ok = auth("AKID/20261126/us-east-1/aws-marketplace/aws4_request");
        let (err, _) = check(Some(&ok), None, Service::Metering).unwrap_err();
        assert_eq!(err, AuthError::IncompleteSignatureException);
    }

    #[test]
    fn scope_problems_are_invalid_signatures() {
        let date = Some("20261126T120000Z");
        for bad in [
            auth("AKID/20261126/us-east-1/aws-marketplace/aws5_request"),
            auth("AKID/20261127/us-east-1/aws-marketplace/aws4_request"),
            auth("AKID/2026112/us-east-1/aws-marketplace/aws4_request"),
            auth("AKID/20261126/US_EAST/aws-marketplace/aws4_request"),
            auth("AKID/20261126/us-east-1/aws-marketplace/aws4_request").replace(SIG, "zz"),
            auth("AKID/20261126/us-east-1/aws-marketplace/aws4_request")
                .replace("content-type;host;", "content-type;"),
        ] {
            let (err, _) = check(Some(&bad), date, Service::Metering).unwrap_err();
            assert_eq!(err, AuthError::InvalidSignatureException, "{bad}");
        }
    }

    #[test]
    fn every_auth_error_is_a_published_common_code() {
        for error in [
            AuthError::MissingAuthenticationTokenException,
            AuthError::IncompleteSignatureException,
            AuthError::InvalidSignatureException,
            AuthError::UnrecognizedClientException,
        ] {
            assert!(
                crate::operation::AUTH_ERROR_CODES.contains(&error.shape()),
                "{error:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_unrecognized_when_an_allow_list_is_set() {
        let allowed: BTreeSet<String> = ["AKIDALLOWED".to_owned()].into();
        let h = |akid: &str| {
            headers(
                Some(&auth(&format!(
                    "{akid}/20261126/us-east-1/license-manager/aws4_request"
                ))),
                Some("20261126T120000Z"),
            )
        };
        assert!(authenticate(&h("AKIDALLOWED"), Service::LicenseManager, &allowed).is_ok());
        let (err, _) =
            authenticate(&h("AKIDOTHER"), Service::LicenseManager, &allowed).unwrap_err();
        assert_eq!(err, AuthError::UnrecognizedClientException);
    }
}
