//! AWS Marketplace Metering: `RegisterUsage` and `MeterUsage`.
//!
//! The rules, from the service model's documentation (the API reference
//! pages <https://docs.aws.amazon.com/marketplacemetering/latest/APIReference/API_RegisterUsage.html>
//! and <https://docs.aws.amazon.com/marketplacemetering/latest/APIReference/API_MeterUsage.html>):
//! - `RegisterUsage` must be called from ECS, EKS or Fargate
//!   (`PlatformNotSupportedException`), in the task's own Region
//!   (`InvalidRegionException`), and refuses an unsubscribed buyer only on a
//!   task's first call: the exception "will only be thrown on the initial
//!   call to `RegisterUsage`. Subsequent calls from the same Amazon ECS task
//!   instance (e.g. task-id) or Amazon EKS pod will not throw a
//!   `CustomerNotSubscribedException`, even if the customer unsubscribes while
//!   the Amazon ECS task or Amazon EKS pod is still running." Its `Signature`
//!   is a PS256 JWS over the request's product code, key version and nonce.
//! - `MeterUsage` rounds the timestamp down to the hour; one record per
//!   dimension per hour per task; an identical request gets the same
//!   `MeteringRecordId` ("For identical requests, the API is idempotent"),
//!   another quantity is `DuplicateRequestException`; "Your application can
//!   meter usage for up to six hours in the past. Make sure the timestamp
//!   value is not before the start of the software usage"
//!   (`TimestampOutOfBoundsException`); a reused `ClientToken` with other
//!   parameters is `IdempotencyConflictException`.
//!
//! Parts: [`quantity`] (exact decimal quantities), [`state`] (accepted
//! records and idempotency), [`members`] (member checks both operations
//! share), one module per operation, and [`allocations`] (`MeterUsage`'s
//! `UsageAllocations`).

mod allocations;
mod members;
mod meter_usage;
mod quantity;
mod register_usage;
pub(crate) mod state;

pub(crate) use meter_usage::meter_usage;
pub use quantity::Quantity;
pub(crate) use register_usage::register_usage;
pub use state::{Allocation, Tag, UsageRecord};
