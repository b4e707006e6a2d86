//! `MeterUsage`: custom-metered usage, one record per dimension per hour per
//! task.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::allocations::parse_allocations;
use super::members::{self, decimal_quantity, whole_quantity};
use super::quantity::Quantity;
use super::state::MeterRequest;
use crate::config::Subscription;
use crate::constraints;
use crate::operation::{Failure, MeterUsageError, fail};
use crate::protocol::{Call, Input, Output};
use crate::state::State;
use crate::timestamp;

/// How far back `MeterUsage` accepts timestamps: "up to six hours in the
/// past" (the `Timestamp` member's documentation).
const MAX_AGE: Duration = Duration::from_hours(6);

/// `MeterUsage`.
pub(crate) fn meter_usage(call: &Call<'_>, state: &mut State) -> Output<MeterUsageError> {
    use MeterUsageError as E;
    let parsed = parse_meter_usage(call.input)?;
    let request = &parsed.request;
    let catalog = call.catalog;

    if call.caller.region != catalog.region {
        return Err(fail(
            E::InvalidEndpointRegionException,
            format!(
                "The endpoint's Region ({}) is not the Region of the ECS task or EKS pod ({}). \
                 The Region of the Metering Service endpoint and the AWS Region of the resource must match.",
                call.caller.region, catalog.region
            ),
        ));
    }
    let product = catalog
        .product_by_code(&request.product_code)
        .ok_or_else(|| {
            fail(
                E::InvalidProductCodeException,
                format!(
                    "Product code {} does not match a published product.",
                    request.product_code
                ),
            )
        })?;
    if state.subscription(&product.code) != Subscription::Subscribed {
        return Err(fail(
            E::CustomerNotEntitledException,
            format!(
                "The customer does not have a valid subscription for product {}.",
                product.code
            ),
        ));
    }
    if !product.dimensions.contains(&request.dimension) {
        return Err(fail(
            E::InvalidUsageDimensionException,
            format!(
                "Usage dimension {:?} is not one of the dimensions of product {}: {:?}.",
                request.dimension, product.code, product.dimensions
            ),
        ));
    }

    let hour = timestamp::hour_start(parsed.timestamp);
    let task_start = state.task(&call.caller.access_key_id, call.now).started_at;
    check_window(parsed.timestamp, hour, call.now, task_start)?;

    if parsed.dry_run {
        // DryRun "checks whether you have the permissions required" (the
        // model's `DryRun` member): it passes every check above and records
        // nothing. The model documents a DryRunOperation error that it does
        // not declare; AWS's sample container
        // (github.com/aws-samples/aws-marketplace-metered-container-product)
        // treats any error from its start-up DryRun as fatal, so success is a
        // plain 200.
        return Ok(json!({}));
    }

    let records = state.metering.records.len();
    let id = state
        .metering
        .record(
            &call.caller.access_key_id,
            request,
            parsed.client_token,
            hour,
            call.now,
        )?
        .to_owned();
    if state.metering.records.len() != records {
        state.revision += 1;
    }
    Ok(json!({"MeteringRecordId": id}))
}

/// AWS: "up to six hours in the past", and "not before the start of the
/// software usage". The task-start rule compares hours, so usage from the
/// task's first, partial hour (reported with that hour's start as timestamp)
/// is accepted. Usage for an hour that has not begun yet is refused too.
fn check_window(
    timestamp: SystemTime,
    hour: i64,
    now: SystemTime,
    task_start: SystemTime,
) -> Result<(), Failure<MeterUsageError>> {
    let out_of_bounds = |m: String| Failure::new(MeterUsageError::TimestampOutOfBoundsException, m);
    let at = timestamp::iso8601(timestamp);
    if now.duration_since(timestamp).is_ok_and(|age| age > MAX_AGE) {
        return Err(out_of_bounds(format!(
            "Timestamp {at} is more than 6 hours before the current time {}.",
            timestamp::iso8601(now)
        )));
    }
    if hour > timestamp::hour_start(now) {
        return Err(out_of_bounds(format!(
            "Timestamp {at} is in an hour that has not started yet (now {}).",
            timestamp::iso8601(now)
        )));
    }
    if hour < timestamp::hour_start(task_start) {
        return Err(out_of_bounds(format!(
            "Timestamp {at} is before the task started ({}).",
            timestamp::iso8601(task_start)
        )));
    }
    Ok(())
}

struct ParsedMeterUsage<'a> {
    request: MeterRequest,
    timestamp: SystemTime,
    dry_run: bool,
    client_token: Option<&'a str>,
}

