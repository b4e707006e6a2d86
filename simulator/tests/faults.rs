//! Fault injection as the real SDKs experience it: throttling, rate limits,
//! server errors, latency and dropped connections, for the next N calls or
//! with a probability, and how the SDKs' retries react (counted in the call
//! log).
//!
//! Each test is a table of [`Step`]s (inject a fault, send a request and
//! expect an answer, clear the faults) that [`play`] runs in order. Every
//! request goes through [`call`], which sends a valid request for an
//! operation and reduces what the SDK returned to an [`Answer`]; an error is
//! named only when the SDK decoded it into that typed variant.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_licensemanager::operation::check_in_license::CheckInLicenseError;
use aws_sdk_licensemanager::operation::checkout_license::CheckoutLicenseError;
use aws_sdk_licensemanager::operation::extend_license_consumption::ExtendLicenseConsumptionError;
use aws_sdk_licensemanager::operation::get_license::GetLicenseError;
use aws_sdk_licensemanager::operation::list_received_licenses::ListReceivedLicensesError;
use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};
use aws_sdk_marketplacemetering::error::SdkError;
use aws_sdk_marketplacemetering::operation::meter_usage::MeterUsageError;
use aws_sdk_marketplacemetering::operation::register_usage::RegisterUsageError;
use common::{
    Client, ENTERPRISE_SKU, FINGERPRINT, Is, meter_at_noon, noon, register_pro, start_at,
};
use marketgate_simulator::{
    CheckoutState, Error, Fault, FaultKind, Operation as Op, Outcome, Simulator, Trigger,
};

/// A valid request for one operation.
#[derive(Debug, Clone, Copy)]
enum Request {
    /// `MeterUsage` of this quantity at noon.
    Meter(i32),
    /// `RegisterUsage` of the paid hourly product.
    Register,
    /// `CheckoutLicense` of the example license's feature, with a fresh
    /// `ClientToken`.
    Checkout,
    /// `ExtendLicenseConsumption` of the calling task's newest active
    /// checkout.
    Extend,
    /// `CheckInLicense` of the calling task's newest active checkout.
    CheckIn,
    /// `GetLicense` of the example license.
    GetLicense,
    /// `ListReceivedLicenses`.
    ListLicenses,
}

/// How a call ended, as the SDK saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Success,
    /// The HTTP status and the typed error's shape name.
    Error(u16, &'static str),
    /// No HTTP response at all: the connection was dropped.
    Dropped,
}

const THROTTLED: Answer = Answer::Error(400, "ThrottlingException");
const RATE_LIMITED: Answer = Answer::Error(400, "RateLimitExceededException");
const METERING_500: Answer = Answer::Error(500, "InternalServiceErrorException");
const LICENSE_MANAGER_500: Answer = Answer::Error(500, "ServerInternalException");

/// The SDK clients of one task, with retries off or on.
struct Clients {
    task: String,
    metering: aws_sdk_marketplacemetering::Client,
    license_manager: aws_sdk_licensemanager::Client,
}

impl Clients {
    async fn new(sim: &Simulator, retries: bool) -> Self {
        Self::with(
            sim,
            Client {
                retries,
                ..Client::default()
            },
        )
        .await
    }

    /// The clients of the task `access_key_id`, retries off.
    async fn of(sim: &Simulator, access_key_id: &str) -> Self {
        Self::with(sim, Client::key(access_key_id)).await
    }

    async fn with(sim: &Simulator, client: Client<'_>) -> Self {
        Self {
            task: client.access_key_id.to_owned(),
            metering: client.metering(sim).await,
            license_manager: client.license_manager(sim).await,
        }
    }
}

/// The `LicenseConsumptionToken` of the task's newest active checkout.
fn active_checkout(sim: &Simulator, task: &str) -> String {
    sim.licenses()
        .checkouts
        .into_iter()
        .rev()
        .find(|c| c.access_key_id == task && c.state == CheckoutState::Active)
        .map_or_else(
            || panic!("{task} holds no active checkout"),
            |c| c.license_consumption_token,
        )
}

