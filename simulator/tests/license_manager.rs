//! AWS License Manager through the real `aws-sdk-licensemanager` client:
//! checkouts, seats, the 60-minute provisional hold, extension, check-in,
//! `GetLicense`, `ListReceivedLicenses`, expired and suspended licenses.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_licensemanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_licensemanager::operation::checkout_license::{
    CheckoutLicenseError, CheckoutLicenseOutput,
};
use aws_sdk_licensemanager::types::{
    CheckoutType, EntitlementData, EntitlementDataUnit, EntitlementUnit, Filter,
    LicenseStatus as SdkLicenseStatus,
};
use common::{Client, ENTERPRISE_SKU, FINGERPRINT, noon, start_at, start_with};
use marketgate_simulator::{
    CheckoutState, Config, EntitlementConfig, EntitlementUnit as Unit, LicenseConfig, LicenseStatus,
};

const MINUTE: Duration = Duration::from_mins(1);

type LicenseManager = aws_sdk_licensemanager::Client;

fn entitlement(name: &str, unit: EntitlementDataUnit, value: Option<&str>) -> EntitlementData {
    EntitlementData::builder()
        .name(name)
        .unit(unit)
        .set_value(value.map(str::to_owned))
        .build()
        .expect("entitlement")
}

fn seat() -> EntitlementData {
    entitlement("Seats", EntitlementDataUnit::Count, Some("1"))
}

fn feature() -> EntitlementData {
    entitlement("ProEdition", EntitlementDataUnit::None, None)
}

async fn checkout(
    client: &LicenseManager,
    kind: CheckoutType,
    entitlements: Vec<EntitlementData>,
    token: &str,
) -> Result<CheckoutLicenseOutput, CheckoutLicenseError> {
    client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(kind)
        .key_fingerprint(FINGERPRINT)
        .set_entitlements(Some(entitlements))
        .client_token(token)
        .send()
        .await
        .map_err(SdkError::into_service_error)
}

async fn checkout_seat(
    client: &LicenseManager,
    token: &str,
) -> Result<String, CheckoutLicenseError> {
    checkout(client, CheckoutType::Provisional, vec![seat()], token)
        .await
        .map(|out| out.license_consumption_token().expect("token").to_owned())
}

fn seats_in_use(sim: &marketgate_simulator::Simulator) -> u64 {
    sim.licenses().licenses[0]
        .entitlements
        .iter()
        .find(|e| e.name == "Seats")
        .expect("seats")
        .in_use
}

fn license(name: &str, sku: &str, status: LicenseStatus, begin: SystemTime) -> LicenseConfig {
    LicenseConfig {
        name: name.to_owned(),
        sku: sku.to_owned(),
        status,
        begin,
        end: None,
        arn: None,
        license_name: None,
        product_name: None,
        home_region: None,
        version: None,
        beneficiary: None,
        key_fingerprint: None,
        entitlements: vec![EntitlementConfig {
            name: "Seats".to_owned(),
            unit: Unit::Count,
            value: None,
            max_count: Some(1),
            overage: false,
            allow_check_in: true,
        }],
    }
}

