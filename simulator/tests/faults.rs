//! Fault injection as the real SDKs experience it: throttling, rate limits,
//! server errors, latency and dropped connections, for the next N calls or
//! with a probability, and how the SDKs' retries react (counted in the call
//! log).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};
use aws_sdk_marketplacemetering::error::SdkError;
use common::{Client, ENTERPRISE_SKU, FINGERPRINT, PRO, USAGE, noon, sdk_time, start_at};
use marketgate_simulator::{Error, Fault, FaultKind, Operation, Outcome, Simulator, Trigger};

fn outcomes(sim: &Simulator, operation: Operation) -> Vec<(Outcome, Option<FaultKind>)> {
    sim.calls()
        .into_iter()
        .filter(|c| c.operation == operation.name())
        .map(|c| (c.outcome, c.fault))
        .collect()
}

async fn meter(
    client: &aws_sdk_marketplacemetering::Client,
    quantity: i32,
) -> Result<
    aws_sdk_marketplacemetering::operation::meter_usage::MeterUsageOutput,
    SdkError<aws_sdk_marketplacemetering::operation::meter_usage::MeterUsageError>,
> {
    client
        .meter_usage()
        .product_code(USAGE)
        .timestamp(sdk_time(noon()))
        .usage_dimension("api_calls")
        .usage_quantity(quantity)
        .send()
        .await
}

fn retrying() -> Client<'static> {
    Client {
        retries: true,
        ..Client::default()
    }
}

