//! AWS Marketplace Metering through the real `aws-sdk-marketplacemetering`
//! client: every `RegisterUsage` and `MeterUsage` rule and error, on the
//! simulated clock.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_marketplacemetering::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_marketplacemetering::operation::meter_usage::MeterUsageError;
use aws_sdk_marketplacemetering::operation::register_usage::RegisterUsageError;
use aws_sdk_marketplacemetering::types::{Tag, UsageAllocation};
use common::{COMMUNITY, Client, PRO, USAGE, noon, sdk_time, start_at, start_with};
use marketgate_simulator::{Config, KeyConfig, Platform, Simulator, Subscription};

const HOUR: Duration = Duration::from_hours(1);

type Metering = aws_sdk_marketplacemetering::Client;

async fn register(
    client: &Metering,
    product: &str,
    version: i32,
) -> Result<(), RegisterUsageError> {
    client
        .register_usage()
        .product_code(product)
        .public_key_version(version)
        .nonce("n")
        .send()
        .await
        .map(|_| ())
        .map_err(SdkError::into_service_error)
}

async fn meter(
    client: &Metering,
    at: SystemTime,
    dimension: &str,
    quantity: i32,
) -> Result<String, MeterUsageError> {
    client
        .meter_usage()
        .product_code(USAGE)
        .timestamp(sdk_time(at))
        .usage_dimension(dimension)
        .usage_quantity(quantity)
        .send()
        .await
        .map(|out| out.metering_record_id().unwrap_or_default().to_owned())
        .map_err(SdkError::into_service_error)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().expect("tag")
}

fn allocation(quantity: i32, tags: &[Tag]) -> UsageAllocation {
    UsageAllocation::builder()
        .allocated_usage_quantity(quantity)
        .set_tags((!tags.is_empty()).then(|| tags.to_vec()))
        .build()
        .expect("allocation")
}

// ---------------------------------------------------------------- RegisterUsage

#[tokio::test]
async fn register_usage_returns_a_ps256_signature_over_the_request() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    let out = client
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .nonce("nonce-123")
        .send()
        .await
        .expect("registered");
    assert!(out.public_key_rotation_timestamp().is_none());
    let (header, payload, signature, signing_input) =
        common::decode_jws(out.signature().expect("signature"));
    assert_eq!(header["alg"], "PS256");
    assert_eq!(payload["productCode"], PRO);
    assert_eq!(payload["publicKeyVersion"], 1);
    assert_eq!(payload["nonce"], "nonce-123");
    assert_eq!(payload["iat"], 1_795_694_400);
    let key = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/pro.pub.pem"))
        .expect("key file");
    assert!(common::verify_ps256(&key, &signing_input, &signature));
    let other = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/keys/community.pub.pem"
    ))
    .expect("key file");
    assert!(!common::verify_ps256(&other, &signing_input, &signature));
    sim.shutdown().await;
}

#[tokio::test]
async fn register_usage_signs_free_products_with_their_own_key() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    let out = client
        .register_usage()
        .product_code(COMMUNITY)
        .public_key_version(1)
        .send()
        .await
        .expect("registered");
    let (_, payload, signature, input) = common::decode_jws(out.signature().expect("signature"));
    assert_eq!(payload["productCode"], COMMUNITY);
    assert!(payload.get("nonce").is_none(), "no nonce sent, none signed");
    let key = sim.product_public_key_pem("community", 1).expect("key");
    assert!(common::verify_ps256(key, &input, &signature));
    sim.shutdown().await;
}

