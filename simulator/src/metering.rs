//! AWS Marketplace Metering: `RegisterUsage` and `MeterUsage`.
//!
//! The rules, from the service model's documentation and the seller guide:
//! - `RegisterUsage` must be called from ECS, EKS or Fargate
//!   (`PlatformNotSupportedException`), in the task's own Region
//!   (`InvalidRegionException`), and answers `CustomerNotEntitledException`
//!   only on a task's first call: "Entitlement errors are thrown only on the
//!   first call from a task or pod"; later calls succeed after the buyer
//!   unsubscribes. Its `Signature` is a PS256 JWS over the request's product
//!   code, key version and nonce.
//! - `MeterUsage` rounds the timestamp down to the hour; one record per
//!   dimension per hour per task; an identical request gets the same
//!   `MeteringRecordId`, another quantity is `DuplicateRequestException`;
//!   timestamps more than 6 hours old or before the task started are
//!   `TimestampOutOfBoundsException`; a reused `ClientToken` with other
//!   parameters is `IdempotencyConflictException`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::{Platform, Pricing, Subscription};
use crate::constraints;
use crate::dispatch::Call;
use crate::ids;
use crate::jws;
use crate::operation::{Failure, MeterUsageError, RegisterUsageError, fail};
use crate::protocol::Input;
use crate::state::State;
use crate::timestamp;

/// How far back `MeterUsage` accepts timestamps: "up to six hours in the past".
const MAX_AGE: Duration = Duration::from_hours(6);

/// `UsageQuantity` and `AllocatedUsageQuantity` are int32 with range
/// 0..=2147483647.
const MAX_WHOLE_QUANTITY: i64 = 2_147_483_647;

/// `UsageAllocations` holds 1 to 2500 allocations.
const MAX_ALLOCATIONS: usize = 2500;

/// A `TagList` holds 1 to 5 tags.
const MAX_TAGS: usize = 5;

/// A usage quantity, exact to the millionth (the finest
/// `UsageQuantityAsDecimal` allows). Serializes as a JSON number: whole
/// numbers as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    micros: u64,
}

impl Quantity {
    const SCALE: u64 = 1_000_000;

    /// A whole-number quantity.
    #[must_use]
    pub fn whole(units: u64) -> Self {
        Self {
            micros: units.saturating_mul(Self::SCALE),
        }
    }

    /// The quantity in millionths.
    #[must_use]
    pub fn micros(self) -> u64 {
        self.micros
    }

    /// The quantity when it is a whole number.
    #[must_use]
    pub fn as_whole(self) -> Option<u64> {
        self.micros
            .is_multiple_of(Self::SCALE)
            .then_some(self.micros / Self::SCALE)
    }

