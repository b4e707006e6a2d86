//! What `MeterUsage` has accepted, and the memory its idempotency rules
//! need: one record per task, product, dimension and hour, and the request
//! each `ClientToken` was first used with.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::quantity::Quantity;
use crate::ids;
use crate::operation::{Failure, MeterUsageError, fail};
use crate::timestamp;

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
    /// The `ClientToken` of the request that stored it, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
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
pub(super) struct MeterRequest {
    pub(super) product_code: String,
    pub(super) timestamp_millis: i128,
    pub(super) dimension: String,
    pub(super) quantity: Quantity,
    pub(super) decimal: bool,
    pub(super) allocations: Vec<Allocation>,
}

impl Metering {
    /// Records an accepted request of `task` for `hour`, or answers a
    /// repeat, and returns the `MeteringRecordId`: the same `ClientToken`
    /// gets the first answer (or `IdempotencyConflictException` if the
    /// parameters changed), the same task, dimension and hour gets the same
    /// record (or `DuplicateRequestException` for another quantity).
    pub(super) fn record(
        &mut self,
        task: &str,
        request: &MeterRequest,
        client_token: Option<&str>,
        hour: i64,
        now: SystemTime,
    ) -> Result<&str, Failure<MeterUsageError>> {
        use MeterUsageError as E;
        if let Some(token) = client_token
            && let Some((first, index)) = self.tokens.get(&(task.to_owned(), token.to_owned()))
        {
            if first == request {
                return Ok(&self.records[*index].metering_record_id);
            }
            return Err(fail(
                E::IdempotencyConflictException,
                format!(
                    "ClientToken {token:?} was already used for a MeterUsage request with different parameters."
                ),
            ));
        }

        let key = (
            task.to_owned(),
            request.product_code.clone(),
            request.dimension.clone(),
            hour,
        );
        let index = if let Some(&index) = self.by_hour.get(&key) {
            let existing = &self.records[index];
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
            self.records.push(UsageRecord {
                product_code: request.product_code.clone(),
                dimension: request.dimension.clone(),
                timestamp: hour,
                quantity: request.quantity,
                metering_record_id: ids::uuid(),
                access_key_id: task.to_owned(),
                received_at: timestamp::epoch_secs(now),
                client_token: client_token.map(str::to_owned),
                allocations: request.allocations.clone(),
            });
            let index = self.records.len() - 1;
            self.by_hour.insert(key, index);
            index
        };
        if let Some(token) = client_token {
            self.tokens.insert(
                (task.to_owned(), token.to_owned()),
                (request.clone(), index),
            );
        }
        Ok(&self.records[index].metering_record_id)
    }
}