#[tokio::test]
async fn register_usage_rejects_unknown_products_and_key_versions() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    let err = register(&client, "no-such-product", 1).await.unwrap_err();
    assert!(err.is_invalid_product_code_exception(), "{err:?}");
    let err = register(&client, "bad code!", 1).await.unwrap_err();
    assert!(err.is_invalid_product_code_exception(), "{err:?}");
    let err = register(&client, USAGE, 1).await.unwrap_err();
    assert!(
        err.is_invalid_product_code_exception(),
        "custom products do not register: {err:?}"
    );
    let err = register(&client, PRO, 2).await.unwrap_err();
    assert!(err.is_invalid_public_key_version_exception(), "{err:?}");
    let err = register(&client, PRO, 0).await.unwrap_err();
    assert!(err.is_invalid_public_key_version_exception(), "{err:?}");
    let err = client
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .nonce("n".repeat(256))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_public_key_version_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("Nonce"));
    sim.shutdown().await;
}

#[tokio::test]
async fn register_usage_must_come_from_the_tasks_region() {
    let sim = start_at(noon()).await;
    let client = Client {
        region: "eu-west-1",
        ..Client::default()
    }
    .metering(&sim)
    .await;
    let err = register(&client, PRO, 1).await.unwrap_err();
    assert!(err.is_invalid_region_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("us-east-1"));
    sim.shutdown().await;
}