#[tokio::test]
async fn a_provisional_checkout_returns_what_the_model_declares() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let out = client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(FINGERPRINT)
        .entitlements(feature())
        .entitlements(seat())
        .entitlements(entitlement("NotBought", EntitlementDataUnit::None, None))
        .client_token("c-1")
        .node_id("node-7")
        .send()
        .await
        .expect("checked out");
    assert_eq!(out.checkout_type(), Some(&CheckoutType::Provisional));
    let allowed: Vec<(&str, Option<&str>, &EntitlementDataUnit)> = out
        .entitlements_allowed()
        .iter()
        .map(|e| (e.name(), e.value(), e.unit()))
        .collect();
    assert_eq!(
        allowed,
        [
            ("ProEdition", Some("Enabled"), &EntitlementDataUnit::None),
            ("Seats", Some("1"), &EntitlementDataUnit::Count),
        ]
    );
    assert_eq!(out.issued_at(), Some("2026-11-26T12:00:00Z"));
    assert_eq!(out.expiration(), Some("2026-11-26T13:00:00Z"));
    assert_eq!(out.node_id(), Some("node-7"));
    let arn = out.license_arn().expect("arn");
    assert_eq!(arn, sim.licenses().licenses[0].arn);
    let token = out.license_consumption_token().expect("token");

    let signed = out.signed_token().expect("signed token");
    assert!(
        signed.len() >= 4096,
        "model: SignedToken min 4096, got {}",
        signed.len()
    );
    let (header, payload, signature, input) = common::decode_jws(signed);
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["kid"], FINGERPRINT);
    assert!(common::verify_ps256(
        sim.license_issuer_public_key_pem(),
        &input,
        &signature
    ));
    let issuer_file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/keys/license-issuer.pub.pem"
    ))
    .expect("issuer key file");
    assert_eq!(issuer_file, sim.license_issuer_public_key_pem());
    assert_eq!(payload["licenseArn"], arn);
    assert_eq!(payload["licenseConsumptionToken"], token);
    assert_eq!(payload["nodeId"], "node-7");
    assert_eq!(payload["issuedAt"], "2026-11-26T12:00:00Z");
    assert_eq!(payload["expiration"], "2026-11-26T13:00:00Z");
    assert_eq!(payload["entitlementsAllowed"][1]["name"], "Seats");
    assert_eq!(payload["checkoutMetadata"]["checkoutType"], "PROVISIONAL");
    assert_eq!(seats_in_use(&sim), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn seats_run_out_at_max_count() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    for i in 0..3 {
        checkout_seat(&client, &format!("seat-{i}"))
            .await
            .expect("a free seat");
    }
    let seats = |n: &str| entitlement("Seats", EntitlementDataUnit::Count, Some(n));
    let err = checkout(
        &client,
        CheckoutType::Provisional,
        vec![seats("3")],
        "three",
    )
    .await
    .unwrap_err();
    assert!(
        err.is_no_entitlements_allowed_exception(),
        "3 in use + 3 > 5: {err:?}"
    );
    checkout(&client, CheckoutType::Provisional, vec![seats("2")], "two")
        .await
        .expect("the last two seats");
    let err = checkout_seat(&client, "seat-6").await.unwrap_err();
    assert!(err.is_no_entitlements_allowed_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("5 of 5 in use"));
    // A feature consumes no seat and is still allowed; the exhausted seat is
    // left out.
    let out = checkout(
        &client,
        CheckoutType::Provisional,
        vec![feature(), seat()],
        "mixed",
    )
    .await
    .expect("feature still allowed");
    assert_eq!(out.entitlements_allowed().len(), 1);
    assert_eq!(out.entitlements_allowed()[0].name(), "ProEdition");
    let view = sim.licenses();
    assert_eq!(view.licenses[0].entitlements[1].available, Some(0));
    sim.shutdown().await;
}