/// Reads and checks `MeterUsage`'s members against the model. The model
/// declares no generic validation error for `MeterUsage`, so each member's
/// problems are reported with the error closest to it: the quantity's with
/// `InvalidUsageAllocationsException`, the client token's with
/// `IdempotencyConflictException`.
fn parse_meter_usage(input: Input<'_>) -> Result<ParsedMeterUsage<'_>, Failure<MeterUsageError>> {
    use MeterUsageError as E;

    let product_code = members::product_code(input, E::InvalidProductCodeException)?;
    let seconds = input.required_number("Timestamp", E::TimestampOutOfBoundsException)?;
    let timestamp = timestamp::from_epoch_secs(seconds).ok_or_else(|| {
        fail(
            E::TimestampOutOfBoundsException,
            format!("Timestamp {seconds} is not a valid time"),
        )
    })?;
    let dimension = input.required_str("UsageDimension", E::InvalidUsageDimensionException)?;
    if !constraints::has_length(dimension, 1, 255) {
        return Err(fail(
            E::InvalidUsageDimensionException,
            "UsageDimension must be 1 to 255 characters",
        ));
    }

    let (quantity, is_decimal) = parse_quantity(input)?;

    let dry_run = input
        .bool("DryRun", E::InvalidProductCodeException)?
        .unwrap_or(false);
    let client_token = input.str("ClientToken", E::IdempotencyConflictException)?;
    if client_token.is_some_and(|t| !constraints::has_length(t, 1, 64)) {
        return Err(fail(
            E::IdempotencyConflictException,
            "ClientToken must be 1 to 64 characters",
        ));
    }

    let allocations = match input.list("UsageAllocations", E::InvalidUsageAllocationsException)? {
        Some(list) => parse_allocations(list, quantity, is_decimal)?,
        None => Vec::new(),
    };

    Ok(ParsedMeterUsage {
        request: MeterRequest {
            product_code: product_code.to_owned(),
            timestamp_millis: timestamp
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX)),
            dimension: dimension.to_owned(),
            quantity,
            decimal: is_decimal,
            allocations,
        },
        timestamp,
        dry_run,
        client_token,
    })
}