    fn from_micros(micros: u64) -> Self {
        Self { micros }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.micros / Self::SCALE, self.micros % Self::SCALE);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{fraction:06}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(whole) = self.as_whole() {
            return s.serialize_u64(whole);
        }
        // Display gives the exact decimal; f64 parses it to the nearest
        // double, which prints back as the same decimal.
        let value: f64 = self
            .to_string()
            .parse()
            .map_err(serde::ser::Error::custom)?;
        s.serialize_f64(value)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::whole(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                u64::try_from(v)
                    .map(Quantity::whole)
                    .map_err(|_| E::custom("quantity is negative"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                constraints::parse_decimal_quantity(&format!("{v:.6}"))
                    .map(Quantity::from_micros)
                    .ok_or_else(|| E::custom(format!("{v} is not a usage quantity")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One accepted `MeterUsage` record, as `GET /_marketgate/usage` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    /// The product code.
    pub product_code: String,
    /// The usage dimension.
    pub dimension: String,
    /// The start of the hour the usage is for, epoch seconds.
    pub timestamp: i64,
    /// The quantity.
    pub quantity: Quantity,
    /// The id `MeterUsage` returned.
    pub metering_record_id: String,
    /// The task (access key id) that sent it.
    pub access_key_id: String,
    /// When it was accepted, simulated clock, epoch seconds.
    pub received_at: i64,
    /// Its usage allocations, if it had any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Allocation>,
}

/// One `UsageAllocation`: a quantity for a set of tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The allocated quantity.
    pub quantity: Quantity,
    /// The tags, in request order.
    pub tags: Vec<Tag>,
}

/// A metering tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// `MeterUsage`'s records and idempotency memory.
#[derive(Debug, Default)]
pub(crate) struct Metering {
    pub(crate) records: Vec<UsageRecord>,
    /// (task, product, dimension, hour) → index into `records`.
    by_hour: HashMap<(String, String, String, i64), usize>,
    /// (task, client token) → the request it was first used with and the
    /// record it produced.
    tokens: HashMap<(String, String), (MeterRequest, usize)>,
}

/// The parameters of a `MeterUsage` request that idempotency compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MeterRequest {
    product_code: String,
    timestamp_millis: i128,
    dimension: String,
    quantity: Quantity,
    decimal: bool,
    allocations: Vec<Allocation>,
}

type RegisterResult = Result<Value, Failure<RegisterUsageError>>;

/// `RegisterUsage`.
pub(crate) fn register_usage(call: &Call<'_>, state: &mut State) -> RegisterResult {
    use RegisterUsageError as E;
    let (product_code, version, nonce) = parse_register_usage(call.input)?;

    let catalog = call.catalog;
    if catalog.platform == Platform::Unsupported {
        return Err(fail(
            E::PlatformNotSupportedException,
            "AWS Marketplace does not support metering usage from the underlying platform. \
             Currently, Amazon ECS, Amazon EKS, and AWS Fargate are supported.",
        ));
    }
    if call.caller.region != catalog.region {
        return Err(fail(
            E::InvalidRegionException,
            format!(
                "RegisterUsage must be called in the same AWS Region the ECS task was launched \
                 in ({}); the request was signed for {}. Take the Region from the environment \
                 instead of hard-coding it.",
                catalog.region, call.caller.region
            ),
        ));
    }
    let product = catalog.product_by_code(product_code).ok_or_else(|| {
        fail(
            E::InvalidProductCodeException,
            format!("Product code {product_code} does not match a published product."),
        )
    })?;
    if !matches!(product.pricing, Pricing::Hourly | Pricing::Monthly) {
        return Err(fail(
            E::InvalidProductCodeException,
            format!(
                "Product {product_code} is not priced hourly or monthly, so it does not use RegisterUsage."
            ),
        ));
    }
    let key = product.key(version).ok_or_else(|| {
        let versions: Vec<String> = product.keys.keys().map(ToString::to_string).collect();
        fail(
            E::InvalidPublicKeyVersionException,
            format!(
                "Public Key version {version} is invalid for product {product_code}; it has version(s) {}.",
                versions.join(", ")
            ),
        )
    })?;

    let subscription = state.subscription(product_code);
    let task = state.task(&call.caller.access_key_id, call.now);
    // AWS: entitlement errors come only on a task's first call. "First" is
    // until the task has registered once: a task refused for lack of a
    // subscription must not get through by simply calling again.
    if !task.registered.contains(product_code) && subscription != Subscription::Subscribed {
        return Err(fail(
            E::CustomerNotEntitledException,
            format!("The customer does not have a valid subscription for product {product_code}."),
        ));
    }

    let mut payload = Map::new();
    payload.insert("productCode".to_owned(), Value::from(product_code));
    payload.insert("publicKeyVersion".to_owned(), Value::from(version));
    if let Some(nonce) = nonce {
        payload.insert("nonce".to_owned(), Value::from(nonce));
    }
    payload.insert(
        "iat".to_owned(),
        Value::from(timestamp::epoch_secs(call.now)),
    );
    let signature = jws::sign(
        &key.signing,
        &json!({"alg": "PS256", "typ": "JWT"}),
        &Value::Object(payload),
    )
    .map_err(|e| fail(E::InternalServiceErrorException, e.to_string()))?;

    task.registered.insert(product_code.to_owned());
    let mut output = Map::new();
    output.insert("Signature".to_owned(), Value::from(signature));
    if let Some(expired) = key.expires_at.filter(|at| *at <= call.now) {
        output.insert(
            "PublicKeyRotationTimestamp".to_owned(),
            timestamp::epoch_json(expired),
        );
    }
    Ok(Value::Object(output))
}

/// Reads and checks `RegisterUsage`'s members. The model declares no generic
/// validation error for `RegisterUsage`, so a bad `Nonce` is reported with the
/// error of the other signature input, the key version.
fn parse_register_usage(
    input: Input<'_>,
) -> Result<(&str, i32, Option<&str>), Failure<RegisterUsageError>> {
    use RegisterUsageError as E;
    let product_code = input
        .str("ProductCode")
        .map_err(|m| fail(E::InvalidProductCodeException, m))?
        .ok_or_else(|| fail(E::InvalidProductCodeException, "ProductCode is required"))?;
    if !constraints::is_product_code(product_code) {
        return Err(fail(
            E::InvalidProductCodeException,
            format!(
                "ProductCode {product_code:?} must match [-a-zA-Z0-9/=:_.@]* and be at most 255 characters"
            ),
        ));
    }
    let version = input
        .int("PublicKeyVersion")
        .map_err(|m| fail(E::InvalidPublicKeyVersionException, m))?
        .ok_or_else(|| {
            fail(
                E::InvalidPublicKeyVersionException,
                "PublicKeyVersion is required",
            )
        })?;
    let version = i32::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            fail(
                E::InvalidPublicKeyVersionException,
                format!("PublicKeyVersion {version} must be an integer of at least 1"),
            )
        })?;
    let nonce = input
        .str("Nonce")
        .map_err(|m| fail(E::InvalidPublicKeyVersionException, m))?;
    if nonce.is_some_and(|n| n.chars().count() > 255) {
        return Err(fail(
            E::InvalidPublicKeyVersionException,
            "Nonce must be at most 255 characters",
        ));
    }

    Ok((product_code, version, nonce))
}

type MeterResult = Result<Value, Failure<MeterUsageError>>;

/// `MeterUsage`.
pub(crate) fn meter_usage(call: &Call<'_>, state: &mut State) -> MeterResult {
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
        // DryRun "checks whether you have the permissions required": it passes
        // every check above and records nothing. The model documents a
        // DryRunOperation error that it does not declare; the official sample
        // treats any error from its start-up DryRun as fatal, so success is a
        // plain 200.
        return Ok(json!({}));
    }