#[tokio::test]
async fn entitlements_must_match_name_and_unit() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    // Live AWS: a Unit None checkout against a counted entitlement is refused.
    let err = checkout(
        &client,
        CheckoutType::Provisional,
        vec![entitlement("Seats", EntitlementDataUnit::None, None)],
        "wrong-unit",
    )
    .await
    .unwrap_err();
    assert!(err.is_no_entitlements_allowed_exception(), "{err:?}");
    let err = checkout(
        &client,
        CheckoutType::Provisional,
        vec![entitlement("Gold", EntitlementDataUnit::None, None)],
        "unknown-name",
    )
    .await
    .unwrap_err();
    assert!(err.is_no_entitlements_allowed_exception(), "{err:?}");
    let err = checkout(
        &client,
        CheckoutType::Provisional,
        vec![entitlement(
            "Seats",
            EntitlementDataUnit::Count,
            Some("two"),
        )],
        "bad-count",
    )
    .await
    .unwrap_err();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    let out = checkout(
        &client,
        CheckoutType::Provisional,
        vec![entitlement("Seats", EntitlementDataUnit::Count, Some("3"))],
        "three",
    )
    .await
    .expect("three seats");
    assert_eq!(out.entitlements_allowed()[0].value(), Some("3"));
    assert_eq!(seats_in_use(&sim), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_sku_or_fingerprint_is_not_found_and_bad_input_is_invalid() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let err = client
        .checkout_license()
        .product_sku("no-such-sku")
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(FINGERPRINT)
        .entitlements(feature())
        .client_token("t")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint("aws:111122223333:seller:issuer-fingerprint")
        .entitlements(feature())
        .client_token("t")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(FINGERPRINT)
        .entitlements(feature())
        .client_token("   ")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_validation_exception(),
        "ClientToken must match \\S+: {err:?}"
    );
    // The SDK does not fill ClientToken for CheckoutLicense; it is required.
    let err = client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(FINGERPRINT)
        .entitlements(feature())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    let err = client
        .checkout_license()
        .product_sku(ENTERPRISE_SKU)
        .checkout_type(CheckoutType::from("BORROWED"))
        .key_fingerprint(FINGERPRINT)
        .entitlements(feature())
        .client_token("t")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    assert!(sim.licenses().checkouts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn check_in_returns_the_seat() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(
            checkout_seat(&client, &format!("s{i}"))
                .await
                .expect("seat"),
        );
    }
    checkout_seat(&client, "s5").await.unwrap_err();
    client
        .check_in_license()
        .license_consumption_token(&tokens[0])
        .send()
        .await
        .expect("checked in");
    assert_eq!(seats_in_use(&sim), 4);
    checkout_seat(&client, "s6")
        .await
        .expect("the returned seat");
    let err = client
        .check_in_license()
        .license_consumption_token(&tokens[0])
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let checkouts = sim.licenses().checkouts;
    assert_eq!(checkouts[0].state, CheckoutState::CheckedIn);
    assert_eq!(checkouts[0].ended_at, Some(1_795_694_400));
    sim.shutdown().await;
}

