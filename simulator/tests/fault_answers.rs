//! The faults that name their answer or lose it, as a runtime's metering
//! pipeline meets them through the real SDKs: `StoreThenDrop` (the operation
//! runs, the response is lost), `Error` (a named AWS error with its status)
//! and `ServerError` (a 5xx, with or without the operation's effect). Each
//! test checks three things: how the SDK surfaces the call ([`Seen`]), what
//! the simulator stored, and what the call log lets a test assert on
//! (`stored`, `clientToken`, `request`).

mod common;

use std::fmt::Debug;

use aws_sdk_licensemanager::operation::check_in_license::CheckInLicenseError;
use aws_sdk_licensemanager::operation::checkout_license::CheckoutLicenseError;
use aws_sdk_licensemanager::operation::extend_license_consumption::ExtendLicenseConsumptionError;
use aws_sdk_licensemanager::operation::get_license::GetLicenseError;
use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};
use aws_sdk_marketplacemetering::Client as Metering;
use aws_sdk_marketplacemetering::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_marketplacemetering::operation::meter_usage::{MeterUsageError, MeterUsageOutput};
use common::{Client, ENTERPRISE_SKU, FINGERPRINT, Is, USAGE, noon, sdk_time, start_at};
use marketgate_simulator::{CallRecord, Fault, FaultKind, Operation as Op, Outcome, Trigger};
use serde_json::json;

/// How the SDK surfaced a call that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surfaced {
    /// A decoded AWS error: `SdkError::ServiceError`.
    Service,
    /// A response the SDK could not decode as an AWS error:
    /// `SdkError::ResponseError` (it still has the raw response).
    Response,
    /// No response at all: `SdkError::DispatchFailure`.
    Dispatch,
}

/// What a runtime sees of a failed call: how it surfaced, the error code
/// (`ProvideErrorMetadata::code`) and the raw HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    surfaced: Surfaced,
    code: Option<String>,
    status: Option<u16>,
}

impl Seen {
    fn new(surfaced: Surfaced, code: Option<&str>, status: Option<u16>) -> Self {
        Self {
            surfaced,
            code: code.map(str::to_owned),
            status,
        }
    }
}

#[track_caller]
fn seen<T: Debug, E: ProvideErrorMetadata + Debug>(result: Result<T, SdkError<E>>) -> Seen {
    let err = result.expect_err("the fault must fail the call");
    let surfaced = match &err {
        SdkError::ServiceError(_) => Surfaced::Service,
        SdkError::ResponseError(_) => Surfaced::Response,
        SdkError::DispatchFailure(_) => Surfaced::Dispatch,
        other => panic!("unexpected SDK error: {other:?}"),
    };
    Seen {
        surfaced,
        code: err.code().map(str::to_owned),
        status: err.raw_response().map(|r| r.status().as_u16()),
    }
}

/// `MeterUsage` of `quantity` `api_calls` at noon with an explicit
/// `ClientToken`, as a pipeline that persists its tokens sends it.
async fn meter(
    client: &Metering,
    token: &str,
    quantity: i32,
) -> Result<MeterUsageOutput, SdkError<MeterUsageError>> {
    client
        .meter_usage()
        .product_code(USAGE)
        .timestamp(sdk_time(noon()))
        .usage_dimension("api_calls")
        .usage_quantity(quantity)
        .client_token(token)
        .send()
        .await
}

/// The calls of one operation, in order.
fn calls(sim: &marketgate_simulator::Simulator, operation: Op) -> Vec<CallRecord> {
    sim.calls()
        .into_iter()
        .filter(|c| c.operation == operation.name())
        .collect()
}

