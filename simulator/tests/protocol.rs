//! The wire: `SigV4` checks and AWS's authentication errors as the real SDKs
//! see them, the `awsJson1_1` error format on the wire, routing, and what
//! clients other than the Rust SDK send (decimal quantities, whole-number
//! timestamps).

mod common;

use aws_sdk_licensemanager as lm;
use aws_sdk_marketplacemetering as metering;
use aws_sdk_marketplacemetering::error::ProvideErrorMetadata;
use common::{
    Client, ENTERPRISE_SKU, FINGERPRINT, PRO, USAGE, noon, raw, raw_aws, signed, start_at,
};
use marketgate_simulator::{Config, Outcome, Service};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rewrites (or with `None`, removes) the signed `Authorization` header just
/// before it is sent, to make the real SDK send what a misconfigured client
/// would.
#[derive(Debug)]
struct RewriteAuthorization(fn(&str) -> Option<String>);

impl metering::config::Intercept for RewriteAuthorization {
    fn name(&self) -> &'static str {
        "RewriteAuthorization"
    }

    fn modify_before_transmit(
        &self,
        context: &mut metering::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &metering::config::RuntimeComponents,
        _cfg: &mut metering::config::ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request_mut().headers_mut();
        let current = headers.get("authorization").unwrap_or_default().to_owned();
        match (self.0)(&current) {
            Some(value) => {
                headers.insert("authorization", value);
            }
            None => {
                headers.remove("authorization");
            }
        }
        Ok(())
    }
}

async fn metering_with(
    sim: &marketgate_simulator::Simulator,
    rewrite: fn(&str) -> Option<String>,
) -> metering::Client {
    let sdk = Client::default().sdk_config(sim).await;
    let config = metering::config::Builder::from(&sdk)
        .interceptor(RewriteAuthorization(rewrite))
        .build();
    metering::Client::from_conf(config)
}

async fn lm_with(
    sim: &marketgate_simulator::Simulator,
    rewrite: fn(&str) -> Option<String>,
) -> lm::Client {
    let sdk = Client::default().sdk_config(sim).await;
    let config = lm::config::Builder::from(&sdk)
        .interceptor(RewriteAuthorization(rewrite))
        .build();
    lm::Client::from_conf(config)
}

async fn register(
    client: &metering::Client,
) -> metering::operation::register_usage::RegisterUsageError {
    common::register_pro(client)
        .await
        .unwrap_err()
        .into_service_error()
}