/// `UsageQuantity` or `UsageQuantityAsDecimal` (not both; 0 when neither),
/// and whether it was the decimal one.
fn parse_quantity(input: Input<'_>) -> Result<(Quantity, bool), Failure<MeterUsageError>> {
    use MeterUsageError as E;
    let whole = input.int("UsageQuantity", E::InvalidUsageAllocationsException)?;
    let decimal = input.str(
        "UsageQuantityAsDecimal",
        E::InvalidUsageAllocationsException,
    )?;
    match (whole, decimal) {
        (Some(_), Some(_)) => Err(fail(
            E::InvalidUsageAllocationsException,
            "You can't specify both UsageQuantity and UsageQuantityAsDecimal.",
        )),
        (Some(n), None) => Ok((whole_quantity(n, "UsageQuantity")?, false)),
        (None, Some(text)) => Ok((decimal_quantity(text, "UsageQuantityAsDecimal")?, true)),
        (None, None) => Ok((Quantity::default(), false)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(value: &Value) -> Result<ParsedMeterUsage<'_>, Failure<MeterUsageError>> {
        parse_meter_usage(Input(value.as_object().expect("object")))
    }

    fn base() -> Value {
        json!({"ProductCode": "p", "Timestamp": 1_795_696_496.25, "UsageDimension": "d", "UsageQuantity": 3})
    }

    fn kind(value: &Value) -> MeterUsageError {
        match parse(value) {
            Ok(_) => panic!("expected an error for {value}"),
            Err(f) => f.kind,
        }
    }

    #[test]
    fn a_plain_request_parses_with_its_fraction() {
        let request = base();
        let parsed = parse(&request).map_err(|f| f.message).expect("valid");
        assert_eq!(parsed.request.quantity, Quantity::whole(3));
        assert_eq!(parsed.request.timestamp_millis, 1_795_696_496_250);
        assert_eq!(timestamp::hour_start(parsed.timestamp), 1_795_694_400);
        assert!(!parsed.dry_run);
    }

    #[test]
    fn members_are_checked_against_the_model() {
        use MeterUsageError as E;
        let cases = [
            (
                "ProductCode",
                json!("bad code"),
                E::InvalidProductCodeException,
                "pattern",
            ),
            (
                "Timestamp",
                json!("2026-01-01"),
                E::TimestampOutOfBoundsException,
                "a string",
            ),
            (
                "UsageDimension",
                json!(""),
                E::InvalidUsageDimensionException,
                "empty",
            ),
            (
                "UsageDimension",
                json!("x".repeat(256)),
                E::InvalidUsageDimensionException,
                "256",
            ),
            (
                "UsageQuantity",
                json!(-1),
                E::InvalidUsageAllocationsException,
                "negative",
            ),
            (
                "UsageQuantity",
                json!(2_147_483_648_i64),
                E::InvalidUsageAllocationsException,
                "above int32",
            ),
            (
                "UsageQuantityAsDecimal",
                json!("1.5"),
                E::InvalidUsageAllocationsException,
                "both quantity members",
            ),
            (
                "ClientToken",
                json!(""),
                E::IdempotencyConflictException,
                "empty",
            ),
            (
                "ClientToken",
                json!("t".repeat(65)),
                E::IdempotencyConflictException,
                "65",
            ),
        ];
        assert_eq!(kind(&json!({})), E::InvalidProductCodeException);
        for (member, value, expected, why) in cases {
            let mut request = base();
            request[member] = value;
            assert_eq!(kind(&request), expected, "{member}: {why}");
        }
        let mut decimal = base();
        decimal
            .as_object_mut()
            .expect("object")
            .remove("UsageQuantity");
        decimal["UsageQuantityAsDecimal"] = json!("17.42");
        let parsed = parse(&decimal).map_err(|f| f.message).expect("valid");
        assert_eq!(parsed.request.quantity.micros(), 17_420_000);
        decimal["UsageQuantityAsDecimal"] = json!("17.1234567");
        assert_eq!(kind(&decimal), E::InvalidUsageAllocationsException);
    }

    #[test]
    fn allocations_must_sum_and_tags_must_be_valid() {
        use MeterUsageError as E;
        let with_allocations = |a: Value| {
            let mut b = base();
            b["UsageAllocations"] = a;
            b
        };
        let tag = |k: &str, v: &str| json!({"Key": k, "Value": v});
        let ok = with_allocations(json!([
            {"AllocatedUsageQuantity": 1, "Tags": [tag("team", "a")]},
            {"AllocatedUsageQuantity": 2, "Tags": [tag("team", "b")]},
        ]));
        assert_eq!(
            parse(&ok)
                .map_err(|f| f.message)
                .expect("valid")
                .request
                .allocations
                .len(),
            2
        );
        let untagged = with_allocations(json!([{"AllocatedUsageQuantity": 3}]));
        assert!(parse(&untagged).is_ok());
        let six: Vec<Value> = (0..6).map(|i| tag(&format!("k{i}"), "v")).collect();
        let cases = [
            (
                json!([{"AllocatedUsageQuantity": 2}]),
                E::InvalidUsageAllocationsException,
                "sum below the quantity",
            ),
            (json!([]), E::InvalidUsageAllocationsException, "none"),
            (
                json!([
                    {"AllocatedUsageQuantity": 1, "Tags": [tag("team", "a")]},
                    {"AllocatedUsageQuantity": 2, "Tags": [tag("team", "a")]},
                ]),
                E::InvalidUsageAllocationsException,
                "repeated tag set",
            ),
            (
                json!([{"AllocatedUsageQuantityAsDecimal": "3"}]),
                E::InvalidUsageAllocationsException,
                "decimal allocation for a whole request",
            ),
            (
                json!([{"AllocatedUsageQuantity": 3, "Tags": six}]),
                E::InvalidTagException,
                "six tags",
            ),
            (
                json!([{"AllocatedUsageQuantity": 3, "Tags": [tag("bad?key", "v")]}]),
                E::InvalidTagException,
                "key pattern",
            ),
            (
                json!([{"AllocatedUsageQuantity": 3, "Tags": [tag("k", "")]}]),
                E::InvalidTagException,
                "empty value",
            ),
            (
                json!([{"AllocatedUsageQuantity": 3, "Tags": [{"Key": "k"}]}]),
                E::InvalidTagException,
                "no value",
            ),
        ];
        for (allocations, expected, why) in cases {
            assert_eq!(kind(&with_allocations(allocations)), expected, "{why}");
        }
    }

    #[test]
    fn the_time_window() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_795_696_496); // 12:34:56
        let start = now - Duration::from_hours(2);
        let check = |ts: SystemTime| check_window(ts, timestamp::hour_start(ts), now, start);
        assert!(check(now).is_ok());
        assert!(
            check(now - Duration::from_hours(6)).is_err(),
            "before the task's hour"
        );
        let old_task_start = now - Duration::from_hours(24);
        let old = |ts: SystemTime| check_window(ts, timestamp::hour_start(ts), now, old_task_start);
        assert!(
            old(now - Duration::from_hours(6)).is_ok(),
            "exactly six hours"
        );
        assert!(
            old(now - Duration::from_secs(6 * 3600 + 1)).is_err(),
            "older than six hours"
        );
        assert!(
            old(now + Duration::from_secs(1000)).is_ok(),
            "later in the current hour"
        );
        assert!(old(now + Duration::from_hours(1)).is_err(), "a future hour");
        // The task's first hour counts from its start: 10:00 for a task that
        // started at 10:34.
        let first_hour = std::time::UNIX_EPOCH + Duration::from_hours(498_802);
        assert!(check(first_hour).is_ok());
        assert!(check(first_hour - Duration::from_secs(1)).is_err());
    }
}
