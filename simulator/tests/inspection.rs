//! The inspection API under `/_marketgate/` on the simulator's port, as a
//! test in another process or a seller with curl would use it, and the
//! blocking in-process simulator.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{ENTERPRISE_SKU, FINGERPRINT, USAGE, noon, raw, start_at};
use marketgate_simulator::{Config, Simulator};
use serde_json::{Value, json};

async fn get(sim: &Simulator, path: &str) -> Value {
    let response = raw(sim, "GET", path, &[], "").await;
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

async fn post(sim: &Simulator, path: &str, body: &Value) -> (u16, Value) {
    let response = raw(
        sim,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .await;
    (response.status, response.json())
}

async fn meter(sim: &Simulator, quantity: i32) -> Result<String, String> {
    common::meter_at_noon(&common::metering_client(sim).await, quantity)
        .await
        .map(|o| o.metering_record_id().unwrap_or_default().to_owned())
        .map_err(|e| format!("{:?}", e.into_service_error()))
}

#[tokio::test]
async fn usage_lists_accepted_records_in_the_documented_shape() {
    let sim = start_at(noon() + Duration::from_mins(15)).await;
    let id = meter(&sim, 12).await.expect("metered");
    // The SDK fills a fresh ClientToken; the call log shows which.
    let token = sim.calls()[0]
        .client_token
        .clone()
        .expect("the SDK sends a ClientToken");
    let usage = get(&sim, "/_marketgate/usage").await;
    assert_eq!(
        usage,
        json!([{
            "productCode": USAGE,
            "dimension": "api_calls",
            "timestamp": 1_795_694_400,
            "quantity": 12,
            "meteringRecordId": id,
            "accessKeyId": "AKIDSIMULATORTASK1",
            "receivedAt": 1_795_695_300,
            "clientToken": token,
        }])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn calls_list_every_request_with_its_outcome() {
    let sim = start_at(noon()).await;
    meter(&sim, 1).await.expect("metered");
    meter(&sim, 2).await.expect_err("duplicate");
    let calls = get(&sim, "/_marketgate/calls").await;
    let calls = calls.as_array().expect("array");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["operation"], "MeterUsage");
    assert_eq!(calls[0]["service"], "Metering");
    assert_eq!(calls[0]["outcome"], "success");
    assert_eq!(calls[0]["httpStatus"], 200);
    assert_eq!(calls[0]["region"], "us-east-1");
    assert_eq!(calls[1]["outcome"], "error");
    assert_eq!(calls[1]["errorCode"], "DuplicateRequestException");
    assert_eq!(calls[1]["seq"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_clock_can_be_read_set_advanced_and_frozen() {
    let sim = start_at(noon()).await;
    let clock = get(&sim, "/_marketgate/clock").await;
    assert_eq!(
        clock,
        json!({"now": 1_795_694_400, "iso": "2026-11-26T12:00:00Z", "frozen": true})
    );
    let (status, clock) = post(&sim, "/_marketgate/clock", &json!({"set": 1_795_700_000})).await;
    assert_eq!(status, 200);
    assert_eq!(clock["now"], 1_795_700_000);
    let (_, clock) = post(&sim, "/_marketgate/clock", &json!({"advance": 7200})).await;
    assert_eq!(clock["now"], 1_795_707_200);
    assert_eq!(sim.clock().now(), noon() + Duration::from_secs(12_800));
    let (_, clock) = post(&sim, "/_marketgate/clock", &json!({"frozen": false})).await;
    assert_eq!(clock["frozen"], false);
    assert!(!sim.clock().is_frozen());
    let (status, body) = post(&sim, "/_marketgate/clock", &json!({"advance": -5})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some());
    sim.shutdown().await;
}

/// Found by the `sim_request` fuzz target
/// (fuzz/corpus/sim_request/regression-clock-advance-overflow): an advance
/// past what `SystemTime` holds panicked the handler ("overflow when adding
/// duration to instant") instead of answering 400.
#[tokio::test]
async fn advancing_the_clock_past_its_range_is_refused() {
    let sim = start_at(noon()).await;
    for advance in [json!(14_895_013_706_255_360_910.5_f64), json!(1e15)] {
        let (status, body) = post(&sim, "/_marketgate/clock", &json!({ "advance": advance })).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("latest time")),
            "{body}"
        );
    }
    assert_eq!(sim.clock().now(), noon());
    let (status, _) = post(&sim, "/_marketgate/clock", &json!({"advance": 3600})).await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_can_be_injected_listed_and_cleared() {
    let sim = start_at(noon()).await;
    let fault = json!({"operation": "MeterUsage", "fault": "Throttling", "nextCalls": 1});
    let (status, rule) = post(&sim, "/_marketgate/faults", &fault).await;
    assert_eq!(status, 200);
    assert_eq!(rule["id"], 1);
    let listed = get(&sim, "/_marketgate/faults").await;
    assert_eq!(listed[0]["nextCalls"], 1);
    let err = meter(&sim, 1).await.unwrap_err();
    assert!(err.contains("ThrottlingException"), "{err}");
    assert_eq!(get(&sim, "/_marketgate/faults").await, json!([]));

    let latency =
        json!({"operation": "GetLicense", "fault": "Latency", "latencyMs": 10, "probability": 0.5});
    assert_eq!(post(&sim, "/_marketgate/faults", &latency).await.0, 200);
    let response = raw(&sim, "DELETE", "/_marketgate/faults", &[], "").await;
    assert_eq!(response.status, 200);
    assert!(sim.faults().is_empty());

    let wrong = json!({"operation": "CheckoutLicense", "fault": "Throttling", "nextCalls": 1});
    let (status, body) = post(&sim, "/_marketgate/faults", &wrong).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("RateLimitExceeded")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn task_faults_are_posted_and_removed_by_id() {
    let sim = start_at(noon()).await;
    let for_a = json!({"operation": "ExtendLicenseConsumption", "fault": "DropConnection",
                       "probability": 1.0, "task": "AKIDA"});
    let (status, rule) = post(&sim, "/_marketgate/faults", &for_a).await;
    assert_eq!(status, 200, "{rule}");
    let mut expected = for_a.clone();
    expected["id"] = json!(1);
    expected["fired"] = json!(0);
    assert_eq!(rule, expected, "POST answers the rule with its task");
    let everyone = json!({"operation": "GetLicense", "fault": "InternalError", "nextCalls": 1});
    assert_eq!(post(&sim, "/_marketgate/faults", &everyone).await.0, 200);
    assert_eq!(sim.faults()[0].task.as_deref(), Some("AKIDA"));
    assert!(
        get(&sim, "/_marketgate/faults").await[1]
            .get("task")
            .is_none(),
        "a rule for every caller has no task"
    );

    let response = raw(&sim, "DELETE", "/_marketgate/faults/1", &[], "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let remaining = response.json();
    assert_eq!(remaining.as_array().map(Vec::len), Some(1), "{remaining}");
    assert_eq!(remaining[0]["id"], 2);
    // (method, path, status)
    let refused = [
        ("DELETE", "/_marketgate/faults/1", 404),
        ("DELETE", "/_marketgate/faults/first", 400),
        ("GET", "/_marketgate/faults/2", 405),
    ];
    for (method, path, status) in refused {
        let response = raw(&sim, method, path, &[], "").await;
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        assert!(response.json()["error"].is_string());
    }
    assert_eq!(sim.faults().len(), 1);

    let empty = json!({"operation": "GetLicense", "fault": "InternalError", "nextCalls": 1,
                       "task": ""});
    assert_eq!(post(&sim, "/_marketgate/faults", &empty).await.0, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_new_faults_round_trip_through_the_inspection_api() {
    let sim = start_at(noon()).await;
    let rules = [
        json!({"operation": "MeterUsage", "fault": "StoreThenDrop", "nextCalls": 1}),
        json!({"operation": "MeterUsage", "fault": "Error", "code": "AccessDeniedException", "nextCalls": 1}),
        json!({"operation": "MeterUsage", "fault": "ServerError", "status": 503, "stored": true, "nextCalls": 1}),
    ];
    for (i, rule) in rules.iter().enumerate() {
        let (status, answered) = post(&sim, "/_marketgate/faults", rule).await;
        assert_eq!(status, 200, "{rule}: {answered}");
        let mut expected = rule.clone();
        expected["id"] = json!(i + 1);
        expected["fired"] = json!(0);
        assert_eq!(answered, expected, "POST answers the rule as given");
    }
    let listed = get(&sim, "/_marketgate/faults").await;
    let listed: Vec<Value> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let r2 = r.as_object_mut().expect("object");
            r2.remove("id");
            r2.remove("fired");
            r
        })
        .collect();
    assert_eq!(listed, rules, "GET lists them as posted");

    let in_process: Vec<marketgate_simulator::FaultRule> = sim.faults();
    assert_eq!(in_process[1].code.as_deref(), Some("AccessDeniedException"));
    assert_eq!(
        (in_process[2].status, in_process[2].stored),
        (Some(503), Some(true))
    );
    // The first fires first: the record is stored, the answer lost.
    assert!(meter(&sim, 1).await.is_err());
    assert_eq!(sim.usage().len(), 1);

    // (rule, what the error names)
    let refused = [
        (
            json!({"operation": "MeterUsage", "fault": "Error", "nextCalls": 1}),
            "needs code",
        ),
        (
            json!({"operation": "MeterUsage", "fault": "Error", "code": "Nope", "nextCalls": 1}),
            "AccessDeniedException",
        ),
        (
            json!({"operation": "MeterUsage", "fault": "ServerError", "status": 503, "nextCalls": 1}),
            "needs stored",
        ),
        (
            json!({"operation": "MeterUsage", "fault": "ServerError", "status": 418, "stored": false, "nextCalls": 1}),
            "not 418",
        ),
        (
            json!({"operation": "MeterUsage", "fault": "StoreThenDrop", "code": "AccessDeniedException", "nextCalls": 1}),
            "only Error faults take code",
        ),
        (
            json!({"operation": "MeterUsage", "fault": "Throttling", "stored": true, "nextCalls": 1}),
            "only ServerError faults take stored",
        ),
    ];
    for (rule, names) in refused {
        let (status, body) = post(&sim, "/_marketgate/faults", &rule).await;
        assert_eq!(status, 400, "{rule}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{rule}: {message}");
    }
    assert_eq!(sim.faults().len(), 2, "no refused rule was added");

    // The call log's new members, as JSON.
    let calls = get(&sim, "/_marketgate/calls").await;
    let call = &calls[0];
    assert_eq!(call["fault"], "StoreThenDrop");
    assert_eq!(call["outcome"], "dropped");
    assert_eq!(call["stored"], true);
    assert!(call["clientToken"].is_string(), "{call}");
    assert_eq!(call["request"]["UsageQuantity"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn subscriptions_licenses_and_tasks_can_be_changed() {
    let sim = start_at(noon()).await;
    let subs = get(&sim, "/_marketgate/subscriptions").await;
    assert_eq!(subs[USAGE], "subscribed");
    let (status, subs) = post(
        &sim,
        "/_marketgate/subscriptions",
        &json!({"product": "usage", "status": "unsubscribed"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(subs[USAGE], "unsubscribed");
    assert!(
        meter(&sim, 1)
            .await
            .unwrap_err()
            .contains("CustomerNotEntitled")
    );
    let (status, _) = post(
        &sim,
        "/_marketgate/subscriptions",
        &json!({"product": "ghost", "status": "subscribed"}),
    )
    .await;
    assert_eq!(status, 400);

    let (status, licenses) = post(
        &sim,
        "/_marketgate/licenses",
        &json!({"license": "enterprise-contract", "status": "SUSPENDED"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(licenses["licenses"][0]["status"], "SUSPENDED");

    let (status, task) = post(
        &sim,
        "/_marketgate/tasks",
        &json!({"accessKeyId": "AKIDEARLY", "startedAt": 1_795_680_000}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(task["startedAt"], 1_795_680_000);
    let tasks = get(&sim, "/_marketgate/tasks").await;
    assert!(
        tasks
            .as_array()
            .expect("array")
            .iter()
            .any(|t| t["accessKeyId"] == "AKIDEARLY")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn licenses_show_checkouts_and_consumption() {
    use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    // Two seats held from the floating pool, one drawn for good.
    for (kind, seats, token) in [
        (CheckoutType::Provisional, "2", "inspect"),
        (CheckoutType::Perpetual, "1", "inspect-drawn"),
    ] {
        client
            .checkout_license()
            .product_sku(ENTERPRISE_SKU)
            .checkout_type(kind)
            .key_fingerprint(FINGERPRINT)
            .entitlements(
                EntitlementData::builder()
                    .name("Seats")
                    .unit(EntitlementDataUnit::Count)
                    .value(seats)
                    .build()
                    .expect("entitlement"),
            )
            .client_token(token)
            .send()
            .await
            .expect("checked out");
    }
    let view = get(&sim, "/_marketgate/licenses").await;
    let seats = &view["licenses"][0]["entitlements"][1];
    assert_eq!(seats["name"], "Seats");
    assert_eq!(seats["maxCount"], 5);
    assert_eq!(seats["drawn"], 1);
    assert_eq!(seats["held"], 2);
    assert_eq!(seats["inUse"], 3);
    assert_eq!(seats["available"], 2);
    let feature = &view["licenses"][0]["entitlements"][0];
    assert_eq!(feature["drawn"], 0);
    assert_eq!(feature["held"], 0);
    assert_eq!(feature["available"], Value::Null);
    let checkout = &view["checkouts"][0];
    assert_eq!(checkout["checkoutType"], "PROVISIONAL");
    assert_eq!(checkout["state"], "active");
    assert_eq!(checkout["expiration"], 1_795_698_000);
    assert_eq!(checkout["entitlements"][0]["count"], 2);
    assert_eq!(view["checkouts"][1]["checkoutType"], "PERPETUAL");
    sim.shutdown().await;
}

#[tokio::test]
async fn keys_publish_the_public_halves() {
    let sim = start_at(noon()).await;
    let keys = get(&sim, "/_marketgate/keys").await;
    let pro = keys["products"]
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["name"] == "pro")
        .expect("pro key")
        .clone();
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/pro.pub.pem"))
        .expect("key file");
    assert_eq!(pro["publicKeyPem"], file);
    assert_eq!(pro["version"], 1);
    assert_eq!(
        keys["licenseIssuer"]["keyFingerprint"],
        "aws:294406891311:AWS/Marketplace:issuer-fingerprint"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_endpoints_and_methods_are_refused() {
    let sim = start_at(noon()).await;
    let response = raw(&sim, "GET", "/_marketgate/nothing", &[], "").await;
    assert_eq!(response.status, 404);
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("usage")
    );
    let response = raw(&sim, "DELETE", "/_marketgate/usage", &[], "").await;
    assert_eq!(response.status, 405);
    let response = raw(&sim, "POST", "/_marketgate/clock", &[], "{not json").await;
    assert_eq!(response.status, 400);
    assert!(
        sim.calls().is_empty(),
        "inspection requests are not AWS calls"
    );
    sim.shutdown().await;
}

#[test]
fn the_blocking_simulator_runs_on_its_own_runtime() {
    let sim = Simulator::start_blocking(Config::example()).expect("starts");
    assert!(sim.endpoint().starts_with("http://127.0.0.1:"));
    let mut stream = std::net::TcpStream::connect(sim.local_addr()).expect("connect");
    write!(
        stream,
        "GET /_marketgate/usage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("[]"), "{response}");
    let addr = sim.local_addr();
    sim.shutdown();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed after shutdown"
    );
}