    record(&mut state.metering, call, &parsed, hour)
}

/// Records an accepted request, or answers a repeat: the same `ClientToken`
/// gets the first answer (or `IdempotencyConflictException` if the
/// parameters changed), the same task, dimension and hour gets the same
/// record (or `DuplicateRequestException` for another quantity).
fn record(
    metering: &mut Metering,
    call: &Call<'_>,
    parsed: &ParsedMeterUsage<'_>,
    hour: i64,
) -> MeterResult {
    use MeterUsageError as E;
    let request = &parsed.request;
    let task = call.caller.access_key_id.clone();
    if let Some(token) = parsed.client_token
        && let Some((first, index)) = metering.tokens.get(&(task.clone(), token.to_owned()))
    {
        if first == request {
            return Ok(json!({"MeteringRecordId": metering.records[*index].metering_record_id}));
        }
        return Err(fail(
            E::IdempotencyConflictException,
            format!(
                "ClientToken {token:?} was already used for a MeterUsage request with different parameters."
            ),
        ));
    }

    let key = (
        task.clone(),
        request.product_code.clone(),
        request.dimension.clone(),
        hour,
    );
    let index = if let Some(&index) = metering.by_hour.get(&key) {
        let existing = &metering.records[index];
        if existing.quantity != request.quantity {
            return Err(fail(
                E::DuplicateRequestException,
                format!(
                    "A metering record was already emitted by this task for dimension {:?} and hour {} \
                     with quantity {}; this request has quantity {}.",
                    request.dimension,
                    timestamp::iso8601(
                        std::time::UNIX_EPOCH + Duration::from_secs(hour.unsigned_abs())
                    ),
                    existing.quantity,
                    request.quantity
                ),
            ));
        }
        index
    } else {
        metering.records.push(UsageRecord {
            product_code: request.product_code.clone(),
            dimension: request.dimension.clone(),
            timestamp: hour,
            quantity: request.quantity,
            metering_record_id: ids::uuid(),
            access_key_id: task.clone(),
            received_at: timestamp::epoch_secs(call.now),
            allocations: request.allocations.clone(),
        });
        let index = metering.records.len() - 1;
        metering.by_hour.insert(key, index);
        index
    };
    if let Some(token) = parsed.client_token {
        metering
            .tokens
            .insert((task, token.to_owned()), (request.clone(), index));
    }
    Ok(json!({"MeteringRecordId": metering.records[index].metering_record_id}))
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

    let product_code = input
        .str("ProductCode")
        .map_err(|m| fail(E::InvalidProductCodeException, m))?
        .ok_or_else(|| fail(E::InvalidProductCodeException, "ProductCode is required"))?;
    if !constraints::is_product_code(product_code) {
        return Err(fail(
            E::InvalidProductCodeException,
            format!(
                "ProductCode {product_code:?} must match [-a-zA-Z0-9/=:_.@]* and be at most 255 characters"
            ),
        ));
    }
    let seconds = input
        .number("Timestamp")
        .map_err(|m| fail(E::TimestampOutOfBoundsException, m))?
        .ok_or_else(|| fail(E::TimestampOutOfBoundsException, "Timestamp is required"))?;
    let timestamp = timestamp::from_epoch_secs(seconds).ok_or_else(|| {
        fail(
            E::TimestampOutOfBoundsException,
            format!("Timestamp {seconds} is not a valid time"),
        )
    })?;
    let dimension = input
        .str("UsageDimension")
        .map_err(|m| fail(E::InvalidUsageDimensionException, m))?
        .ok_or_else(|| {
            fail(
                E::InvalidUsageDimensionException,
                "UsageDimension is required",
            )
        })?;
    if !constraints::has_length(dimension, 1, 255) {
        return Err(fail(
            E::InvalidUsageDimensionException,
            "UsageDimension must be 1 to 255 characters",
        ));
    }

    let (quantity, is_decimal) = parse_quantity(input)?;

    let dry_run = input
        .bool("DryRun")
        .map_err(|m| fail(E::InvalidProductCodeException, m))?
        .unwrap_or(false);
    let client_token = input
        .str("ClientToken")
        .map_err(|m| fail(E::IdempotencyConflictException, m))?;
    if client_token.is_some_and(|t| !constraints::has_length(t, 1, 64)) {
        return Err(fail(
            E::IdempotencyConflictException,
            "ClientToken must be 1 to 64 characters",
        ));
    }

    let allocations = match input
        .list("UsageAllocations")
        .map_err(|m| fail(E::InvalidUsageAllocationsException, m))?
    {
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
    let whole = input
        .int("UsageQuantity")
        .map_err(|m| fail(E::InvalidUsageAllocationsException, m))?;
    let decimal = input
        .str("UsageQuantityAsDecimal")
        .map_err(|m| fail(E::InvalidUsageAllocationsException, m))?;
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

fn whole_quantity(n: i64, member: &str) -> Result<Quantity, Failure<MeterUsageError>> {
    u64::try_from(n)
        .ok()
        .filter(|n| i64::try_from(*n).is_ok_and(|n| n <= MAX_WHOLE_QUANTITY))
        .map(Quantity::whole)
        .ok_or_else(|| {
            Failure::new(
                MeterUsageError::InvalidUsageAllocationsException,
                format!("{member} {n} must be between 0 and {MAX_WHOLE_QUANTITY}"),
            )
        })
}

fn decimal_quantity(text: &str, member: &str) -> Result<Quantity, Failure<MeterUsageError>> {
    constraints::parse_decimal_quantity(text)
        .map(Quantity::from_micros)
        .ok_or_else(|| {
            Failure::new(
                MeterUsageError::InvalidUsageAllocationsException,
                format!("{member} {text:?} must match ^(0|[1-9][0-9]{{0,9}})(\\.[0-9]{{1,6}})?$"),
            )
        })
}

/// AWS: allocations must sum to the usage quantity, use the same kind of
/// quantity (whole or decimal) as the request, and each have a unique set of
/// tags; a tag list has 1 to 5 valid tags (`InvalidTagException`).
fn parse_allocations(
    list: &[Value],
    quantity: Quantity,
    decimal: bool,
) -> Result<Vec<Allocation>, Failure<MeterUsageError>> {
    use MeterUsageError as E;
    if list.is_empty() || list.len() > MAX_ALLOCATIONS {
        return Err(fail(
            E::InvalidUsageAllocationsException,
            format!("UsageAllocations must hold 1 to {MAX_ALLOCATIONS} allocations"),
        ));
    }
    let mut allocations = Vec::with_capacity(list.len());
    let mut tag_sets = BTreeSet::new();
    let mut sum: u64 = 0;
    for (i, item) in list.iter().enumerate() {
        let what = format!("UsageAllocations[{i}]");
        let allocation = Input::structure(item, &what)
            .map_err(|m| fail(E::InvalidUsageAllocationsException, m))?;
        let whole = allocation
            .int("AllocatedUsageQuantity")
            .map_err(|m| fail(E::InvalidUsageAllocationsException, m))?;
        let text = allocation
            .str("AllocatedUsageQuantityAsDecimal")
            .map_err(|m| fail(E::InvalidUsageAllocationsException, m))?;
        let amount = match (whole, text, decimal) {
            (Some(n), None, false) => whole_quantity(n, &format!("{what}.AllocatedUsageQuantity"))?,
            (None, Some(t), true) => {
                decimal_quantity(t, &format!("{what}.AllocatedUsageQuantityAsDecimal"))?
            }
            (Some(_), Some(_), _) | (None, None, _) => {
                return Err(fail(
                    E::InvalidUsageAllocationsException,
                    format!(
                        "{what} must specify exactly one of AllocatedUsageQuantity or AllocatedUsageQuantityAsDecimal"
                    ),
                ));
            }
            _ => {
                return Err(fail(
                    E::InvalidUsageAllocationsException,
                    format!(
                        "{what} must use the same type of quantity as the request: AllocatedUsageQuantity \
                         with UsageQuantity, AllocatedUsageQuantityAsDecimal with UsageQuantityAsDecimal"
                    ),
                ));
            }
        };
        let tags = match allocation
            .list("Tags")
            .map_err(|m| fail(E::InvalidTagException, m))?
        {
            Some(tags) => parse_tags(tags, &what)?,
            None => Vec::new(),
        };
        let mut key: Vec<Tag> = tags.clone();
        key.sort();
        if !tag_sets.insert(key) {
            return Err(fail(
                E::InvalidUsageAllocationsException,
                format!("{what} repeats the tag set of an earlier allocation; each must be unique"),
            ));
        }
        sum = sum.saturating_add(amount.micros());
        allocations.push(Allocation {
            quantity: amount,
            tags,
        });
    }
    if sum != quantity.micros() {
        return Err(fail(
            E::InvalidUsageAllocationsException,
            format!(
                "Sum of allocated usage quantities ({}) is not equal to the usage quantity ({quantity})",
                Quantity::from_micros(sum)
            ),
        ));
    }
    Ok(allocations)
}

fn parse_tags(list: &[Value], what: &str) -> Result<Vec<Tag>, Failure<MeterUsageError>> {
    use MeterUsageError as E;
    if list.is_empty() || list.len() > MAX_TAGS {
        return Err(fail(
            E::InvalidTagException,
            format!("{what}.Tags must hold 1 to {MAX_TAGS} tags"),
        ));
    }
    let mut tags = Vec::with_capacity(list.len());
    let mut keys = BTreeSet::new();
    for (j, item) in list.iter().enumerate() {
        let tag_what = format!("{what}.Tags[{j}]");
        let tag = Input::structure(item, &tag_what).map_err(|m| fail(E::InvalidTagException, m))?;
        let key = tag
            .str("Key")
            .map_err(|m| fail(E::InvalidTagException, m))?
            .ok_or_else(|| {
                fail(
                    E::InvalidTagException,
                    format!("{tag_what}.Key is required"),
                )
            })?;
        let value = tag
            .str("Value")
            .map_err(|m| fail(E::InvalidTagException, m))?
            .ok_or_else(|| {
                fail(
                    E::InvalidTagException,
                    format!("{tag_what}.Value is required"),
                )
            })?;
        if !constraints::is_tag_text(key, 100) {
            return Err(fail(
                E::InvalidTagException,
                format!("{tag_what}.Key {key:?} must be 1-100 characters of [a-zA-Z0-9+ -=._:/@]"),
            ));
        }
        if !constraints::is_tag_text(value, 256) {
            return Err(fail(
                E::InvalidTagException,
                format!(
                    "{tag_what}.Value {value:?} must be 1-256 characters of [a-zA-Z0-9+ -=._:/@]"
                ),
            ));
        }
        if !keys.insert(key) {
            return Err(fail(
                E::InvalidTagException,
                format!("{what}.Tags has the key {key:?} twice"),
            ));
        }
        tags.push(Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        assert_eq!(kind(&json!({})), E::InvalidProductCodeException);
        assert_eq!(
            kind(&with("ProductCode", json!("bad code"))),
            E::InvalidProductCodeException
        );
        assert_eq!(
            kind(&with("Timestamp", json!("2026-01-01"))),
            E::TimestampOutOfBoundsException
        );
        assert_eq!(
            kind(&with("UsageDimension", json!(""))),
            E::InvalidUsageDimensionException
        );
        assert_eq!(
            kind(&with("UsageDimension", json!("x".repeat(256)))),
            E::InvalidUsageDimensionException
        );
        assert_eq!(
            kind(&with("UsageQuantity", json!(-1))),
            E::InvalidUsageAllocationsException
        );
        assert_eq!(
            kind(&with("UsageQuantity", json!(2_147_483_648_i64))),
            E::InvalidUsageAllocationsException
        );
        assert_eq!(
            kind(&with("UsageQuantityAsDecimal", json!("1.5"))),
            E::InvalidUsageAllocationsException,
            "both quantity members"
        );
        assert_eq!(
            kind(&with("ClientToken", json!(""))),
            E::IdempotencyConflictException
        );
        assert_eq!(
            kind(&with("ClientToken", json!("t".repeat(65)))),
            E::IdempotencyConflictException
        );
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
        assert_eq!(
            kind(&with_allocations(json!([{"AllocatedUsageQuantity": 2}]))),
            E::InvalidUsageAllocationsException
        );
        assert_eq!(
            kind(&with_allocations(json!([]))),
            E::InvalidUsageAllocationsException
        );
        assert_eq!(
            kind(&with_allocations(json!([
                {"AllocatedUsageQuantity": 1, "Tags": [tag("team", "a")]},
                {"AllocatedUsageQuantity": 2, "Tags": [tag("team", "a")]},
            ]))),
            E::InvalidUsageAllocationsException,
            "repeated tag set"
        );
        assert_eq!(
            kind(&with_allocations(
                json!([{"AllocatedUsageQuantityAsDecimal": "3"}])
            )),
            E::InvalidUsageAllocationsException,
            "decimal allocation for a whole request"
        );
        let six: Vec<Value> = (0..6).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(
            kind(&with_allocations(
                json!([{"AllocatedUsageQuantity": 3, "Tags": six}])
            )),
            E::InvalidTagException
        );
        assert_eq!(
            kind(&with_allocations(
                json!([{"AllocatedUsageQuantity": 3, "Tags": [tag("bad?key", "v")]}])
            )),
            E::InvalidTagException
        );
        assert_eq!(
            kind(&with_allocations(
                json!([{"AllocatedUsageQuantity": 3, "Tags": [tag("k", "")]}])
            )),
            E::InvalidTagException
        );
        assert_eq!(
            kind(&with_allocations(
                json!([{"AllocatedUsageQuantity": 3, "Tags": [{"Key": "k"}]}])
            )),
            E::InvalidTagException
        );
    }

    #[test]
    fn quantities_print_and_serialize_exactly() {
        assert_eq!(Quantity::whole(17).to_string(), "17");
        assert_eq!(Quantity::from_micros(17_420_000).to_string(), "17.42");
        assert_eq!(
            serde_json::to_value(Quantity::whole(17)).expect("json"),
            json!(17)
        );
        assert_eq!(
            serde_json::to_value(Quantity::from_micros(17_420_000)).expect("json"),
            json!(17.42)
        );
        let back: Quantity = serde_json::from_value(json!(17.42)).expect("parses");
        assert_eq!(back, Quantity::from_micros(17_420_000));
        let back: Quantity = serde_json::from_value(json!(5)).expect("parses");
        assert_eq!(back.as_whole(), Some(5));
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
