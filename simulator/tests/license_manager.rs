//! AWS License Manager through the real `aws-sdk-licensemanager` client:
//! checkouts, seats, the 60-minute provisional hold, extension, check-in,
//! `GetLicense`, `ListReceivedLicenses`, expired and suspended licenses.
//!
//! Each operation has one helper that sends it and answers the typed service
//! error; refusals are checked with [`common::refused`], from tables of
//! cases where a test tries several.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_licensemanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_licensemanager::operation::check_in_license::{
    CheckInLicenseError, CheckInLicenseOutput,
};
use aws_sdk_licensemanager::operation::checkout_license::{
    CheckoutLicenseError, CheckoutLicenseOutput,
};
use aws_sdk_licensemanager::operation::extend_license_consumption::{
    ExtendLicenseConsumptionError, ExtendLicenseConsumptionOutput,
};
use aws_sdk_licensemanager::operation::get_license::{GetLicenseError, GetLicenseOutput};
use aws_sdk_licensemanager::operation::list_received_licenses::{
    ListReceivedLicensesError, ListReceivedLicensesOutput,
};
use aws_sdk_licensemanager::types::{
    CheckoutType, EntitlementData, EntitlementDataUnit, EntitlementUnit, Filter,
    LicenseStatus as SdkLicenseStatus,
};
use common::{Client, ENTERPRISE_SKU, FINGERPRINT, Is, noon, refused, start_at, start_with};
use marketgate_simulator::{
    CheckoutState, Config, EntitlementConfig, EntitlementUnit as Unit, LicenseConfig,
    LicenseStatus, Simulator,
};

const MINUTE: Duration = Duration::from_mins(1);

/// An ARN no license has.
const UNKNOWN_ARN: &str =
    "arn:aws:license-manager::294406891311:license:l-00000000000000000000000000000000";

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

fn seats(n: &str) -> EntitlementData {
    entitlement("Seats", EntitlementDataUnit::Count, Some(n))
}

fn feature() -> EntitlementData {
    entitlement("ProEdition", EntitlementDataUnit::None, None)
}

/// A `CheckoutLicense` request. `Default` is a provisional checkout of one
/// seat of the example license with no `ClientToken` and no `NodeId`.
#[derive(Debug, Clone)]
struct Checkout<'a> {
    sku: &'a str,
    kind: CheckoutType,
    fingerprint: &'a str,
    entitlements: Vec<EntitlementData>,
    token: Option<&'a str>,
    node: Option<&'a str>,
}

impl Default for Checkout<'_> {
    fn default() -> Self {
        Self {
            sku: ENTERPRISE_SKU,
            kind: CheckoutType::Provisional,
            fingerprint: FINGERPRINT,
            entitlements: vec![seat()],
            token: None,
            node: None,
        }
    }
}

impl Checkout<'_> {
    async fn send(
        self,
        client: &LicenseManager,
    ) -> Result<CheckoutLicenseOutput, CheckoutLicenseError> {
        client
            .checkout_license()
            .product_sku(self.sku)
            .checkout_type(self.kind)
            .key_fingerprint(self.fingerprint)
            .set_entitlements(Some(self.entitlements))
            .set_client_token(self.token.map(str::to_owned))
            .set_node_id(self.node.map(str::to_owned))
            .send()
            .await
            .map_err(SdkError::into_service_error)
    }
}

async fn checkout(
    client: &LicenseManager,
    kind: CheckoutType,
    entitlements: Vec<EntitlementData>,
    token: &str,
) -> Result<CheckoutLicenseOutput, CheckoutLicenseError> {
    Checkout {
        kind,
        entitlements,
        token: Some(token),
        ..Checkout::default()
    }
    .send(client)
    .await
}

async fn checkout_seat(
    client: &LicenseManager,
    token: &str,
) -> Result<String, CheckoutLicenseError> {
    checkout(client, CheckoutType::Provisional, vec![seat()], token)
        .await
        .map(|out| out.license_consumption_token().expect("token").to_owned())
}

async fn extend(
    client: &LicenseManager,
    token: &str,
    dry_run: bool,
) -> Result<ExtendLicenseConsumptionOutput, ExtendLicenseConsumptionError> {
    client
        .extend_license_consumption()
        .license_consumption_token(token)
        .set_dry_run(dry_run.then_some(true))
        .send()
        .await
        .map_err(SdkError::into_service_error)
}

async fn check_in(
    client: &LicenseManager,
    token: &str,
) -> Result<CheckInLicenseOutput, CheckInLicenseError> {
    client
        .check_in_license()
        .license_consumption_token(token)
        .send()
        .await
        .map_err(SdkError::into_service_error)
}

async fn get(
    client: &LicenseManager,
    arn: &str,
    version: Option<&str>,
) -> Result<GetLicenseOutput, GetLicenseError> {
    client
        .get_license()
        .license_arn(arn)
        .set_version(version.map(str::to_owned))
        .send()
        .await
        .map_err(SdkError::into_service_error)
}