/// A `ClientToken` no checkout has used.
fn fresh_client_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("t-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sends `request` with `clients`.
async fn call(sim: &Simulator, clients: &Clients, request: Request) -> Answer {
    match request {
        Request::Meter(quantity) => answer(
            meter_at_noon(&clients.metering, quantity).await,
            &[
                (THROTTLED, MeterUsageError::is_throttling_exception),
                (
                    METERING_500,
                    MeterUsageError::is_internal_service_error_exception,
                ),
            ],
        ),
        Request::Register => answer(
            register_pro(&clients.metering).await,
            &[
                (THROTTLED, RegisterUsageError::is_throttling_exception),
                (
                    METERING_500,
                    RegisterUsageError::is_internal_service_error_exception,
                ),
            ],
        ),
        Request::Checkout => {
            let feature = EntitlementData::builder()
                .name("ProEdition")
                .unit(EntitlementDataUnit::None)
                .build()
                .expect("entitlement");
            let result = clients
                .license_manager
                .checkout_license()
                .product_sku(ENTERPRISE_SKU)
                .checkout_type(CheckoutType::Provisional)
                .key_fingerprint(FINGERPRINT)
                .entitlements(feature)
                .client_token(fresh_client_token())
                .send()
                .await;
            license_manager_answer(
                result,
                CheckoutLicenseError::is_rate_limit_exceeded_exception,
                CheckoutLicenseError::is_server_internal_exception,
            )
        }
        Request::Extend => {
            let result = clients
                .license_manager
                .extend_license_consumption()
                .license_consumption_token(active_checkout(sim, &clients.task))
                .send()
                .await;
            license_manager_answer(
                result,
                ExtendLicenseConsumptionError::is_rate_limit_exceeded_exception,
                ExtendLicenseConsumptionError::is_server_internal_exception,
            )
        }
        Request::CheckIn => {
            let result = clients
                .license_manager
                .check_in_license()
                .license_consumption_token(active_checkout(sim, &clients.task))
                .send()
                .await;
            license_manager_answer(
                result,
                CheckInLicenseError::is_rate_limit_exceeded_exception,
                CheckInLicenseError::is_server_internal_exception,
            )
        }
        Request::GetLicense => {
            let arn = sim.licenses().licenses[0].arn.clone();
            let result = clients
                .license_manager
                .get_license()
                .license_arn(arn)
                .send()
                .await;
            license_manager_answer(
                result,
                GetLicenseError::is_rate_limit_exceeded_exception,
                GetLicenseError::is_server_internal_exception,
            )
        }
        Request::ListLicenses => {
            let result = clients
                .license_manager
                .list_received_licenses()
                .send()
                .await;
            license_manager_answer(
                result,
                ListReceivedLicensesError::is_rate_limit_exceeded_exception,
                ListReceivedLicensesError::is_server_internal_exception,
            )
        }
    }
}

/// [`answer`] for a License Manager operation, given its error's
/// `is_rate_limit_exceeded_exception` and `is_server_internal_exception`.
fn license_manager_answer<T, E: std::fmt::Debug>(
    result: Result<T, SdkError<E>>,
    rate_limited: Is<E>,
    internal: Is<E>,
) -> Answer {
    answer(
        result,
        &[
            (RATE_LIMITED, rate_limited),
            (LICENSE_MANAGER_500, internal),
        ],
    )
}

/// Reduces an SDK result to an [`Answer`]: a service error becomes the
/// first of `typed` whose `is_*` method recognizes it, with the status it
/// came with.
fn answer<T, E: std::fmt::Debug>(
    result: Result<T, SdkError<E>>,
    typed: &[(Answer, Is<E>)],
) -> Answer {
    let err = match result {
        Ok(_) => return Answer::Success,
        Err(SdkError::DispatchFailure(_) | SdkError::ResponseError(_)) => return Answer::Dropped,
        Err(err) => err,
    };
    let status = err.raw_response().map(|r| r.status().as_u16());
    let recognized = err.as_service_error().and_then(|service| {
        typed
            .iter()
            .find(|(_, is)| is(service))
            .map(|(answer, _)| *answer)
    });
    let Some(Answer::Error(expected_status, shape)) = recognized else {
        panic!("an error the test does not expect: {err:?}");
    };
    assert_eq!(status, Some(expected_status), "{shape}");
    Answer::Error(expected_status, shape)
}

/// One step of a fault scenario, played in order by [`play`].
#[derive(Debug, Clone)]
enum Step {
    /// Inject a fault.
    Inject(Op, Fault, Trigger),
    /// Send a request with retries off and expect an answer.
    Plain(Request, Answer),
    /// Send a request with the SDK's standard retries (3 attempts) and
    /// expect an answer.
    Retrying(Request, Answer),
    /// Remove every fault.
    ClearFaults,
}

use Step::{ClearFaults, Inject, Plain, Retrying};

async fn play(sim: &Simulator, steps: &[Step]) {
    let (plain, retrying) = (
        Clients::new(sim, false).await,
        Clients::new(sim, true).await,
    );
    for step in steps {
        let (clients, request, expected) = match step {
            Inject(operation, fault, trigger) => {
                sim.inject(*operation, fault.clone(), *trigger)
                    .expect("valid fault");
                continue;
            }
            ClearFaults => {
                sim.clear_faults();
                continue;
            }
            Plain(request, expected) => (&plain, *request, *expected),
            Retrying(request, expected) => (&retrying, *request, *expected),
        };
        assert_eq!(call(sim, clients, request).await, expected, "{step:?}");
    }
}

/// A call-log entry: how the call ended and which fault decided it.
type Logged = (Outcome, Option<FaultKind>);

const SUCCEEDED: Logged = (Outcome::Success, None);

fn failed(fault: FaultKind) -> Logged {
    (Outcome::Error, Some(fault))
}

fn logged(sim: &Simulator, operation: Op) -> Vec<Logged> {
    sim.calls()
        .into_iter()
        .filter(|c| c.operation == operation.name())
        .map(|c| (c.outcome, c.fault))
        .collect()
}

#[tokio::test]
async fn throttling_is_a_typed_throttling_exception_that_changes_nothing() {
    let sim = start_at(noon()).await;
    play(
        &sim,
        &[
            Inject(Op::MeterUsage, Fault::Throttling, Trigger::NextCalls(1)),
            Plain(Request::Meter(5), THROTTLED),
        ],
    )
    .await;
    assert!(sim.usage().is_empty(), "a throttled call records nothing");
    // Only the next call was throttled.
    play(&sim, &[Plain(Request::Meter(5), Answer::Success)]).await;
    assert_eq!(
        logged(&sim, Op::MeterUsage),
        [failed(FaultKind::Throttling), SUCCEEDED]
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
    play(
        &sim,
        &[
            Inject(Op::RegisterUsage, Fault::Throttling, Trigger::NextCalls(2)),
            // The third attempt succeeds.
            Retrying(Request::Register, Answer::Success),
        ],
    )
    .await;
    let throttled = failed(FaultKind::Throttling);
    assert_eq!(
        logged(&sim, Op::RegisterUsage),
        [throttled, throttled, SUCCEEDED]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_exceeded_is_typed_and_not_retried_by_the_sdk() {
    let sim = start_at(noon()).await;
    play(
        &sim,
        &[
            Inject(
                Op::CheckoutLicense,
                Fault::RateLimitExceeded,
                Trigger::NextCalls(1),
            ),
            Retrying(Request::Checkout, RATE_LIMITED),
        ],
    )
    .await;
    assert_eq!(
        logged(&sim, Op::CheckoutLicense),
        [failed(FaultKind::RateLimitExceeded)],
        "AWS SDKs do not retry RateLimitExceededException"
    );
    assert!(sim.licenses().checkouts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn internal_errors_are_500s_of_each_services_fault_shape() {
    let sim = start_at(noon()).await;
    let once = Trigger::NextCalls(1);
    play(
        &sim,
        &[
            Inject(Op::MeterUsage, Fault::InternalError, once),
            Inject(Op::GetLicense, Fault::InternalError, once),
            Plain(Request::Meter(1), METERING_500),
            Plain(Request::GetLicense, LICENSE_MANAGER_500),
            // The SDKs retry 500s.
            Inject(Op::GetLicense, Fault::InternalError, once),
            Retrying(Request::GetLicense, Answer::Success),
        ],
    )
    .await;
    let get = logged(&sim, Op::GetLicense);
    assert_eq!(get.len(), 3);
    assert_eq!(get[1], failed(FaultKind::InternalError));
    assert_eq!(get[2], SUCCEEDED);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let sim = start_at(noon()).await;
    let delay = Fault::Latency(Duration::from_millis(150));
    play(
        &sim,
        &[Inject(
            Op::ListReceivedLicenses,
            delay,
            Trigger::NextCalls(1),
        )],
    )
    .await;
    let started = Instant::now();
    let out = common::lm_client(&sim)
        .await
        .list_received_licenses()
        .send()
        .await
        .expect("slow but successful");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(out.licenses().len(), 1);
    // Fast again.
    play(&sim, &[Plain(Request::ListLicenses, Answer::Success)]).await;
    assert_eq!(
        logged(&sim, Op::ListReceivedLicenses),
        [(Outcome::Success, Some(FaultKind::Latency)), SUCCEEDED]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_fail_without_an_answer_and_are_retried() {
    let sim = start_at(noon()).await;
    let drop_next = Inject(Op::MeterUsage, Fault::DropConnection, Trigger::NextCalls(1));
    // No HTTP response at all.
    play(
        &sim,
        &[drop_next.clone(), Plain(Request::Meter(3), Answer::Dropped)],
    )
    .await;
    assert!(sim.usage().is_empty());
    // The SDK retries a dropped connection.
    play(
        &sim,
        &[drop_next, Retrying(Request::Meter(3), Answer::Success)],
    )
    .await;
    assert_eq!(sim.usage().len(), 1);
    let dropped = (Outcome::Dropped, Some(FaultKind::DropConnection));
    assert_eq!(logged(&sim, Op::MeterUsage), [dropped, dropped, SUCCEEDED]);
    sim.shutdown().await;
}

#[tokio::test]
async fn probability_faults_fire_at_their_rate() {
    let sim = start_at(noon()).await;
    // (probability, calls, how many may fail). Binomial(200, 0.5): outside
    // 60..=140 has a chance below 1e-8.
    let rates = [(1.0, 20, 20..=20), (0.0, 20, 0..=0), (0.5, 200, 60..=140)];
    let clients = Clients::new(&sim, false).await;
    for (probability, calls, expected) in rates {
        let trigger = Trigger::Probability(probability);
        play(
            &sim,
            &[
                ClearFaults,
                Inject(Op::GetLicense, Fault::InternalError, trigger),
            ],
        )
        .await;
        let mut failed: u64 = 0;
        for _ in 0..calls {
            if call(&sim, &clients, Request::GetLicense).await != Answer::Success {
                failed += 1;
            }
        }
        assert!(
            expected.contains(&failed),
            "p = {probability}: {failed} of {calls}"
        );
        assert_eq!(sim.faults()[0].fired, failed, "p = {probability}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_hit_only_their_operation_until_cleared() {
    let sim = start_at(noon()).await;
    let always = Trigger::Probability(1.0);
    play(
        &sim,
        &[
            Inject(Op::MeterUsage, Fault::Throttling, always),
            // Other operations are unaffected.
            Plain(Request::Register, Answer::Success),
            Plain(Request::Meter(1), THROTTLED),
            ClearFaults,
            Plain(Request::Meter(1), Answer::Success),
        ],
    )
    .await;
    sim.shutdown().await;
}

/// The License Manager calls a contract task makes, each with the
/// operation a fault names.
const LICENSE_CALLS: [(Op, Request); 4] = [
    (Op::CheckoutLicense, Request::Checkout),
    (Op::ExtendLicenseConsumption, Request::Extend),
    (Op::GetLicense, Request::GetLicense),
    (Op::CheckInLicense, Request::CheckIn),
];

#[tokio::test]
async fn a_fault_for_one_task_hits_only_that_tasks_calls() {
    const A: &str = "AKIDTASKA";
    const B: &str = "AKIDTASKB";
    let sim = start_at(noon()).await;
    let (a, b) = (Clients::of(&sim, A).await, Clients::of(&sim, B).await);
    // Each task holds a checkout to extend and check in.
    for clients in [&a, &b] {
        assert_eq!(
            call(&sim, clients, Request::Checkout).await,
            Answer::Success
        );
    }

    for (operation, _) in LICENSE_CALLS {
        sim.inject_for(
            A,
            operation,
            Fault::RateLimitExceeded,
            Trigger::NextCalls(1),
        )
        .expect("valid fault");
    }
    // B's calls go through and leave A's next call untouched.
    for (_, request) in LICENSE_CALLS {
        assert_eq!(
            call(&sim, &b, request).await,
            Answer::Success,
            "B {request:?}"
        );
    }
    let pending: Vec<_> = sim
        .faults()
        .iter()
        .map(|r| (r.task.clone(), r.next_calls, r.fired))
        .collect();
    assert_eq!(pending, vec![(Some(A.to_owned()), Some(1), 0); 4]);
    for (_, request) in LICENSE_CALLS {
        assert_eq!(call(&sim, &a, request).await, RATE_LIMITED, "A {request:?}");
    }
    assert!(sim.faults().is_empty(), "each fired once, on A");

    let ids: Vec<u64> = LICENSE_CALLS
        .iter()
        .map(|(operation, _)| {
            sim.inject_for(
                A,
                *operation,
                Fault::DropConnection,
                Trigger::Probability(1.0),
            )
            .expect("valid fault")
        })
        .collect();
    for (_, request) in LICENSE_CALLS {
        assert_eq!(
            call(&sim, &a, request).await,
            Answer::Dropped,
            "A {request:?}"
        );
        assert_eq!(
            call(&sim, &b, request).await,
            Answer::Success,
            "B {request:?}"
        );
    }
    for id in &ids {
        assert!(sim.remove_fault(*id), "fault {id}");
    }
    assert!(!sim.remove_fault(ids[0]), "already removed");
    assert!(sim.faults().is_empty());
    for (_, request) in LICENSE_CALLS {
        assert_eq!(
            call(&sim, &a, request).await,
            Answer::Success,
            "A {request:?} after remove_fault"
        );
    }

    // The call log says whose calls the faults decided.
    let faulted = |task: &str| -> Vec<FaultKind> {
        sim.calls()
            .into_iter()
            .filter(|c| c.access_key_id.as_deref() == Some(task))
            .filter_map(|c| c.fault)
            .collect()
    };
    let mut expected = vec![FaultKind::RateLimitExceeded; 4];
    expected.extend([FaultKind::DropConnection; 4]);
    assert_eq!(faulted(A), expected);
    assert!(faulted(B).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_task_fault_with_an_empty_task_is_refused() {
    let sim = start_at(noon()).await;
    let err = sim
        .inject_for(
            "",
            Op::GetLicense,
            Fault::InternalError,
            Trigger::NextCalls(1),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Fault(_)), "{err}");
    assert!(sim.faults().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_an_operation_cannot_answer_are_refused() {
    let sim = start_at(noon()).await;
    // (operation, fault, trigger, what the message names)
    let cases = [
        (
            Op::CheckoutLicense,
            Fault::Throttling,
            Trigger::NextCalls(1),
            "RateLimitExceeded",
        ),
        (
            Op::MeterUsage,
            Fault::RateLimitExceeded,
            Trigger::NextCalls(1),
            "ThrottlingException",
        ),
        (
            Op::MeterUsage,
            Fault::InternalError,
            Trigger::Probability(2.0),
            "",
        ),
        // Unknown names are refused with the names the operation allows.
        (
            Op::MeterUsage,
            Fault::Error("NoSuchException".to_owned()),
            Trigger::NextCalls(1),
            "AccessDeniedException",
        ),
        (
            Op::MeterUsage,
            Fault::Error("ValidationException".to_owned()),
            Trigger::NextCalls(1),
            "DuplicateRequestException",
        ),
        // Declared for RegisterUsage only.
        (
            Op::MeterUsage,
            Fault::Error("DisabledApiException".to_owned()),
            Trigger::NextCalls(1),
            "MissingAuthenticationTokenException",
        ),
        (
            Op::GetLicense,
            Fault::Error("DuplicateRequestException".to_owned()),
            Trigger::NextCalls(1),
            "RateLimitExceededException",
        ),
        (
            Op::MeterUsage,
            Fault::ServerError {
                status: 501,
                stored: false,
            },
            Trigger::NextCalls(1),
            "500, 502, 503 or 504",
        ),
        (
            Op::MeterUsage,
            Fault::ServerError {
                status: 200,
                stored: true,
            },
            Trigger::NextCalls(1),
            "not 200",
        ),
    ];
    for (operation, fault, trigger, names) in cases {
        let err = sim.inject(operation, fault, trigger).unwrap_err();
        assert!(matches!(err, Error::Fault(_)), "{err}");
        assert!(err.to_string().contains(names), "{err}");
    }
    assert!(sim.faults().is_empty());
    // What RegisterUsage's model declares, it can answer.
    let disabled = Fault::Error("DisabledApiException".to_owned());
    sim.inject(Op::RegisterUsage, disabled, Trigger::NextCalls(1))
        .expect("declared for RegisterUsage");
    sim.shutdown().await;
}