#[tokio::test]
async fn store_then_drop_stores_the_usage_and_the_sdk_sees_no_response() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    sim.inject(Op::MeterUsage, Fault::StoreThenDrop, Trigger::NextCalls(1))
        .expect("valid fault");

    let seen = seen(meter(&client, "attempt-1", 5).await);
    assert_eq!(
        seen,
        Seen::new(Surfaced::Dispatch, None, None),
        "a lost response is a dispatch failure, not an AWS error"
    );

    let usage = sim.usage();
    assert_eq!(usage.len(), 1, "the record was stored before the drop");
    assert_eq!(usage[0].quantity.as_whole(), Some(5));
    assert_eq!(usage[0].client_token.as_deref(), Some("attempt-1"));

    let logged = calls(&sim, Op::MeterUsage);
    assert_eq!(logged.len(), 1);
    let call = &logged[0];
    assert_eq!(
        (call.outcome, call.fault, call.stored, call.http_status),
        (Outcome::Dropped, Some(FaultKind::StoreThenDrop), true, None)
    );
    assert_eq!(call.client_token.as_deref(), Some("attempt-1"));
    let request = call.request.as_ref().expect("the request body is logged");
    assert_eq!(request["UsageQuantity"], json!(5));
    assert_eq!(request["UsageDimension"], json!("api_calls"));
    sim.shutdown().await;
}

/// What a resend after a lost response gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// The `MeteringRecordId` of the record stored before the drop.
    SameRecord,
    /// This error and status.
    Refused(&'static str, u16),
}

#[tokio::test]
async fn a_resend_after_a_lost_response_gets_the_stored_record_and_stores_nothing() {
    // (ClientToken, quantity, answer). AWS: one record per dimension, hour and
    // task; "for requests that are identical after the Timestamp is rounded
    // down, the API is idempotent and returns the metering record ID" (a new
    // token included); another quantity is DuplicateRequestException; a reused
    // token with other parameters is IdempotencyConflictException.
    let cases = [
        ("attempt-1", 5, Resend::SameRecord),
        ("attempt-2", 5, Resend::SameRecord),
        (
            "attempt-3",
            6,
            Resend::Refused("DuplicateRequestException", 400),
        ),
        (
            "attempt-1",
            6,
            Resend::Refused("IdempotencyConflictException", 409),
        ),
    ];
    for (token, quantity, expected) in cases {
        let case = format!("{token} with quantity {quantity}");
        let sim = start_at(noon()).await;
        let client = common::metering_client(&sim).await;
        sim.inject(Op::MeterUsage, Fault::StoreThenDrop, Trigger::NextCalls(1))
            .expect("valid fault");
        meter(&client, "attempt-1", 5)
            .await
            .expect_err("the first response is lost");
        let stored = sim.usage()[0].metering_record_id.clone();

        let result = meter(&client, token, quantity).await;
        let answer = match result {
            Ok(out) => {
                assert_eq!(out.metering_record_id(), Some(stored.as_str()), "{case}");
                Resend::SameRecord
            }
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                let code = err.code().map(str::to_owned).expect("a coded AWS error");
                let code = cases
                    .iter()
                    .find_map(|(_, _, e)| match e {
                        Resend::Refused(c, _) if *c == code => Some(*c),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("{case}: unexpected {code}"));
                Resend::Refused(code, status.expect("a response"))
            }
        };
        assert_eq!(answer, expected, "{case}");

        assert_eq!(sim.usage().len(), 1, "{case}: no second record");
        let logged = calls(&sim, Op::MeterUsage);
        assert_eq!(logged.len(), 2, "{case}");
        assert!(!logged[1].stored, "{case}: the resend stored nothing");
        assert_eq!(logged[1].client_token.as_deref(), Some(token), "{case}");
        let identical = logged[0].request == logged[1].request;
        assert_eq!(
            identical,
            token == "attempt-1" && quantity == 5,
            "{case}: the log shows whether the resend was identical"
        );
        sim.shutdown().await;
    }
}

/// Every name `Fault::Error` accepts for `MeterUsage`, with the status AWS
/// answers it with: the errors the model declares, then the common access
/// errors of AWS JSON-protocol services.
const METER_USAGE_ERRORS: [(&str, u16); 18] = [
    ("InternalServiceErrorException", 500),
    ("InvalidProductCodeException", 400),
    ("InvalidUsageDimensionException", 400),
    ("InvalidTagException", 400),
    ("InvalidUsageAllocationsException", 400),
    ("InvalidEndpointRegionException", 400),
    ("TimestampOutOfBoundsException", 400),
    ("DuplicateRequestException", 400),
    ("IdempotencyConflictException", 409),
    ("ThrottlingException", 400),
    ("CustomerNotEntitledException", 400),
    ("AccessDeniedException", 400),
    ("ExpiredTokenException", 400),
    ("UnrecognizedClientException", 400),
    ("InvalidSignatureException", 400),
    ("IncompleteSignature", 400),
    ("IncompleteSignatureException", 400),
    ("MissingAuthenticationTokenException", 403),
];