/// A `ListReceivedLicenses` request; empty members are not sent.
#[derive(Debug, Clone, Default)]
struct List<'a> {
    arns: Vec<&'a str>,
    filters: Vec<Filter>,
    max_results: Option<i32>,
    next_token: Option<&'a str>,
}

impl List<'_> {
    fn filtered(filters: &[(&str, &str)]) -> Self {
        Self {
            filters: filters
                .iter()
                .map(|(name, value)| filter(name, value))
                .collect(),
            ..Self::default()
        }
    }

    async fn send(
        self,
        client: &LicenseManager,
    ) -> Result<ListReceivedLicensesOutput, ListReceivedLicensesError> {
        let arns: Vec<String> = self.arns.iter().map(|a| (*a).to_owned()).collect();
        client
            .list_received_licenses()
            .set_license_arns((!arns.is_empty()).then_some(arns))
            .set_filters((!self.filters.is_empty()).then_some(self.filters))
            .set_max_results(self.max_results)
            .set_next_token(self.next_token.map(str::to_owned))
            .send()
            .await
            .map_err(SdkError::into_service_error)
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn seats_in_use(sim: &Simulator) -> u64 {
    in_use(sim, "Seats")
}

/// How much of the first license's entitlement `name` active checkouts hold.
fn in_use(sim: &Simulator, name: &str) -> u64 {
    sim.licenses().licenses[0]
        .entitlements
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entitlement {name}"))
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
    let out = Checkout {
        entitlements: vec![
            feature(),
            seat(),
            entitlement("NotBought", EntitlementDataUnit::None, None),
        ],
        token: Some("c-1"),
        node: Some("node-7"),
        ..Checkout::default()
    }
    .send(&client)
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
    let claims = [
        ("/licenseArn", arn),
        ("/licenseConsumptionToken", token),
        ("/nodeId", "node-7"),
        ("/issuedAt", "2026-11-26T12:00:00Z"),
        ("/expiration", "2026-11-26T13:00:00Z"),
        ("/entitlementsAllowed/1/name", "Seats"),
        ("/checkoutMetadata/checkoutType", "PROVISIONAL"),
    ];
    for (claim, expected) in claims {
        assert_eq!(payload.pointer(claim), Some(&expected.into()), "{claim}");
    }
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
    refused(
        checkout(
            &client,
            CheckoutType::Provisional,
            vec![seats("3")],
            "three",
        )
        .await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "3 in use + 3 > 5",
    );
    checkout(&client, CheckoutType::Provisional, vec![seats("2")], "two")
        .await
        .expect("the last two seats");
    let err = refused(
        checkout_seat(&client, "seat-6").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "all five in use",
    );
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
    let cases: [(&str, EntitlementData, Is<CheckoutLicenseError>); 3] = [
        // Live AWS: a Unit None checkout against a counted entitlement is
        // refused.
        (
            "wrong-unit",
            entitlement("Seats", EntitlementDataUnit::None, None),
            CheckoutLicenseError::is_no_entitlements_allowed_exception,
        ),
        (
            "unknown-name",
            entitlement("Gold", EntitlementDataUnit::None, None),
            CheckoutLicenseError::is_no_entitlements_allowed_exception,
        ),
        (
            "bad-count",
            seats("two"),
            CheckoutLicenseError::is_invalid_parameter_value_exception,
        ),
    ];
    for (token, requested, is) in cases {
        let result = checkout(&client, CheckoutType::Provisional, vec![requested], token).await;
        refused(result, is, token);
    }
    let out = checkout(
        &client,
        CheckoutType::Provisional,
        vec![seats("3")],
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
    let valid = Checkout {
        entitlements: vec![feature()],
        token: Some("t"),
        ..Checkout::default()
    };
    let cases: [(&str, Checkout, Is<CheckoutLicenseError>); 5] = [
        (
            "unknown SKU",
            Checkout {
                sku: "no-such-sku",
                ..valid.clone()
            },
            CheckoutLicenseError::is_resource_not_found_exception,
        ),
        (
            "another issuer's fingerprint",
            Checkout {
                fingerprint: "aws:111122223333:seller:issuer-fingerprint",
                ..valid.clone()
            },
            CheckoutLicenseError::is_resource_not_found_exception,
        ),
        (
            "ClientToken must match \\S+",
            Checkout {
                token: Some("   "),
                ..valid.clone()
            },
            CheckoutLicenseError::is_validation_exception,
        ),
        // The SDK does not fill ClientToken for CheckoutLicense; it is
        // required.
        (
            "no ClientToken",
            Checkout {
                token: None,
                ..valid.clone()
            },
            CheckoutLicenseError::is_validation_exception,
        ),
        (
            "unknown CheckoutType",
            Checkout {
                kind: CheckoutType::from("BORROWED"),
                ..valid
            },
            CheckoutLicenseError::is_validation_exception,
        ),
    ];
    for (case, request, is) in cases {
        refused(request.send(&client).await, is, case);
    }
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
    check_in(&client, &tokens[0]).await.expect("checked in");
    assert_eq!(seats_in_use(&sim), 4);
    checkout_seat(&client, "s6")
        .await
        .expect("the returned seat");
    refused(
        check_in(&client, &tokens[0]).await,
        CheckInLicenseError::is_resource_not_found_exception,
        "checked in twice",
    );
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
    refused(
        extend(&client, &token, false).await,
        ExtendLicenseConsumptionError::is_resource_not_found_exception,
        "extend after expiry",
    );
    refused(
        check_in(&client, &token).await,
        CheckInLicenseError::is_resource_not_found_exception,
        "check in after expiry",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn extending_keeps_the_seat_for_another_60_minutes() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let token = checkout_seat(&client, "a").await.expect("seat");
    sim.clock().advance(50 * MINUTE);
    let dry = extend(&client, &token, true).await.expect("dry run");
    assert_eq!(
        dry.expiration(),
        Some("2026-11-26T13:00:00Z"),
        "DryRun changes nothing"
    );
    let out = extend(&client, &token, false).await.expect("extended");
    assert_eq!(out.license_consumption_token(), Some(token.as_str()));
    assert_eq!(out.expiration(), Some("2026-11-26T13:50:00Z"));
    sim.clock().advance(59 * MINUTE); // 13:49
    assert_eq!(seats_in_use(&sim), 1);
    sim.clock().advance(MINUTE); // 13:50
    assert_eq!(seats_in_use(&sim), 0);
    assert_eq!(sim.licenses().checkouts[0].extensions, 1);
    refused(
        extend(&client, "never-issued", false).await,
        ExtendLicenseConsumptionError::is_resource_not_found_exception,
        "a token never issued",
    );
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
    refused(
        checkout(&client, CheckoutType::Provisional, vec![feature()], "same").await,
        CheckoutLicenseError::is_validation_exception,
        "same ClientToken, other entitlements",
    );
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
    let credits = |n: &str| vec![entitlement("Credits", EntitlementDataUnit::Count, Some(n))];
    let out = checkout(&client, CheckoutType::Perpetual, credits("6"), "draw-1")
        .await
        .expect("six credits");
    assert_eq!(out.checkout_type(), Some(&CheckoutType::Perpetual));
    assert_eq!(out.expiration(), None);
    sim.clock().advance(Duration::from_hours(48));
    refused(
        checkout(&client, CheckoutType::Perpetual, credits("5"), "draw-2").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "6 of 10 stay drawn after two days",
    );
    checkout(&client, CheckoutType::Perpetual, credits("4"), "draw-3")
        .await
        .expect("the last four");
    let token = out.license_consumption_token().expect("token");
    refused(
        check_in(&client, token).await,
        CheckInLicenseError::is_conflict_exception,
        "AllowCheckIn false",
    );
    sim.shutdown().await;
}

/// The example config plus two drawdown entitlements that cannot be checked
/// in: `Credits` (10, no overage) and `Bursts` (2, overage allowed).
async fn drawdown() -> Simulator {
    let mut config = Config::example();
    let entitlement = |name: &str, max_count: i64, overage: bool| EntitlementConfig {
        name: name.to_owned(),
        unit: Unit::Count,
        value: None,
        max_count: Some(max_count),
        overage,
        allow_check_in: false,
    };
    config.licenses[0].entitlements.extend([
        entitlement("Credits", 10, false),
        entitlement("Bursts", 2, true),
    ]);
    start_with(config, noon()).await
}

/// A drawdown checkout of `n` units of `name`.
async fn draw(
    client: &LicenseManager,
    name: &str,
    n: &str,
    token: &str,
) -> Result<CheckoutLicenseOutput, CheckoutLicenseError> {
    let units = vec![entitlement(name, EntitlementDataUnit::Count, Some(n))];
    checkout(client, CheckoutType::Perpetual, units, token).await
}

#[tokio::test]
async fn a_perpetual_checkout_has_no_expiration_and_cannot_be_extended() {
    let sim = drawdown().await;
    let client = common::lm_client(&sim).await;
    let out = draw(&client, "Credits", "4", "d-1")
        .await
        .expect("four credits");
    assert_eq!(out.issued_at(), Some("2026-11-26T12:00:00Z"));
    assert_eq!(out.expiration(), None, "nothing expires");
    let (_, payload, _, _) = common::decode_jws(out.signed_token().expect("signed token"));
    assert!(payload.get("expiration").is_none(), "{payload}");
    assert_eq!(
        payload.pointer("/checkoutMetadata/checkoutType"),
        Some(&"PERPETUAL".into())
    );
    assert_eq!(sim.licenses().checkouts[0].expiration, None);
    let view = serde_json::to_value(sim.licenses()).expect("serializes");
    assert_eq!(view["checkouts"][0]["expiration"], serde_json::Value::Null);

    let token = out.license_consumption_token().expect("token");
    for dry_run in [true, false] {
        let err = refused(
            extend(&client, token, dry_run).await,
            ExtendLicenseConsumptionError::is_validation_exception,
            &format!("extend a PERPETUAL consumption, DryRun {dry_run}"),
        );
        let message = err.message().unwrap_or_default();
        assert!(message.contains("is a PERPETUAL consumption"), "{message}");
    }
    assert_eq!(sim.licenses().checkouts[0].extensions, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn perpetual_units_stay_drawn_and_run_out_at_max_count_unless_overage() {
    let sim = drawdown().await;
    let client = common::lm_client(&sim).await;
    draw(&client, "Credits", "4", "d-1")
        .await
        .expect("four credits");
    // A year on, the four are still drawn.
    sim.clock().advance(Duration::from_hours(24 * 365));
    let drawn = &sim.licenses().checkouts[0];
    assert_eq!((drawn.state, drawn.ended_at), (CheckoutState::Active, None));
    assert_eq!(in_use(&sim, "Credits"), 4);
    let err = refused(
        draw(&client, "Credits", "7", "d-2").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "4 of 10 drawn, 7 more",
    );
    assert!(
        err.message().unwrap_or_default().contains("4 of 10 in use"),
        "{err:?}"
    );
    draw(&client, "Credits", "6", "d-3")
        .await
        .expect("the last six");
    refused(
        draw(&client, "Credits", "1", "d-4").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "exhausted",
    );
    // Overage lets a drawdown go past MaxCount.
    for token in ["b-1", "b-2"] {
        draw(&client, "Bursts", "2", token).await.expect("overage");
    }
    assert_eq!(in_use(&sim, "Bursts"), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_suspended_license_stops_extensions_but_consumptions_run_their_time() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let token = checkout_seat(&client, "held").await.expect("seat");
    sim.clock().advance(30 * MINUTE); // 12:30
    sim.set_license_status("enterprise-contract", LicenseStatus::Suspended)
        .expect("known license");
    let arn = sim.licenses().licenses[0].arn.clone();
    for dry_run in [true, false] {
        let err = refused(
            extend(&client, &token, dry_run).await,
            ExtendLicenseConsumptionError::is_validation_exception,
            &format!("suspended, DryRun {dry_run}"),
        );
        assert_eq!(
            err.message(),
            Some(
                format!("License {arn} is SUSPENDED: its consumptions can no longer be extended.")
                    .as_str()
            )
        );
    }
    // The consumption still holds its seat until its own expiration.
    let held = &sim.licenses().checkouts[0];
    assert_eq!(
        (held.state, held.extensions, held.expiration),
        (CheckoutState::Active, 0, Some(1_795_698_000))
    );
    assert_eq!(seats_in_use(&sim), 1);

    // Available again, the same consumption can be extended again.
    sim.set_license_status("enterprise-contract", LicenseStatus::Available)
        .expect("known license");
    let out = extend(&client, &token, false).await.expect("extended");
    assert_eq!(out.expiration(), Some("2026-11-26T13:30:00Z"));

    sim.set_license_status("enterprise-contract", LicenseStatus::Suspended)
        .expect("known license");
    sim.clock().advance(59 * MINUTE); // 13:29
    assert_eq!(seats_in_use(&sim), 1);
    sim.clock().advance(MINUTE); // 13:30
    assert_eq!(seats_in_use(&sim), 0, "expired as last extended");
    let ended = &sim.licenses().checkouts[0];
    assert_eq!(
        (ended.state, ended.ended_at),
        (CheckoutState::Expired, Some(1_795_699_800))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_license_past_its_validity_stops_extensions() {
    // The example license's validity ends 2036-01-01T00:00:00Z.
    let end = SystemTime::UNIX_EPOCH + Duration::from_hours(578_544);
    let sim = start_at(end - 10 * MINUTE).await;
    let client = common::lm_client(&sim).await;
    let token = checkout_seat(&client, "last").await.expect("still valid");
    let out = extend(&client, &token, false).await.expect("still valid");
    assert_eq!(out.expiration(), Some("2036-01-01T00:50:00Z"));
    sim.clock().advance(10 * MINUTE);
    for dry_run in [true, false] {
        let err = refused(
            extend(&client, &token, dry_run).await,
            ExtendLicenseConsumptionError::is_validation_exception,
            &format!("past the validity, DryRun {dry_run}"),
        );
        let message = err.message().unwrap_or_default();
        assert!(
            message.contains("is EXPIRED: its consumptions"),
            "{message}"
        );
    }
    sim.clock().advance(49 * MINUTE);
    assert_eq!(seats_in_use(&sim), 1, "held until its own expiration");
    sim.clock().advance(MINUTE);
    assert_eq!(seats_in_use(&sim), 0);
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
    let out = get(&client, &arn, None).await.expect("license");
    let license = out.license().expect("license");
    let issuer = license.issuer().expect("issuer");
    let validity = license.validity().expect("validity");
    let members = [
        ("LicenseArn", license.license_arn(), arn.as_str()),
        ("ProductSKU", license.product_sku(), ENTERPRISE_SKU),
        ("ProductName", license.product_name(), "enterprise"),
        ("Beneficiary", license.beneficiary(), "111122223333"),
        ("HomeRegion", license.home_region(), "us-east-1"),
        ("Version", license.version(), "1"),
        (
            "Issuer.KeyFingerprint",
            issuer.key_fingerprint(),
            FINGERPRINT,
        ),
        ("Issuer.Name", issuer.name(), "AWS/Marketplace"),
        (
            "Validity.Begin",
            Some(validity.begin()),
            "2026-01-01T00:00:00Z",
        ),
        ("Validity.End", validity.end(), "2036-01-01T00:00:00Z"),
    ];
    for (member, actual, expected) in members {
        assert_eq!(actual, Some(expected), "{member}");
    }
    assert_eq!(license.status(), Some(&SdkLicenseStatus::Available));
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

    let cases: [(&str, Option<&str>, Is<GetLicenseError>); 3] = [
        (
            UNKNOWN_ARN,
            None,
            GetLicenseError::is_invalid_parameter_value_exception,
        ),
        ("not-an-arn", None, GetLicenseError::is_validation_exception),
        (
            &arn,
            Some("9"),
            GetLicenseError::is_invalid_parameter_value_exception,
        ),
    ];
    for (arn, version, is) in cases {
        refused(get(&client, arn, version).await, is, arn);
    }
    sim.shutdown().await;
}

/// The example license plus a second available and a suspended one, all
/// with the example SKU.
async fn three_licenses() -> Simulator {
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
    let all = List::default().send(&client).await.expect("list");
    assert_eq!(all.licenses().len(), 3);
    assert!(all.next_token().is_none());
    let received = all.licenses()[0].received_metadata().expect("metadata");
    assert!(
        received
            .allowed_operations()
            .iter()
            .any(|o| o.as_str() == "CheckoutLicense")
    );

    let page = List {
        max_results: Some(2),
        ..List::default()
    };
    let first = page.clone().send(&client).await.expect("page 1");
    assert_eq!(first.licenses().len(), 2);
    let token = first.next_token().expect("more pages");
    let second = List {
        next_token: Some(token),
        ..page
    }
    .send(&client)
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
    let cases: [(&str, List, Is<ListReceivedLicensesError>); 2] = [
        (
            "MaxResults above 100",
            List {
                max_results: Some(101),
                ..List::default()
            },
            ListReceivedLicensesError::is_validation_exception,
        ),
        (
            "a forged NextToken",
            List {
                next_token: Some("forged"),
                ..List::default()
            },
            ListReceivedLicensesError::is_invalid_parameter_value_exception,
        ),
    ];
    for (case, request, is) in cases {
        refused(request.send(&client).await, is, case);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn list_received_licenses_filters() {
    let sim = three_licenses().await;
    let client = common::lm_client(&sim).await;
    let suspended = List::filtered(&[("Status", "SUSPENDED")])
        .send(&client)
        .await
        .expect("filtered");
    assert_eq!(suspended.licenses().len(), 1);
    assert_eq!(suspended.licenses()[0].license_name(), Some("third"));
    let counts = [
        (
            List::filtered(&[
                ("ProductSKU", ENTERPRISE_SKU),
                ("Fingerprint", FINGERPRINT),
                ("IssuerName", "AWS/Marketplace"),
                ("Beneficiary", "111122223333"),
            ]),
            3,
        ),
        (List::filtered(&[("ProductSKU", "other")]), 0),
    ];
    for (request, count) in counts {
        let out = request.clone().send(&client).await.expect("filtered");
        assert_eq!(out.licenses().len(), count, "{request:?}");
    }
    let arn = sim.licenses().licenses[1].arn.clone();
    let by_arn = List {
        arns: vec![&arn],
        ..List::default()
    }
    .send(&client)
    .await
    .expect("by arn");
    assert_eq!(by_arn.licenses().len(), 1);
    assert_eq!(by_arn.licenses()[0].license_arn(), Some(arn.as_str()));

    let two_values = Filter::builder()
        .name("Status")
        .values("AVAILABLE")
        .values("EXPIRED")
        .build();
    let cases: [(&str, List, Is<ListReceivedLicensesError>); 3] = [
        (
            "names are case-sensitive",
            List::filtered(&[("productsku", ENTERPRISE_SKU)]),
            ListReceivedLicensesError::is_invalid_parameter_value_exception,
        ),
        (
            "one value per filter",
            List {
                filters: vec![two_values],
                ..List::default()
            },
            ListReceivedLicensesError::is_invalid_parameter_value_exception,
        ),
        (
            "LicenseArns must be ARNs",
            List {
                arns: vec!["not-an-arn"],
                ..List::default()
            },
            ListReceivedLicensesError::is_validation_exception,
        ),
    ];
    for (case, request, is) in cases {
        refused(request.send(&client).await, is, case);
    }
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
    let err = refused(
        checkout_seat(&client, "late").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "after the validity",
    );
    assert!(err.message().unwrap_or_default().contains("EXPIRED"));
    let license = get(&client, &arn, None).await.expect("still readable");
    assert_eq!(
        license.license().and_then(|l| l.status()),
        Some(&SdkLicenseStatus::Expired)
    );
    let expired = List::filtered(&[("Status", "EXPIRED")])
        .send(&client)
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
    let err = refused(
        checkout_seat(&client, "after").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "suspended",
    );
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
    refused(
        checkout_seat(&client, "early").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "before the validity",
    );
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

// The two configurable license models as the inspection view shows them:
// drawdown (`PERPETUAL`, units `drawn` for good) and floating
// (`PROVISIONAL`, units `held` from a shared pool until checked in or
// expired).

/// How an entitlement's use reads in the inspection view: `(drawn, held,
/// in_use, available)`.
fn usage(sim: &Simulator, name: &str) -> (u64, u64, u64, Option<u64>) {
    let view = sim.licenses();
    let e = view.licenses[0]
        .entitlements
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entitlement {name}"))
        .clone();
    (e.drawn, e.held, e.in_use, e.available)
}

#[tokio::test]
async fn drawn_units_stay_drawn_and_the_balance_runs_out() {
    let sim = drawdown().await;
    let client = common::lm_client(&sim).await;
    assert_eq!(usage(&sim, "Credits"), (0, 0, 0, Some(10)));
    let out = draw(&client, "Credits", "4", "d-1")
        .await
        .expect("four credits");
    let token = out.license_consumption_token().expect("token");
    assert_eq!(usage(&sim, "Credits"), (4, 0, 4, Some(6)));
    // The inspection API's JSON spelling.
    let view = serde_json::to_value(sim.licenses()).expect("serializes");
    let credits = &view["licenses"][0]["entitlements"][2];
    assert_eq!(credits["name"], "Credits");
    let fields = [("drawn", 4), ("held", 0), ("inUse", 4), ("available", 6)];
    for (field, expected) in fields {
        assert_eq!(credits[field], expected, "{field}: {credits}");
    }

    // Days later the four are still drawn, and they cannot be given back.
    sim.clock().advance(Duration::from_hours(24 * 3));
    assert_eq!(usage(&sim, "Credits"), (4, 0, 4, Some(6)));
    assert_eq!(sim.licenses().checkouts[0].state, CheckoutState::Active);
    refused(
        check_in(&client, token).await,
        CheckInLicenseError::is_conflict_exception,
        "check in a drawdown",
    );
    refused(
        extend(&client, token, false).await,
        ExtendLicenseConsumptionError::is_validation_exception,
        "extend a drawdown",
    );
    assert_eq!(usage(&sim, "Credits"), (4, 0, 4, Some(6)));

    // More than the balance is refused whole: nothing is drawn.
    let err = refused(
        draw(&client, "Credits", "7", "d-2").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "7 of a balance of 6",
    );
    assert!(
        err.message().unwrap_or_default().contains("4 of 10 in use"),
        "{err:?}"
    );
    assert_eq!(usage(&sim, "Credits"), (4, 0, 4, Some(6)));
    assert_eq!(sim.licenses().checkouts.len(), 1);

    draw(&client, "Credits", "6", "d-3")
        .await
        .expect("the whole balance");
    assert_eq!(usage(&sim, "Credits"), (10, 0, 10, Some(0)));
    sim.clock().advance(Duration::from_hours(2));
    refused(
        draw(&client, "Credits", "1", "d-4").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "balance exhausted",
    );
    assert_eq!(usage(&sim, "Credits"), (10, 0, 10, Some(0)));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_retried_perpetual_checkout_draws_once() {
    let sim = drawdown().await;
    let client = common::lm_client(&sim).await;
    let first = draw(&client, "Credits", "3", "same")
        .await
        .expect("three credits");
    let token = first.license_consumption_token().expect("token");
    let again = draw(&client, "Credits", "3", "same").await.expect("retry");
    assert_eq!(again.license_consumption_token(), Some(token));
    assert_eq!(again.signed_token(), first.signed_token());
    // A retry long after the first answer still draws nothing more.
    sim.clock().advance(Duration::from_hours(2));
    let later = draw(&client, "Credits", "3", "same")
        .await
        .expect("retry two hours later");
    assert_eq!(later.license_consumption_token(), Some(token));
    assert_eq!(later.issued_at(), Some("2026-11-26T12:00:00Z"));
    assert_eq!(usage(&sim, "Credits"), (3, 0, 3, Some(7)));
    assert_eq!(sim.licenses().checkouts.len(), 1);
    refused(
        draw(&client, "Credits", "4", "same").await,
        CheckoutLicenseError::is_validation_exception,
        "same ClientToken, another count",
    );
    assert_eq!(usage(&sim, "Credits"), (3, 0, 3, Some(7)));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_perpetual_checkout_is_not_checked_in_even_where_check_in_is_allowed() {
    // `Seats` allows check-in, but what a PERPETUAL checkout takes is drawn
    // for good.
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let out = checkout(&client, CheckoutType::Perpetual, vec![seats("2")], "p")
        .await
        .expect("two seats for good");
    let token = out.license_consumption_token().expect("token");
    let err = refused(
        check_in(&client, token).await,
        CheckInLicenseError::is_conflict_exception,
        "check in a PERPETUAL consumption",
    );
    let message = err.message().unwrap_or_default();
    assert!(message.contains("is a PERPETUAL consumption"), "{message}");
    checkout_seat(&client, "floating").await.expect("a seat");
    assert_eq!(usage(&sim, "Seats"), (2, 1, 3, Some(2)));
    sim.clock().advance(Duration::from_hours(24));
    assert_eq!(usage(&sim, "Seats"), (2, 0, 2, Some(3)));
    assert_eq!(sim.licenses().checkouts[0].state, CheckoutState::Active);
    sim.shutdown().await;
}

#[tokio::test]
async fn floating_units_are_one_pool_shared_by_tasks() {
    let sim = start_at(noon()).await;
    let task_a = Client::key("AKIDFLOATINGTASKA").license_manager(&sim).await;
    let task_b = Client::key("AKIDFLOATINGTASKB").license_manager(&sim).await;
    let provisional = |n: &str| vec![seats(n)];
    let a = checkout(&task_a, CheckoutType::Provisional, provisional("3"), "a-1")
        .await
        .expect("three seats for task A");
    let kept = checkout(&task_b, CheckoutType::Provisional, provisional("2"), "b-1")
        .await
        .expect("the last two for task B");
    assert_eq!(usage(&sim, "Seats"), (0, 5, 5, Some(0)));
    let owners: Vec<String> = sim
        .licenses()
        .checkouts
        .iter()
        .map(|c| c.access_key_id.clone())
        .collect();
    assert_eq!(owners, ["AKIDFLOATINGTASKA", "AKIDFLOATINGTASKB"]);
    refused(
        checkout(&task_b, CheckoutType::Provisional, provisional("1"), "b-2").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "the pool is empty, whoever asks",
    );

    // A check-in frees its units at once, for any task.
    let a_token = a.license_consumption_token().expect("token");
    check_in(&task_a, a_token).await.expect("checked in");
    assert_eq!(usage(&sim, "Seats"), (0, 2, 2, Some(3)));
    let lapsed = checkout(&task_b, CheckoutType::Provisional, provisional("3"), "b-3")
        .await
        .expect("task A's seats");
    assert_eq!(usage(&sim, "Seats"), (0, 5, 5, Some(0)));

    // Task B extends its first checkout but not its second: at 60 minutes
    // the second returns to the pool, the first stays out.
    sim.clock().advance(50 * MINUTE);
    let kept_token = kept.license_consumption_token().expect("token");
    extend(&task_b, kept_token, false).await.expect("extended");
    sim.clock().advance(9 * MINUTE); // 12:59
    assert_eq!(usage(&sim, "Seats"), (0, 5, 5, Some(0)));
    sim.clock().advance(MINUTE); // 13:00
    assert_eq!(usage(&sim, "Seats"), (0, 2, 2, Some(3)));
    let states: Vec<(String, CheckoutState)> = sim
        .licenses()
        .checkouts
        .iter()
        .map(|c| (c.license_consumption_token.clone(), c.state))
        .collect();
    let lapsed_token = lapsed.license_consumption_token().expect("token");
    assert_eq!(
        states,
        [
            (a_token.to_owned(), CheckoutState::CheckedIn),
            (kept_token.to_owned(), CheckoutState::Active),
            (lapsed_token.to_owned(), CheckoutState::Expired),
        ]
    );
    checkout(&task_a, CheckoutType::Provisional, provisional("3"), "a-2")
        .await
        .expect("the expired seats are free again");
    refused(
        checkout(&task_a, CheckoutType::Provisional, provisional("1"), "a-3").await,
        CheckoutLicenseError::is_no_entitlements_allowed_exception,
        "the extended seats are still out",
    );
    sim.clock().advance(49 * MINUTE); // 13:49
    assert_eq!(usage(&sim, "Seats"), (0, 5, 5, Some(0)));
    sim.clock().advance(MINUTE); // 13:50: the extended one expires too
    assert_eq!(usage(&sim, "Seats"), (0, 3, 3, Some(2)));
    sim.shutdown().await;
}

/// An entitlement as `GetLicense` answers it: `(Name, Unit, Value,
/// MaxCount, Overage, AllowCheckIn)`.
type LicenseEntitlement = (
    String,
    EntitlementUnit,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<bool>,
);

async fn license_entitlements(client: &LicenseManager, arn: &str) -> Vec<LicenseEntitlement> {
    let out = get(client, arn, None).await.expect("license");
    out.license()
        .expect("license")
        .entitlements()
        .iter()
        .map(|e| {
            (
                e.name().to_owned(),
                e.unit().clone(),
                e.value().map(str::to_owned),
                e.max_count(),
                e.overage(),
                e.allow_check_in(),
            )
        })
        .collect()
}

fn counted(
    name: &str,
    unit: Unit,
    max_count: i64,
    overage: bool,
    allow_check_in: bool,
) -> EntitlementConfig {
    EntitlementConfig {
        name: name.to_owned(),
        unit,
        value: None,
        max_count: Some(max_count),
        overage,
        allow_check_in,
    }
}

fn tier(name: &str, value: &str, allow_check_in: bool) -> EntitlementConfig {
    EntitlementConfig {
        name: name.to_owned(),
        unit: Unit::None,
        value: Some(value.to_owned()),
        max_count: None,
        overage: false,
        allow_check_in,
    }
}

/// What `GetLicense` must answer for a configured entitlement: every member
/// as configured (`Overage` and `AllowCheckIn` always present).
fn as_configured(e: &EntitlementConfig) -> LicenseEntitlement {
    (
        e.name.clone(),
        EntitlementUnit::from(e.unit.as_str()),
        e.value.clone(),
        e.max_count,
        Some(e.overage),
        Some(e.allow_check_in),
    )
}

#[tokio::test]
async fn get_license_answers_entitlements_as_configured_and_as_changed() {
    let configured = vec![
        tier("ProEdition", "Enabled", false),
        counted("Seats", Unit::Count, 5, false, true),
        counted("Credits", Unit::Count, 10, false, false),
        counted("Data", Unit::Gigabytes, 500, true, false),
    ];
    let mut config = Config::example();
    config.licenses[0].entitlements.clone_from(&configured);
    let sim = start_with(config, noon()).await;
    let client = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    let answered = license_entitlements(&client, &arn).await;
    assert_eq!(answered[3].1, EntitlementUnit::Gigabytes);
    assert_eq!(
        answered,
        configured.iter().map(as_configured).collect::<Vec<_>>()
    );

    // The seller changes the contract: seats that can no longer be checked
    // in, more credits with overage, the data dimension gone, a new tier.
    draw(&client, "Credits", "4", "before")
        .await
        .expect("drawn");
    let changed = vec![
        counted("Seats", Unit::Count, 8, true, false),
        counted("Credits", Unit::Count, 20, true, true),
        tier("Tier", "Gold", true),
    ];
    sim.set_license_entitlements("enterprise-contract", changed.clone())
        .expect("known license");
    assert_eq!(
        license_entitlements(&client, &arn).await,
        changed.iter().map(as_configured).collect::<Vec<_>>()
    );
    // The inspection view shows the same, with what was drawn before the
    // change still drawn.
    let view = sim.licenses();
    let credits = &view.licenses[0].entitlements[1];
    assert_eq!(
        (credits.max_count, credits.overage, credits.allow_check_in),
        (Some(20), true, true)
    );
    assert_eq!(usage(&sim, "Credits"), (4, 0, 4, Some(16)));
    sim.shutdown().await;
}

#[tokio::test]
async fn new_entitlements_follow_the_config_rules() {
    let sim = start_at(noon()).await;
    let client = common::lm_client(&sim).await;
    let arn = sim.licenses().licenses[0].arn.clone();
    let before = license_entitlements(&client, &arn).await;
    let mut no_max_count = counted("Seats", Unit::Count, 5, false, true);
    no_max_count.max_count = None;
    let cases = [
        ("no entitlements", vec![], "add at least one"),
        (
            "a counted unit without MaxCount",
            vec![no_max_count],
            "needs max-count",
        ),
        (
            "a name twice",
            vec![
                counted("Seats", Unit::Count, 5, false, true),
                counted("Seats", Unit::Count, 6, false, true),
            ],
            "listed twice",
        ),
    ];
    for (case, entitlements, says) in cases {
        let err = sim
            .set_license_entitlements("enterprise-contract", entitlements)
            .expect_err(case);
        assert!(
            matches!(err, marketgate_simulator::Error::Config(_)) && err.to_string().contains(says),
            "{case}: {err}"
        );
    }
    assert_eq!(
        license_entitlements(&client, &arn).await,
        before,
        "unchanged"
    );
    sim.shutdown().await;
}