#[tokio::test]
async fn provisional_checkouts_return_automatically_after_60_minutes() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let token = checkout_seat(&client, "a").await.expect("seat");
    sim.clock().advance(59 * MINUTE);
    assert_eq!(seats_in_use(&sim), 1);
    sim.clock().advance(MINUTE);
    assert_eq!(seats_in_use(&sim), 0, "checked in at 60 minutes");
    let checkouts = sim.licenses().checkouts;
    assert_eq!(checkouts[0].state, CheckoutState::Expired);
    assert_eq!(checkouts[0].ended_at, Some(1_795_698_000));
    let err = client
        .extend_license_consumption()
        .license_consumption_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = client
        .check_in_license()
        .license_consumption_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn extending_keeps_the_seat_for_another_60_minutes() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let token = checkout_seat(&client, "a").await.expect("seat");
    sim.clock().advance(50 * MINUTE);
    let dry = client
        .extend_license_consumption()
        .license_consumption_token(&token)
        .dry_run(true)
        .send()
        .await
        .expect("dry run");
    assert_eq!(
        dry.expiration(),
        Some("2026-11-26T13:00:00Z"),
        "DryRun changes nothing"
    );
    let out = client
        .extend_license_consumption()
        .license_consumption_token(&token)
        .send()
        .await
        .expect("extended");
    assert_eq!(out.license_consumption_token(), Some(token.as_str()));
    assert_eq!(out.expiration(), Some("2026-11-26T13:50:00Z"));
    sim.clock().advance(59 * MINUTE); // 13:49
    assert_eq!(seats_in_use(&sim), 1);
    sim.clock().advance(MINUTE); // 13:50
    assert_eq!(seats_in_use(&sim), 0);
    assert_eq!(sim.licenses().checkouts[0].extensions, 1);
    let err = client
        .extend_license_consumption()
        .license_consumption_token("never-issued")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_retried_checkout_with_the_same_client_token_takes_one_seat() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let first = checkout_seat(&client, "same").await.expect("first");
    let again = checkout_seat(&client, "same").await.expect("retry");
    assert_eq!(first, again);
    assert_eq!(seats_in_use(&sim), 1);
    let err = checkout(&client, CheckoutType::Provisional, vec![feature()], "same")
        .await
        .unwrap_err();
    assert!(err.is_validation_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn perpetual_checkouts_draw_down_for_good() {
    let mut config = Config::example();
    config.licenses[0].entitlements.push(EntitlementConfig {
        name: "Credits".to_owned(),
        unit: Unit::Count,
        value: None,
        max_count: Some(10),
        overage: false,
        allow_check_in: false,
    });
    let sim = start_with(config, noon()).await;
    let client = common::lm_client(&sim).await;
    let credits = |n: &str| entitlement("Credits", EntitlementDataUnit::Count, Some(n));
    let out = checkout(
        &client,
        CheckoutType::Perpetual,
        vec![credits("6")],
        "draw-1",
    )
    .await
    .expect("six credits");
    assert_eq!(out.checkout_type(), Some(&CheckoutType::Perpetual));
    sim.clock().advance(Duration::from_hours(48));
    let err = checkout(
        &client,
        CheckoutType::Perpetual,
        vec![credits("5")],
        "draw-2",
    )
    .await
    .unwrap_err();
    assert!(
        err.is_no_entitlements_allowed_exception(),
        "6 of 10 stay drawn after two days: {err:?}"
    );
    checkout(
        &client,
        CheckoutType::Perpetual,
        vec![credits("4")],
        "draw-3",
    )
    .await
    .expect("the last four");
    let err = client
        .check_in_license()
        .license_consumption_token(out.license_consumption_token().expect("token"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conflict_exception(), "AllowCheckIn false: {err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn overage_allows_more_than_max_count() {
    let mut config = Config::example();
    config.licenses[0].entitlements[1].max_count = Some(1);
    config.licenses[0].entitlements[1].overage = true;
    let sim = start_with(config, noon()).await;
    let client = common::lm_client(&sim).await;
    for i in 0..3 {
        checkout_seat(&client, &format!("o{i}"))
            .await
            .expect("overage allowed");
    }
    assert_eq!(seats_in_use(&sim), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn get_license_shows_the_license_as_configured() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    let out = client
        .get_license()
        .license_arn(&arn)
        .send()
        .await
        .expect("license");
    let license = out.license().expect("license");
    assert_eq!(license.license_arn(), Some(arn.as_str()));
    assert_eq!(license.product_sku(), Some(ENTERPRISE_SKU));
    assert_eq!(license.product_name(), Some("enterprise"));
    assert_eq!(license.status(), Some(&SdkLicenseStatus::Available));
    assert_eq!(license.beneficiary(), Some("111122223333"));
    assert_eq!(license.home_region(), Some("us-east-1"));
    assert_eq!(license.version(), Some("1"));
    let issuer = license.issuer().expect("issuer");
    assert_eq!(issuer.key_fingerprint(), Some(FINGERPRINT));
    assert_eq!(issuer.name(), Some("AWS/Marketplace"));
    let validity = license.validity().expect("validity");
    assert_eq!(validity.begin(), "2026-01-01T00:00:00Z");
    assert_eq!(validity.end(), Some("2036-01-01T00:00:00Z"));
    let entitlements = license.entitlements();
    assert_eq!(entitlements[0].name(), "ProEdition");
    assert_eq!(entitlements[0].unit(), &EntitlementUnit::None);
    assert_eq!(entitlements[0].value(), Some("Enabled"));
    assert_eq!(entitlements[1].unit(), &EntitlementUnit::Count);
    assert_eq!(entitlements[1].max_count(), Some(5));
    assert_eq!(entitlements[1].overage(), Some(false));
    assert_eq!(entitlements[1].allow_check_in(), Some(true));
    let provisional = license
        .consumption_configuration()
        .and_then(|c| c.provisional_configuration())
        .expect("provisional configuration");
    assert_eq!(provisional.max_time_to_live_in_minutes(), 60);

    let err = client
        .get_license()
        .license_arn(
            "arn:aws:license-manager::294406891311:license:l-00000000000000000000000000000000",
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    let err = client
        .get_license()
        .license_arn("not-an-arn")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    let err = client
        .get_license()
        .license_arn(&arn)
        .version("9")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    sim.shutdown().await;
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The example license plus a second available and a suspended one, all
/// with the example SKU.
async fn three_licenses() -> marketgate_simulator::Simulator {
    let mut config = Config::example();
    config.licenses.push(license(
        "second",
        ENTERPRISE_SKU,
        LicenseStatus::Available,
        noon(),
    ));
    config.licenses.push(license(
        "third",
        ENTERPRISE_SKU,
        LicenseStatus::Suspended,
        noon(),
    ));
    start_with(config, noon()).await
}

#[tokio::test]
async fn list_received_licenses_pages() {
    let sim = three_licenses().await;
    let client = common::lm_client(&sim).await;
    let all = client.list_received_licenses().send().await.expect("list");
    assert_eq!(all.licenses().len(), 3);
    assert!(all.next_token().is_none());
    let received = all.licenses()[0].received_metadata().expect("metadata");
    assert!(
        received
            .allowed_operations()
            .iter()
            .any(|o| o.as_str() == "CheckoutLicense")
    );

    let first = client
        .list_received_licenses()
        .max_results(2)
        .send()
        .await
        .expect("page 1");
    assert_eq!(first.licenses().len(), 2);
    let token = first.next_token().expect("more pages");
    let second = client
        .list_received_licenses()
        .max_results(2)
        .next_token(token)
        .send()
        .await
        .expect("page 2");
    assert_eq!(second.licenses().len(), 1);
    assert!(second.next_token().is_none());
    let mut arns: Vec<&str> = first
        .licenses()
        .iter()
        .chain(second.licenses())
        .filter_map(|l| l.license_arn())
        .collect();
    arns.sort_unstable();
    arns.dedup();
    assert_eq!(arns.len(), 3, "pages do not overlap");
    let err = client
        .list_received_licenses()
        .max_results(101)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    let err = client
        .list_received_licenses()
        .next_token("forged")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn list_received_licenses_filters() {
    let sim = three_licenses().await;
    let client = common::lm_client(&sim).await;
    let suspended = client
        .list_received_licenses()
        .filters(filter("Status", "SUSPENDED"))
        .send()
        .await
        .expect("filtered");
    assert_eq!(suspended.licenses().len(), 1);
    assert_eq!(suspended.licenses()[0].license_name(), Some("third"));
    let all = client
        .list_received_licenses()
        .filters(filter("ProductSKU", ENTERPRISE_SKU))
        .filters(filter("Fingerprint", FINGERPRINT))
        .filters(filter("IssuerName", "AWS/Marketplace"))
        .filters(filter("Beneficiary", "111122223333"))
        .send()
        .await
        .expect("filtered");
    assert_eq!(all.licenses().len(), 3);
    let none = client
        .list_received_licenses()
        .filters(filter("ProductSKU", "other"))
        .send()
        .await
        .expect("filtered");
    assert!(none.licenses().is_empty());
    let arn = sim.licenses().licenses[1].arn.clone();
    let by_arn = client
        .list_received_licenses()
        .license_arns(&arn)
        .send()
        .await
        .expect("by arn");
    assert_eq!(by_arn.licenses().len(), 1);
    assert_eq!(by_arn.licenses()[0].license_arn(), Some(arn.as_str()));

    let err = client
        .list_received_licenses()
        .filters(filter("productsku", ENTERPRISE_SKU))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_invalid_parameter_value_exception(),
        "names are case-sensitive: {err:?}"
    );
    let two_values = Filter::builder()
        .name("Status")
        .values("AVAILABLE")
        .values("EXPIRED")
        .build();
    let err = client
        .list_received_licenses()
        .filters(two_values)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_invalid_parameter_value_exception(),
        "one value per filter: {err:?}"
    );
    let err = client
        .list_received_licenses()
        .license_arns("not-an-arn")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_newest_usable_license_is_checked_out() {
    let mut config = Config::example();
    let mut newer = license("newer", ENTERPRISE_SKU, LicenseStatus::Available, noon());
    newer.entitlements[0].max_count = Some(1);
    config.licenses.push(newer);
    let sim = start_with(config, noon()).await;
    let client = common::lm_client(&sim).await;
    let out = checkout(&client, CheckoutType::Provisional, vec![seat()], "n1")
        .await
        .expect("seat");
    let newer_arn = &sim.licenses().licenses[1].arn;
    assert_eq!(out.license_arn(), Some(newer_arn.as_str()));
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_licenses_allow_nothing() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    // The example license ends 2036-01-01: move the clock past it.
    sim.clock()
        .set(SystemTime::UNIX_EPOCH + Duration::from_secs(2_082_758_400 + 1));
    let err = checkout_seat(&client, "late").await.unwrap_err();
    assert!(err.is_no_entitlements_allowed_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("EXPIRED"));
    let license = client
        .get_license()
        .license_arn(&arn)
        .send()
        .await
        .expect("still readable");
    assert_eq!(
        license.license().and_then(|l| l.status()),
        Some(&SdkLicenseStatus::Expired)
    );
    let expired = client
        .list_received_licenses()
        .filters(filter("Status", "EXPIRED"))
        .send()
        .await
        .expect("listed");
    assert_eq!(expired.licenses().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn suspended_and_not_yet_valid_licenses_allow_nothing() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    checkout_seat(&client, "before").await.expect("available");
    sim.set_license_status("enterprise-contract", LicenseStatus::Suspended)
        .expect("known license");
    let err = checkout_seat(&client, "after").await.unwrap_err();
    assert!(err.is_no_entitlements_allowed_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("SUSPENDED"));
    assert_eq!(sim.licenses().licenses[0].status, LicenseStatus::Suspended);
    sim.set_license_status("enterprise-contract", LicenseStatus::Available)
        .expect("known license");
    checkout_seat(&client, "again")
        .await
        .expect("available again");

    // Before the validity starts.
    sim.clock()
        .set(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 - 1));
    let err = checkout_seat(&client, "early").await.unwrap_err();
    assert!(err.is_no_entitlements_allowed_exception(), "{err:?}");
    assert!(
        sim.set_license_status("ghost", LicenseStatus::Available)
            .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn checkouts_are_logged_per_task() {
    let sim = start_at(noon()).await;
    let pod = Client::key("AKIDCONTRACTPOD").license_manager(&sim).await;
    checkout(&pod, CheckoutType::Provisional, vec![feature()], "f")
        .await
        .expect("feature");
    let checkouts = sim.licenses().checkouts;
    assert_eq!(checkouts.len(), 1);
    assert_eq!(checkouts[0].access_key_id, "AKIDCONTRACTPOD");
    assert_eq!(checkouts[0].client_token, "f");
    assert_eq!(checkouts[0].entitlements[0].count, 0);
    assert_eq!(seats_in_use(&sim), 0, "a feature takes no seat");
    sim.shutdown().await;
}