#[tokio::test]
async fn error_faults_answer_the_named_error_with_its_status_and_store_nothing() {
    let mut allowed = Op::MeterUsage.injectable_errors();
    allowed.sort_unstable();
    let mut expected = METER_USAGE_ERRORS.to_vec();
    expected.sort_unstable();
    assert_eq!(allowed, expected, "the names Fault::Error accepts");

    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    for (i, (code, status)) in METER_USAGE_ERRORS.into_iter().enumerate() {
        sim.inject(
            Op::MeterUsage,
            Fault::Error(code.to_owned()),
            Trigger::NextCalls(1),
        )
        .expect("an allowed name");
        let result = meter(&client, &format!("error-{i}"), 5).await;
        if code == "DuplicateRequestException" {
            let typed = result.as_ref().err().and_then(SdkError::as_service_error);
            assert!(
                typed.is_some_and(MeterUsageError::is_duplicate_request_exception),
                "a modelled error is decoded into its typed variant: {result:?}"
            );
        }
        assert_eq!(
            seen(result),
            Seen::new(Surfaced::Service, Some(code), Some(status)),
            "{code}"
        );
        let call = calls(&sim, Op::MeterUsage).pop().expect("logged");
        assert_eq!(
            (call.outcome, call.fault, call.stored),
            (Outcome::Error, Some(FaultKind::Error), false),
            "{code}"
        );
        assert_eq!(call.error_code.as_deref(), Some(code));
        assert_eq!(call.http_status, Some(status));
        assert_eq!(call.client_token, Some(format!("error-{i}")));
    }
    assert!(sim.usage().is_empty(), "no error fault runs the operation");
    sim.shutdown().await;
}

/// A `CheckoutLicense` of the example license's feature with `token`.
async fn checkout(
    client: &aws_sdk_licensemanager::Client,
    token: &str,
) -> Result<
    aws_sdk_licensemanager::operation::checkout_license::CheckoutLicenseOutput,
    SdkError<CheckoutLicenseError>,
> {
    let feature = EntitlementData::builder()
        .name("ProEdition")
        .unit(EntitlementDataUnit::None)
        .build()
        .expect("entitlement");
    client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(FINGERPRINT)
        .entitlements(feature)
        .client_token(token)
        .send()
        .await
}