#[tokio::test]
async fn throttling_is_a_typed_throttling_exception_that_changes_nothing() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    let client = common::metering_client(&sim).await;
    let err = meter(&client, 5).await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert!(err.into_service_error().is_throttling_exception());
    assert!(sim.usage().is_empty(), "a throttled call records nothing");
    meter(&client, 5)
        .await
        .expect("only the next call was throttled");
    assert_eq!(
        outcomes(&sim, Operation::MeterUsage),
        [
            (Outcome::Error, Some(FaultKind::Throttling)),
            (Outcome::Success, None)
        ]
    );
    assert!(
        sim.faults().is_empty(),
        "a spent NextCalls fault is removed"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_sdk_retries_throttling_and_the_call_log_counts_attempts() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::RegisterUsage,
        Fault::Throttling,
        Trigger::NextCalls(2),
    )
    .expect("valid fault");
    let client = retrying().metering(&sim).await;
    client
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .send()
        .await
        .expect("third attempt succeeds");
    assert_eq!(
        outcomes(&sim, Operation::RegisterUsage),
        [
            (Outcome::Error, Some(FaultKind::Throttling)),
            (Outcome::Error, Some(FaultKind::Throttling)),
            (Outcome::Success, None)
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_exceeded_is_typed_and_not_retried_by_the_sdk() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::CheckoutLicense,
        Fault::RateLimitExceeded,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    let client = retrying().license_manager(&sim).await;
    let err = client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(FINGERPRINT)
        .entitlements(
            EntitlementData::builder()
                .name("ProEdition")
                .unit(EntitlementDataUnit::None)
                .build()
                .expect("entitlement"),
        )
        .client_token("t")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_rate_limit_exceeded_exception(), "{err:?}");
    assert_eq!(
        outcomes(&sim, Operation::CheckoutLicense),
        [(Outcome::Error, Some(FaultKind::RateLimitExceeded))],
        "AWS SDKs do not retry RateLimitExceededException"
    );
    assert!(sim.licenses().checkouts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn internal_errors_are_500s_of_each_services_fault_shape() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::InternalError,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    sim.inject(
        Operation::GetLicense,
        Fault::InternalError,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    let err = meter(&common::metering_client(&sim).await, 1)
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert!(
        err.into_service_error()
            .is_internal_service_error_exception()
    );
    let lm = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    let err = lm.get_license().license_arn(&arn).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert!(err.into_service_error().is_server_internal_exception());

    // The SDKs retry 500s.
    sim.inject(
        Operation::GetLicense,
        Fault::InternalError,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    retrying()
        .license_manager(&sim)
        .await
        .get_license()
        .license_arn(&arn)
        .send()
        .await
        .expect("retried");
    let get = outcomes(&sim, Operation::GetLicense);
    assert_eq!(get.len(), 3);
    assert_eq!(get[1], (Outcome::Error, Some(FaultKind::InternalError)));
    assert_eq!(get[2], (Outcome::Success, None));
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::ListReceivedLicenses,
        Fault::Latency(Duration::from_millis(150)),
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    let client = common::lm_client(&sim).await;
    let started = Instant::now();
    let out = client
        .list_received_licenses()
        .send()
        .await
        .expect("slow but successful");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(out.licenses().len(), 1);
    client
        .list_received_licenses()
        .send()
        .await
        .expect("fast again");
    assert_eq!(
        outcomes(&sim, Operation::ListReceivedLicenses),
        [
            (Outcome::Success, Some(FaultKind::Latency)),
            (Outcome::Success, None)
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_fail_without_an_answer_and_are_retried() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::DropConnection,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    let err = meter(&common::metering_client(&sim).await, 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "no HTTP response at all: {err:?}"
    );
    assert!(sim.usage().is_empty());

    sim.inject(
        Operation::MeterUsage,
        Fault::DropConnection,
        Trigger::NextCalls(1),
    )
    .expect("valid fault");
    meter(&retrying().metering(&sim).await, 3)
        .await
        .expect("the SDK retries a dropped connection");
    assert_eq!(sim.usage().len(), 1);
    assert_eq!(
        outcomes(&sim, Operation::MeterUsage),
        [
            (Outcome::Dropped, Some(FaultKind::DropConnection)),
            (Outcome::Dropped, Some(FaultKind::DropConnection)),
            (Outcome::Success, None)
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn probability_faults_fire_at_their_rate() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    let failures = |n: usize| {
        let client = client.clone();
        let arn = arn.clone();
        async move {
            let mut failed: u64 = 0;
            for _ in 0..n {
                if client.get_license().license_arn(&arn).send().await.is_err() {
                    failed += 1;
                }
            }
            failed
        }
    };
    sim.inject(
        Operation::GetLicense,
        Fault::InternalError,
        Trigger::Probability(1.0),
    )
    .expect("valid fault");
    assert_eq!(failures(20).await, 20);
    sim.clear_faults();
    sim.inject(
        Operation::GetLicense,
        Fault::InternalError,
        Trigger::Probability(0.0),
    )
    .expect("valid fault");
    assert_eq!(failures(20).await, 0);
    sim.clear_faults();
    sim.inject(
        Operation::GetLicense,
        Fault::InternalError,
        Trigger::Probability(0.5),
    )
    .expect("valid fault");
    // Binomial(200, 0.5): outside 60..=140 has a chance below 1e-8.
    let failed = failures(200).await;
    assert!((60..=140).contains(&failed), "{failed} of 200");
    assert_eq!(sim.faults()[0].fired, failed);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_hit_only_their_operation_until_cleared() {
    let sim = start_at(noon()).await;
    sim.inject(
        Operation::MeterUsage,
        Fault::Throttling,
        Trigger::Probability(1.0),
    )
    .expect("valid fault");
    let client = common::metering_client(&sim).await;
    client
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .send()
        .await
        .expect("other operations are unaffected");
    assert!(meter(&client, 1).await.is_err());
    sim.clear_faults();
    meter(&client, 1).await.expect("cleared");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_an_operation_cannot_answer_are_refused() {
    let sim = start_at(noon()).await;
    let err = sim
        .inject(
            Operation::CheckoutLicense,
            Fault::Throttling,
            Trigger::NextCalls(1),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Fault(_)), "{err}");
    assert!(err.to_string().contains("RateLimitExceeded"));
    let err = sim
        .inject(
            Operation::MeterUsage,
            Fault::RateLimitExceeded,
            Trigger::NextCalls(1),
        )
        .unwrap_err();
    assert!(err.to_string().contains("ThrottlingException"));
    assert!(
        sim.inject(
            Operation::MeterUsage,
            Fault::InternalError,
            Trigger::Probability(2.0)
        )
        .is_err()
    );
    assert!(sim.faults().is_empty());
    sim.shutdown().await;
}