#[tokio::test]
async fn credentials_scoped_to_another_service_are_invalid_signatures() {
    let sim = start_at(noon()).await;
    // The mistake of aws/aws-sdk-go#1034: signing with the endpoint prefix.
    let client = metering_with(&sim, |auth| {
        Some(auth.replace("/aws-marketplace/", "/metering.marketplace/"))
    })
    .await;
    let err = register(&client).await;
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    assert_eq!(
        err.message(),
        Some("Credential should be scoped to correct service: 'aws-marketplace'. ")
    );
    let client = lm_with(&sim, |auth| {
        Some(auth.replace("/license-manager/", "/aws-marketplace/"))
    })
    .await;
    let err = client
        .get_license()
        .license_arn(sim.licenses().licenses[0].arn.clone())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    assert_eq!(
        err.message(),
        Some("Credential should be scoped to correct service: 'license-manager'. ")
    );
    let calls = sim.calls();
    assert!(calls.iter().all(|c| c.outcome == Outcome::Error));
    assert!(sim.usage().is_empty() && sim.licenses().checkouts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_incomplete_signatures() {
    let sim = start_at(noon()).await;
    let client = metering_with(&sim, |auth| {
        auth.split(", Signature=").next().map(str::to_owned)
    })
    .await;
    let err = register(&client).await;
    assert_eq!(err.code(), Some("IncompleteSignatureException"));
    assert!(err.message().unwrap_or_default().contains("'Signature'"));
    let client = metering_with(&sim, |auth| Some(auth.replace("aws4_request", ""))).await;
    let err = register(&client).await;
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    sim.shutdown().await;
}

#[tokio::test]
async fn unsigned_requests_get_missing_authentication_token() {
    let sim = start_at(noon()).await;
    let client = metering_with(&sim, |_| None).await;
    let err = register(&client).await;
    assert_eq!(err.code(), Some("MissingAuthenticationTokenException"));
    assert_eq!(err.message(), Some("Missing Authentication Token"));

    let response = raw(
        &sim,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "AWSLicenseManager.GetLicense"),
        ],
        "{}",
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        json!({"__type": "MissingAuthenticationTokenException", "Message": "Missing Authentication Token"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_access_keys_are_unrecognized_when_keys_are_listed() {
    let mut config = Config::example();
    config.task.access_keys = vec!["AKIDALLOWED".to_owned()];
    let sim = common::start_with(config, noon()).await;
    let stranger = Client::key("AKIDSTRANGER").metering(&sim).await;
    let err = register(&stranger).await;
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    assert_eq!(
        err.message(),
        Some("The security token included in the request is invalid.")
    );
    Client::key("AKIDALLOWED")
        .metering(&sim)
        .await
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .send()
        .await
        .expect("listed key");
    assert_eq!(sim.tasks().len(), 1, "refused callers start no task");
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_carry_the_bare_shape_name_in_body_and_header() {
    let sim = start_at(noon()).await;
    let headers = signed(
        "AWSMPMeteringService.MeterUsage",
        "aws-marketplace",
        "AKIDRAW",
    );
    let body = json!({"ProductCode": "nobody", "Timestamp": 1_795_694_400, "UsageDimension": "d"});
    let response = raw_aws(&sim, &headers, &body.to_string()).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("InvalidProductCodeException")
    );
    assert!(response.header("x-amzn-requestid").is_some());
    let body = response.json();
    assert_eq!(body["__type"], "InvalidProductCodeException");
    assert!(
        body["message"].as_str().is_some(),
        "Metering uses `message`: {body}"
    );
    assert!(body.get("Message").is_none());

    let headers = signed("AWSLicenseManager.GetLicense", "license-manager", "AKIDRAW");
    let response = raw_aws(&sim, &headers, r#"{"LicenseArn": "nope"}"#).await;
    assert_eq!(response.status, 400);
    let body = response.json();
    assert_eq!(body["__type"], "ValidationException");
    assert!(
        body["Message"].as_str().is_some(),
        "License Manager uses `Message`: {body}"
    );
    assert!(body.get("message").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_that_name_no_emulated_operation_are_unknown_operations() {
    let sim = start_at(noon()).await;
    let mut headers = signed(
        "AWSMPMeteringService.BatchMeterUsage",
        "aws-marketplace",
        "AKIDRAW",
    );
    let response = raw_aws(&sim, &headers, "{}").await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "UnknownOperationException");
    headers[1].1 = "DynamoDB_20120810.GetItem".to_owned();
    assert_eq!(
        raw_aws(&sim, &headers, "{}").await.json()["__type"],
        "UnknownOperationException"
    );
    headers.retain(|(n, _)| n != "X-Amz-Target");
    assert_eq!(
        raw_aws(&sim, &headers, "{}").await.json()["__type"],
        "UnknownOperationException"
    );
    let mut wrong_type = signed(
        "AWSMPMeteringService.RegisterUsage",
        "aws-marketplace",
        "AKIDRAW",
    );
    wrong_type[0].1 = "application/json".to_owned();
    let response = raw_aws(&sim, &wrong_type, "{}").await;
    assert_eq!(response.json()["__type"], "UnknownOperationException");
    let response = raw(&sim, "GET", "/", &[], "").await;
    assert_eq!(response.status, 400);
    let calls = sim.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[0].operation, "BatchMeterUsage");
    assert_eq!(calls[0].service, Some(Service::Metering));
    assert_eq!(
        calls[0].error_code.as_deref(),
        Some("UnknownOperationException")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_a_declared_error_of_the_operation() {
    let sim = start_at(noon()).await;
    let headers = signed(
        "AWSLicenseManager.CheckoutLicense",
        "license-manager",
        "AKIDRAW",
    );
    let response = raw_aws(&sim, &headers, "not json").await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "ValidationException");
    let headers = signed(
        "AWSMPMeteringService.MeterUsage",
        "aws-marketplace",
        "AKIDRAW",
    );
    let response = raw_aws(&sim, &headers, "[]").await;
    assert_eq!(response.json()["__type"], "InvalidProductCodeException");
    let wrong_type =
        json!({"ProductCode": USAGE, "Timestamp": "yesterday", "UsageDimension": "api_calls"});
    let response = raw_aws(&sim, &headers, &wrong_type.to_string()).await;
    assert_eq!(response.json()["__type"], "TimestampOutOfBoundsException");
    let headers = signed(
        "AWSLicenseManager.CheckoutLicense",
        "license-manager",
        "AKIDRAW",
    );
    let missing = json!({"ProductSKU": ENTERPRISE_SKU, "CheckoutType": "PROVISIONAL", "KeyFingerprint": FINGERPRINT, "ClientToken": "t"});
    let response = raw_aws(&sim, &headers, &missing.to_string()).await;
    assert_eq!(response.json()["__type"], "ValidationException");
    assert!(
        response.json()["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("Entitlements")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn botocore_style_requests_with_decimal_quantities_and_whole_timestamps() {
    let sim = start_at(noon()).await;
    let headers = signed(
        "AWSMPMeteringService.MeterUsage",
        "aws-marketplace",
        "AKIDPYTHON",
    );
    let body = |quantity: &str| {
        json!({
            "ProductCode": USAGE,
            "Timestamp": 1_795_694_400,
            "UsageDimension": "gb_scanned",
            "UsageQuantityAsDecimal": quantity,
            "UsageAllocations": [
                {"AllocatedUsageQuantityAsDecimal": "10.25", "Tags": [{"Key": "team", "Value": "a"}]},
                {"AllocatedUsageQuantityAsDecimal": "7.25"},
            ],
        })
        .to_string()
    };
    let first = raw_aws(&sim, &headers, &body("17.5")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    // Quantities compare by value: 17.50 is the same record.
    let same = raw_aws(&sim, &headers, &body("17.50")).await;
    assert_eq!(
        same.json()["MeteringRecordId"],
        first.json()["MeteringRecordId"]
    );
    let usage = sim.usage();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].quantity.micros(), 17_500_000);
    assert_eq!(usage[0].quantity.to_string(), "17.5");
    let mixed = json!({
        "ProductCode": USAGE, "Timestamp": 1_795_694_400, "UsageDimension": "api_calls",
        "UsageQuantity": 3, "UsageQuantityAsDecimal": "3"
    });
    let response = raw_aws(&sim, &headers, &mixed.to_string()).await;
    assert_eq!(
        response.json()["__type"],
        "InvalidUsageAllocationsException"
    );
    sim.shutdown().await;
}