#[tokio::test]
async fn register_usage_off_ecs_eks_fargate_is_platform_not_supported() {
    let mut config = Config::example();
    config.task.platform = Platform::Unsupported;
    let sim = start_with(config, noon()).await;
    let client = common::metering_client(&sim).await;
    let err = register(&client, PRO, 1).await.unwrap_err();
    assert!(err.is_platform_not_supported_exception(), "{err:?}");
    sim.shutdown().await;

    for platform in [Platform::Eks, Platform::Fargate] {
        let mut config = Config::example();
        config.task.platform = platform;
        let sim = start_with(config, noon()).await;
        let client = common::metering_client(&sim).await;
        register(&client, PRO, 1).await.expect("supported platform");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn register_usage_checks_entitlement_only_on_a_tasks_first_call() {
    let sim = start_at(noon()).await;
    let task = Client::key("AKIDTASKREGISTERED").metering(&sim).await;
    register(&task, PRO, 1).await.expect("subscribed");

    sim.set_subscription(PRO, Subscription::Unsubscribed)
        .expect("known product");
    // AWS: later calls from the same task or pod succeed after unsubscribe.
    register(&task, PRO, 1)
        .await
        .expect("same task keeps running");
    // A new task (another pod) is refused.
    let new_task = Client::key("AKIDTASKNEW").metering(&sim).await;
    let err = register(&new_task, PRO, 1).await.unwrap_err();
    assert!(err.is_customer_not_entitled_exception(), "{err:?}");
    // Calling again does not get a refused task through.
    let err = register(&new_task, PRO, 1).await.unwrap_err();
    assert!(err.is_customer_not_entitled_exception(), "{err:?}");

    sim.set_subscription("pro", Subscription::Never)
        .expect("names work too");
    let err = register(&Client::key("AKIDTASK3").metering(&sim).await, PRO, 1)
        .await
        .unwrap_err();
    assert!(err.is_customer_not_entitled_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn register_usage_reports_an_expired_key_version() {
    let mut config = Config::example();
    let pro = &mut config.products[0];
    let pem = pro.keys[0].private_key.clone();
    pro.keys[0].expires_at = Some(noon() - HOUR);
    pro.keys.push(KeyConfig {
        version: 2,
        private_key: pem,
        private_key_file: None,
        expires_at: None,
    });
    let sim = start_with(config, noon()).await;
    let client = common::metering_client(&sim).await;
    let old = client
        .register_usage()
        .product_code(PRO)
        .public_key_version(1)
        .send()
        .await
        .expect("an expired version still registers");
    assert_eq!(
        old.public_key_rotation_timestamp(),
        Some(&sdk_time(noon() - HOUR))
    );
    let (_, payload, _, _) = common::decode_jws(old.signature().expect("signature"));
    assert_eq!(payload["publicKeyVersion"], 1);
    let new = client
        .register_usage()
        .product_code(PRO)
        .public_key_version(2)
        .send()
        .await
        .expect("current version");
    assert!(new.public_key_rotation_timestamp().is_none());
    sim.shutdown().await;
}

// ------------------------------------------------------------------ MeterUsage

#[tokio::test]
async fn meter_usage_rounds_fractional_timestamps_down_to_the_hour() {
    let sim = start_at(noon() + Duration::from_mins(30)).await;
    let client = common::metering_client(&sim).await;
    let id = meter(
        &client,
        noon() + Duration::from_millis(1_234_567),
        "api_calls",
        42,
    )
    .await
    .expect("metered");
    let usage = sim.usage();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].timestamp, 1_795_694_400);
    assert_eq!(usage[0].quantity.as_whole(), Some(42));
    assert_eq!(usage[0].metering_record_id, id);
    assert_eq!(usage[0].dimension, "api_calls");
    assert_eq!(usage[0].product_code, USAGE);
    assert_eq!(usage[0].access_key_id, "AKIDSIMULATORTASK1");
    sim.shutdown().await;
}

#[tokio::test]
async fn identical_requests_in_an_hour_get_the_same_record_id() {
    let sim = start_at(noon() + Duration::from_mins(50)).await;
    let client = common::metering_client(&sim).await;
    // The SDK fills a fresh ClientToken each time: only hour rounding and the
    // per-task record make these identical, as after a container restart.
    let first = meter(&client, noon() + Duration::from_secs(10), "api_calls", 7)
        .await
        .expect("first");
    let again = meter(&client, noon() + Duration::from_secs(2000), "api_calls", 7)
        .await
        .expect("replay");
    assert_eq!(first, again);
    assert_eq!(sim.usage().len(), 1);
    // Another dimension in the same hour is its own record.
    let other = meter(&client, noon(), "gb_scanned", 7)
        .await
        .expect("other dimension");
    assert_ne!(first, other);
    assert_eq!(sim.usage().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn another_quantity_in_the_same_hour_is_a_duplicate_request() {
    let sim = start_at(noon() + Duration::from_mins(10)).await;
    let client = common::metering_client(&sim).await;
    meter(&client, noon(), "api_calls", 7).await.expect("first");
    let err = meter(&client, noon() + Duration::from_mins(1), "api_calls", 8)
        .await
        .unwrap_err();
    assert!(err.is_duplicate_request_exception(), "{err:?}");
    assert_eq!(sim.usage()[0].quantity.as_whole(), Some(7));
    sim.shutdown().await;
}

#[tokio::test]
async fn records_are_per_task_and_per_hour() {
    let sim = start_at(noon() + Duration::from_mins(10)).await;
    let pod_a = Client::key("AKIDPODA").metering(&sim).await;
    let pod_b = Client::key("AKIDPODB").metering(&sim).await;
    let a = meter(&pod_a, noon(), "api_calls", 1).await.expect("pod a");
    let b = meter(&pod_b, noon(), "api_calls", 2).await.expect("pod b");
    assert_ne!(a, b);
    // The next hour is a new record, with any quantity.
    sim.clock().advance(HOUR);
    let next = meter(&pod_a, noon() + HOUR, "api_calls", 5)
        .await
        .expect("next hour");
    assert_ne!(a, next);
    let hours: Vec<(String, i64)> = sim
        .usage()
        .iter()
        .map(|r| (r.access_key_id.clone(), r.timestamp))
        .collect();
    assert_eq!(
        hours,
        [
            ("AKIDPODA".to_owned(), 1_795_694_400),
            ("AKIDPODB".to_owned(), 1_795_694_400),
            ("AKIDPODA".to_owned(), 1_795_698_000),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn timestamps_more_than_six_hours_old_are_out_of_bounds() {
    let sim = start_at(noon()).await;
    sim.start_task("AKIDSIMULATORTASK1", noon() - 24 * HOUR);
    let client = common::metering_client(&sim).await;
    meter(&client, noon() - 6 * HOUR, "api_calls", 1)
        .await
        .expect("exactly six hours old is accepted");
    let err = meter(
        &client,
        noon() - 6 * HOUR - Duration::from_secs(1),
        "gb_scanned",
        1,
    )
    .await
    .unwrap_err();
    assert!(err.is_timestamp_out_of_bounds_exception(), "{err:?}");
    // The window moves with the simulated clock.
    sim.clock().advance(HOUR);
    let err = meter(&client, noon() - 6 * HOUR, "gb_scanned", 1)
        .await
        .unwrap_err();
    assert!(err.is_timestamp_out_of_bounds_exception(), "{err:?}");
    // Future hours are refused as well.
    let err = meter(&client, noon() + 3 * HOUR, "gb_scanned", 1)
        .await
        .unwrap_err();
    assert!(err.is_timestamp_out_of_bounds_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn timestamps_before_the_task_started_are_out_of_bounds() {
    let sim = start_at(noon() + Duration::from_mins(20)).await;
    // This task's first request is now (12:20): its first hour is 12:00.
    let client = Client::key("AKIDFRESHPOD").metering(&sim).await;
    let err = meter(&client, noon() - Duration::from_secs(1), "api_calls", 1)
        .await
        .unwrap_err();
    assert!(err.is_timestamp_out_of_bounds_exception(), "{err:?}");
    meter(&client, noon(), "api_calls", 1)
        .await
        .expect("the start hour itself is fine");
    let tasks = sim.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].started_at, 1_795_695_600);

    // A task registered in-process before its first call starts then.
    sim.start_task("AKIDOLDPOD", noon() - 3 * HOUR);
    let old_pod = Client::key("AKIDOLDPOD").metering(&sim).await;
    meter(&old_pod, noon() - 3 * HOUR, "api_calls", 1)
        .await
        .expect("after its registered start");
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_dimensions_and_products_are_refused() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    let err = meter(&client, noon(), "apicalls", 1).await.unwrap_err();
    assert!(err.is_invalid_usage_dimension_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("api_calls"));
    let err = client
        .meter_usage()
        .product_code(PRO)
        .timestamp(sdk_time(noon()))
        .usage_dimension("api_calls")
        .usage_quantity(1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_invalid_usage_dimension_exception(),
        "hourly products have no dimensions: {err:?}"
    );
    let err = client
        .meter_usage()
        .product_code("nobody")
        .timestamp(sdk_time(noon()))
        .usage_dimension("api_calls")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_product_code_exception(), "{err:?}");
    assert!(sim.usage().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn dry_run_checks_everything_and_records_nothing() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    for dimension in ["api_calls", "gb_scanned"] {
        client
            .meter_usage()
            .product_code(USAGE)
            .timestamp(sdk_time(noon()))
            .usage_dimension(dimension)
            .usage_quantity(0)
            .dry_run(true)
            .send()
            .await
            .expect("dry run passes");
    }
    assert!(sim.usage().is_empty());
    let err = client
        .meter_usage()
        .product_code(USAGE)
        .timestamp(sdk_time(noon()))
        .usage_dimension("nope")
        .dry_run(true)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_usage_dimension_exception(), "{err:?}");
    // A dry run leaves the hour free for the real record.
    meter(&client, noon(), "api_calls", 3).await.expect("real");
    assert_eq!(sim.usage().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn usage_allocations_must_sum_and_carry_valid_tags() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    let send = |allocations: Vec<UsageAllocation>, dimension: &'static str| {
        client
            .meter_usage()
            .product_code(USAGE)
            .timestamp(sdk_time(noon()))
            .usage_dimension(dimension)
            .usage_quantity(10)
            .set_usage_allocations(Some(allocations))
            .send()
    };
    let err = send(vec![allocation(4, &[tag("team", "a")])], "api_calls")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_usage_allocations_exception(), "{err:?}");
    let six: Vec<Tag> = (0..6).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = send(vec![allocation(10, &six)], "api_calls")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_tag_exception(), "{err:?}");
    let err = send(vec![allocation(10, &[tag("bad?key", "v")])], "api_calls")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_tag_exception(), "{err:?}");
    let err = send(
        vec![
            allocation(5, &[tag("team", "a")]),
            allocation(5, &[tag("team", "a")]),
        ],
        "api_calls",
    )
    .await
    .unwrap_err()
    .into_service_error();
    assert!(
        err.is_invalid_usage_allocations_exception(),
        "tag sets must be unique: {err:?}"
    );
    assert!(sim.usage().is_empty());

    send(
        vec![
            allocation(6, &[tag("team", "a"), tag("env", "prod")]),
            allocation(3, &[tag("team", "b")]),
            allocation(1, &[]),
        ],
        "api_calls",
    )
    .await
    .expect("valid allocations");
    let usage = sim.usage();
    assert_eq!(usage[0].allocations.len(), 3);
    assert_eq!(usage[0].allocations[0].tags[1].key, "env");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reused_client_token_with_other_parameters_is_a_409_conflict() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    let send = |quantity: i32, dimension: &'static str| {
        client
            .meter_usage()
            .product_code(USAGE)
            .timestamp(sdk_time(noon()))
            .usage_dimension(dimension)
            .usage_quantity(quantity)
            .client_token("token-1")
            .send()
    };
    let first = send(3, "api_calls").await.expect("first");
    let retry = send(3, "api_calls").await.expect("retry with same token");
    assert_eq!(first.metering_record_id(), retry.metering_record_id());
    let err = send(3, "gb_scanned").await.unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(409),
        "IdempotencyConflictException is HTTP 409"
    );
    let err = err.into_service_error();
    assert!(err.is_idempotency_conflict_exception(), "{err:?}");
    assert_eq!(sim.usage().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn meter_usage_in_another_region_is_an_invalid_endpoint_region() {
    let sim = start_at(noon()).await;
    let client = Client {
        region: "ap-southeast-2",
        ..Client::default()
    }
    .metering(&sim)
    .await;
    let err = meter(&client, noon(), "api_calls", 1).await.unwrap_err();
    assert!(err.is_invalid_endpoint_region_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn meter_usage_for_an_unsubscribed_buyer_is_not_entitled() {
    let sim = start_at(noon()).await;
    let client = common::metering_client(&sim).await;
    meter(&client, noon(), "api_calls", 1)
        .await
        .expect("subscribed");
    sim.set_subscription(USAGE, Subscription::Unsubscribed)
        .expect("known");
    let err = meter(&client, noon(), "gb_scanned", 1).await.unwrap_err();
    assert!(err.is_customer_not_entitled_exception(), "{err:?}");
    assert_eq!(
        sim.subscription("usage").expect("known"),
        Subscription::Unsubscribed
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn restarted_container_replays_its_journal_without_double_billing() {
    // The same pod (same credentials) restarts and re-sends the hours its
    // journal did not mark as confirmed: identical requests, same ids.
    let sim = start_at(noon() + 2 * HOUR + Duration::from_mins(5)).await;
    sim.start_task("AKIDRESTARTING", noon());
    let before = Client::key("AKIDRESTARTING").metering(&sim).await;
    let first = meter(&before, noon(), "api_calls", 11)
        .await
        .expect("12:00");
    let second = meter(&before, noon() + HOUR, "api_calls", 12)
        .await
        .expect("13:00");
    let after = Client::key("AKIDRESTARTING").metering(&sim).await;
    assert_eq!(
        meter(&after, noon(), "api_calls", 11)
            .await
            .expect("replay"),
        first
    );
    assert_eq!(
        meter(&after, noon() + HOUR, "api_calls", 12)
            .await
            .expect("replay"),
        second
    );
    assert_eq!(sim.usage().len(), 2);
    assert_simulator_is_still_serving(&sim).await;
    sim.shutdown().await;
}

async fn assert_simulator_is_still_serving(sim: &Simulator) {
    let client = common::metering_client(sim).await;
    register(&client, PRO, 1).await.expect("still serving");
}