#[tokio::test]
async fn license_manager_error_faults_use_its_model_and_the_common_statuses() {
    // (code, status, whether the License Manager model declares it for
    // CheckoutLicense, so that the SDK decodes it into a typed variant)
    let cases = [
        ("AccessDeniedException", 400, true),
        ("AuthorizationException", 400, true),
        ("ExpiredTokenException", 400, false),
        ("MissingAuthenticationTokenException", 403, false),
        ("ServerInternalException", 500, true),
    ];
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    for (code, status, typed) in cases {
        sim.inject(
            Op::CheckoutLicense,
            Fault::Error(code.to_owned()),
            Trigger::NextCalls(1),
        )
        .expect("an allowed name");
        let result = checkout(&client, "t").await;
        let decoded = result
            .as_ref()
            .err()
            .and_then(SdkError::as_service_error)
            .is_some_and(|e| {
                e.is_access_denied_exception()
                    || e.is_authorization_exception()
                    || e.is_server_internal_exception()
            });
        assert_eq!(decoded, typed, "{code}: {result:?}");
        assert_eq!(
            seen(result),
            Seen::new(Surfaced::Service, Some(code), Some(status)),
            "{code}"
        );
    }
    assert!(sim.licenses().checkouts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_store_only_when_stored_is_true() {
    const INTERNAL: Option<&str> = Some("InternalServiceErrorException");
    // (status, stored, how the SDK surfaces it, its code). 502 to 504 carry a
    // load balancer's HTML page: the SDK cannot decode it as an AWS error, so
    // it is a response error that keeps the raw status.
    let cases = [
        (500, false, Surfaced::Service, INTERNAL),
        (500, true, Surfaced::Service, INTERNAL),
        (502, false, Surfaced::Response, None),
        (502, true, Surfaced::Response, None),
        (503, false, Surfaced::Response, None),
        (503, true, Surfaced::Response, None),
        (504, false, Surfaced::Response, None),
        (504, true, Surfaced::Response, None),
    ];
    let sim = start_at(noon()).await;
    for (status, stored, surfaced, code) in cases {
        let case = format!("{status} stored: {stored}");
        // Each case is its own task, so that each can store a record.
        let task = format!("AKIDSERVERERROR{status}{stored}");
        let client = Client::key(&task).metering(&sim).await;
        sim.inject(
            Op::MeterUsage,
            Fault::ServerError { status, stored },
            Trigger::NextCalls(1),
        )
        .expect("valid fault");
        assert_eq!(
            seen(meter(&client, &task, 5).await),
            Seen::new(surfaced, code, Some(status)),
            "{case}"
        );
        let records = sim
            .usage()
            .iter()
            .filter(|r| r.access_key_id == task)
            .count();
        assert_eq!(records, usize::from(stored), "{case}");
        let call = calls(&sim, Op::MeterUsage).pop().expect("logged");
        assert_eq!(
            (call.outcome, call.fault, call.stored, call.http_status),
            (
                Outcome::Error,
                Some(FaultKind::ServerError),
                stored,
                Some(status)
            ),
            "{case}"
        );
        assert_eq!(call.error_code.as_deref(), code, "{case}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_sdk_resends_a_stored_server_error_identically_and_gets_the_record() {
    let sim = start_at(noon()).await;
    let client = Client {
        retries: true,
        ..Client::default()
    }
    .metering(&sim)
    .await;
    sim.inject(
        Op::MeterUsage,
        Fault::ServerError {
            status: 503,
            stored: true,
        },
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    // No ClientToken given: the SDK fills one and keeps it for its retries.
    let out = common::meter_at_noon(&client, 5)
        .await
        .expect("the retry succeeds");
    let usage = sim.usage();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        out.metering_record_id(),
        Some(usage[0].metering_record_id.as_str())
    );
    let logged = calls(&sim, Op::MeterUsage);
    let summary: Vec<_> = logged
        .iter()
        .map(|c| (c.outcome, c.http_status, c.stored))
        .collect();
    assert_eq!(
        summary,
        [
            (Outcome::Error, Some(503), true),
            (Outcome::Success, Some(200), false)
        ]
    );
    assert!(logged[0].client_token.is_some());
    assert_eq!(logged[0].client_token, logged[1].client_token);
    assert_eq!(logged[0].request, logged[1].request, "resent identically");
    assert_eq!(usage[0].client_token, logged[0].client_token);
    sim.shutdown().await;
}

#[tokio::test]
async fn checkout_store_then_drop_leaves_a_consumption_the_resend_gets_back() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    sim.inject(
        Op::CheckoutLicense,
        Fault::StoreThenDrop,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    assert_eq!(
        seen(checkout(&client, "checkout-1").await),
        Seen::new(Surfaced::Dispatch, None, None)
    );
    let checkouts = sim.licenses().checkouts;
    assert_eq!(checkouts.len(), 1, "the consumption exists");
    assert_eq!(checkouts[0].client_token, "checkout-1");

    let resent = checkout(&client, "checkout-1")
        .await
        .expect("the resend gets the stored checkout");
    assert_eq!(
        resent.license_consumption_token(),
        Some(checkouts[0].license_consumption_token.as_str())
    );
    assert_eq!(sim.licenses().checkouts.len(), 1, "no second seat");
    let logged = calls(&sim, Op::CheckoutLicense);
    let summary: Vec<(Outcome, bool, Option<&str>)> = logged
        .iter()
        .map(|c| (c.outcome, c.stored, c.client_token.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (Outcome::Dropped, true, Some("checkout-1")),
            (Outcome::Success, false, Some("checkout-1"))
        ]
    );
    sim.shutdown().await;
}

/// How one call of [`each_license_manager_operation_can_be_faulted_on_its_own`]
/// ended: `None` on success, else what the SDK surfaced and which typed
/// variant it decoded the error into, if any.
type Ended = Option<(Seen, Option<&'static str>)>;

/// Reduces a result to [`Ended`]; `typed` names the variants to look for.
fn ended<T: Debug, E: ProvideErrorMetadata + Debug>(
    result: Result<T, SdkError<E>>,
    typed: [(&'static str, Is<E>); 2],
) -> Ended {
    if result.is_ok() {
        return None;
    }
    let variant = result
        .as_ref()
        .err()
        .and_then(SdkError::as_service_error)
        .and_then(|e| typed.iter().find(|(_, is)| is(e)).map(|(name, _)| *name));
    Some((seen(result), variant))
}

/// Extends `token`, reads the license `arn` and checks `token` in, in that
/// order, and says how each call ended.
async fn extend_get_check_in(
    client: &aws_sdk_licensemanager::Client,
    arn: &str,
    token: &str,
) -> [(Op, Ended); 3] {
    const RATE_LIMIT: &str = "RateLimitExceededException";
    const INTERNAL: &str = "ServerInternalException";
    let extend = client
        .extend_license_consumption()
        .license_consumption_token(token)
        .send()
        .await;
    let get = client.get_license().license_arn(arn).send().await;
    let check_in = client
        .check_in_license()
        .license_consumption_token(token)
        .send()
        .await;
    [
        (
            Op::ExtendLicenseConsumption,
            ended(
                extend,
                [
                    (
                        RATE_LIMIT,
                        ExtendLicenseConsumptionError::is_rate_limit_exceeded_exception,
                    ),
                    (
                        INTERNAL,
                        ExtendLicenseConsumptionError::is_server_internal_exception,
                    ),
                ],
            ),
        ),
        (
            Op::GetLicense,
            ended(
                get,
                [
                    (
                        RATE_LIMIT,
                        GetLicenseError::is_rate_limit_exceeded_exception,
                    ),
                    (INTERNAL, GetLicenseError::is_server_internal_exception),
                ],
            ),
        ),
        (
            Op::CheckInLicense,
            ended(
                check_in,
                [
                    (
                        RATE_LIMIT,
                        CheckInLicenseError::is_rate_limit_exceeded_exception,
                    ),
                    (INTERNAL, CheckInLicenseError::is_server_internal_exception),
                ],
            ),
        ),
    ]
}

#[tokio::test]
async fn each_license_manager_operation_can_be_faulted_on_its_own() {
    let service = |code, status| {
        let seen = Seen::new(Surfaced::Service, Some(code), Some(status));
        Some((seen, Some(code)))
    };
    // (fault, how the faulted call ends)
    let faults = [
        (
            Fault::RateLimitExceeded,
            service("RateLimitExceededException", 400),
        ),
        (
            Fault::InternalError,
            service("ServerInternalException", 500),
        ),
        (
            Fault::DropConnection,
            Some((Seen::new(Surfaced::Dispatch, None, None), None)),
        ),
        (
            Fault::ServerError {
                status: 503,
                stored: false,
            },
            Some((Seen::new(Surfaced::Response, None, Some(503)), None)),
        ),
    ];
    let operations = [
        Op::ExtendLicenseConsumption,
        Op::GetLicense,
        Op::CheckInLicense,
    ];
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    for (round, (target, (fault, failure))) in operations
        .iter()
        .flat_map(|op| faults.iter().map(move |f| (*op, f)))
        .enumerate()
    {
        let case = format!("{fault:?} on {target}");
        // A checkout of the feature (no seat) to extend and check in.
        let token = checkout(&client, &format!("round-{round}"))
            .await
            .expect("checked out")
            .license_consumption_token()
            .expect("token")
            .to_owned();
        sim.inject(target, fault.clone(), Trigger::NextCalls(1))
            .expect("valid fault");
        let logged_before = sim.calls().len();

        for (operation, answer) in extend_get_check_in(&client, &arn, &token).await {
            let expected = if operation == target { failure } else { &None };
            assert_eq!(&answer, expected, "{case}: {operation}");
        }
        assert!(sim.faults().is_empty(), "{case}: the fault fired once");
        let faulted: Vec<(String, Option<FaultKind>)> = sim.calls()[logged_before..]
            .iter()
            .filter(|c| c.fault.is_some())
            .map(|c| (c.operation.clone(), c.fault))
            .collect();
        assert_eq!(
            faulted,
            [(target.name().to_owned(), Some(fault.kind()))],
            "{case}: the log shows the one faulted call"
        );
    }
    sim.shutdown().await;
}
