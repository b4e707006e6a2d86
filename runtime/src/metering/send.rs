//! Sending records: one `MeterUsage` per pending record, exactly the
//! request journaled for it, and what each answer does to the record.

use std::collections::BTreeSet;

use aws_sdk_marketplacemetering::types::{Tag, UsageAllocation};
use aws_smithy_types::DateTime;
use tokio::sync::Mutex;

use super::journal::Event;
use super::ledger::{Record, RecordState, WINDOW, WINDOW_MARGIN};
use super::{Pipeline, SendStop};
use crate::aws::{AwsFailure, Clients, Delivery, classify};
use crate::metrics::{self, WriteOff};
use crate::status;
use crate::time::{at_hour, epoch_secs, hour_label, hour_of};
use crate::usage::Tags;

/// A pending record by (dimension, hour), as it stood when sent.
type Pending = ((String, i64), Record);

/// Errors no retry can ever fix for this product: the product definition is
/// wrong for this request (docs/aws-rules.md, "What may write usage off").
/// Only these write a record off.
const PRODUCT_DEFINITION_ERRORS: &[&str] = &[
    "InvalidProductCodeException",
    "InvalidUsageDimensionException",
    "InvalidTagException",
    "InvalidUsageAllocationsException",
    "InvalidEndpointRegionException",
    "CustomerNotEntitledException",
];

/// What a failed `MeterUsage` means for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// `DuplicateRequestException`: another record of this task holds the hour.
    HourTaken,
    /// `TimestampOutOfBoundsException`, `IdempotencyConflictException`: the
    /// hour is no longer accepted for this record.
    HourClosed,
    /// A product-definition error: never billable.
    WriteOff,
    /// Anything else (throttling, access denied, expired or missing
    /// credentials, a bad signature from clock skew, a proxy's 403 or 429,
    /// 5xx, the network): retried until the record's window closes.
    Retry,
}

fn verdict(failure: &AwsFailure) -> Verdict {
    match failure.code.as_deref() {
        Some("DuplicateRequestException") => Verdict::HourTaken,
        Some("TimestampOutOfBoundsException" | "IdempotencyConflictException") => {
            Verdict::HourClosed
        }
        Some(code) if PRODUCT_DEFINITION_ERRORS.contains(&code) => Verdict::WriteOff,
        _ => Verdict::Retry,
    }
}

/// Sends the pending records, oldest first, holding the pipeline's lock
/// only between calls so checkpoints go on while AWS is slow. Stops at the
/// first failure to retry (the caller backs off).
pub(super) async fn send_pending(pipeline: &Mutex<Pipeline>) -> Result<(), SendStop> {
    let mut done = BTreeSet::new();
    loop {
        let (request, key, record) = {
            let mut p = pipeline.lock().await;
            let Some((key, record)) = p.next_request(&done)? else {
                return Ok(());
            };
            (p.request(&key, &record), key, record)
        };
        let timer = metrics::Timer::start();
        let result = request
            .send()
            .await
            .map(|out| out.metering_record_id().unwrap_or_default().to_owned())
            .map_err(|e| classify("MeterUsage", &e));
        timer.finish("MeterUsage", result.as_ref().map(|_| ()));
        done.insert(key.clone());
        pipeline.lock().await.answer(key, &record, result)?;
    }
}

/// Tags of untagged usage in a record that also has tagged usage (AWS
/// requires allocations to cover the whole quantity).
const UNTAGGED_KEY: &str = "marketgate:untagged";

impl Pipeline {
    /// The `MeterUsage` request for a record: exactly what was journaled.
    fn request(
        &self,
        (d, h): &(String, i64),
        record: &Record,
    ) -> aws_sdk_marketplacemetering::operation::meter_usage::builders::MeterUsageFluentBuilder
    {
        let Clients { metering, .. } = &self.clients;
        metering
            .meter_usage()
            .product_code(self.product.code())
            .usage_dimension(d)
            .timestamp(DateTime::from(at_hour(*h)))
            .usage_quantity(i32::try_from(record.quantity).unwrap_or(i32::MAX))
            .set_usage_allocations(Self::allocations(&record.parts))
            .client_token(&record.token)
    }

    fn allocations(parts: &[(Tags, u32)]) -> Option<Vec<UsageAllocation>> {
        if parts.iter().all(|(t, _)| t.is_empty()) {
            return None;
        }
        let built: Vec<UsageAllocation> = parts
            .iter()
            .filter_map(|(tags, q)| {
                let tags: Vec<Tag> = if tags.is_empty() {
                    vec![
                        Tag::builder()
                            .key(UNTAGGED_KEY)
                            .value("true")
                            .build()
                            .ok()?,
                    ]
                } else {
                    tags.iter()
                        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                        .collect()
                };
                UsageAllocation::builder()
                    .allocated_usage_quantity(i32::try_from(*q).unwrap_or(i32::MAX))
                    .set_tags(Some(tags))
                    .build()
                    .ok()
            })
            .collect();
        Some(built)
    }

    /// The next pending record to send this round (oldest first), with the
    /// `Attempt` journaled before the request leaves; expires records about
    /// to leave AWS's window on the way.
    fn next_request(
        &mut self,
        done: &BTreeSet<(String, i64)>,
    ) -> Result<Option<Pending>, SendStop> {
        let now = self.now();
        let now_hour = hour_of(now);
        let now_secs = epoch_secs(now);
        loop {
            let next = self
                .ledger
                .records
                .iter()
                .find(|(k, r)| r.state == RecordState::Pending && !done.contains(*k))
                .map(|(k, r)| (k.clone(), r.clone()));
            let Some(((d, h), record)) = next else {
                return Ok(None);
            };
            if h + WINDOW - WINDOW_MARGIN <= now_secs {
                self.expire(&d, h, &record, now_hour);
                continue;
            }
            if !self.may_send() {
                return Err(SendStop::JournalStale);
            }
            // Journaled before the request leaves: a crash or an abort
            // mid-request leaves the record in doubt, never re-billable.
            self.commit(&[Event::Attempt {
                dimension: d.clone(),
                hour: h,
            }]);
            // The journal may have failed on that very event.
            if !self.may_send() {
                return Err(SendStop::JournalStale);
            }
            return Ok(Some(((d, h), record)));
        }
    }

    /// What AWS's answer does to the record.
    fn answer(
        &mut self,
        (d, h): (String, i64),
        record: &Record,
        result: Result<String, AwsFailure>,
    ) -> Result<(), SendStop> {
        let now = self.now();
        let now_hour = hour_of(now);
        // An answer to a request this record no longer waits for (a send
        // aborted at a signal may still answer after the flush's own): the
        // record's state is already decided.
        let current = self.ledger.records.get(&(d.clone(), h));
        if current.is_none_or(|r| r.state != RecordState::Pending || r.token != record.token) {
            return Ok(());
        }
        let failure = match result {
            Ok(id) => {
                status::record_call("MeterUsage", Ok(()));
                *self.sent_units.entry(d.clone()).or_default() += u64::from(record.quantity);
                metrics::reported(&d, u64::from(record.quantity));
                tracing::info!(
                    target: "marketgate",
                    dimension = %d,
                    hour = %hour_label(h),
                    quantity = record.quantity,
                    record = %id,
                    "usage reported"
                );
                self.commit(&[Event::Sent {
                    dimension: d,
                    hour: h,
                    id,
                }]);
                self.enforce_bound(now, true);
                return Ok(());
            }
            Err(failure) => failure,
        };
        status::record_call("MeterUsage", Err(&failure));
        if failure.delivery != Delivery::Unknown {
            self.commit(&[Event::NotDelivered {
                dimension: d.clone(),
                hour: h,
            }]);
        }
        let (in_doubt, suspect) = self
            .ledger
            .records
            .get(&(d.clone(), h))
            .map_or((false, false), |r| (r.doubt > 0, r.suspect));
        match verdict(&failure) {
            // Another record holds the hour (ours would have been answered
            // as identical), so ours was not stored: carry its units, unless
            // a damaged journal may have hidden that they were carried once.
            //
            // The hour is no longer accepted (`HourClosed`): carry the
            // units, unless an earlier attempt may have been stored while it
            // still was.
            Verdict::HourTaken if suspect => self.unconfirmed(&d, h, record),
            // A product-definition error (a subscription cancelled
            // meanwhile) on a record an earlier attempt of which may have
            // been stored: it may be billed, so it is not reported as never
            // billable either.
            Verdict::HourClosed | Verdict::WriteOff if in_doubt || suspect => {
                self.unconfirmed(&d, h, record);
            }
            Verdict::HourTaken | Verdict::HourClosed => {
                self.reject(&d, h, record, &failure, now_hour);
            }
            Verdict::WriteOff => {
                let code = failure.code.clone().unwrap_or_else(|| "Error".to_owned());
                let message = format!(
                    "{} units of `{d}` for {} cannot be billed: {failure}",
                    record.quantity,
                    hour_label(h)
                );
                tracing::error!(target: "marketgate", "{message}");
                metrics::written_off(&d, u64::from(record.quantity), WriteOff::ProductDefinition);
                self.commit(&[Event::Unbillable {
                    dimension: d,
                    hour: h,
                    code,
                    message,
                }]);
                self.overdue.written_off();
            }
            Verdict::Retry => return Err(SendStop::Transient(failure)),
        }
        Ok(())
    }

    /// AWS refused the record's hour: its units go to the next hour.
    fn reject(&mut self, d: &str, h: i64, record: &Record, failure: &AwsFailure, now_hour: i64) {
        let code = failure.code.as_deref().unwrap_or("Error");
        self.refuse(d, h, record, code, now_hour);
    }

    /// The record's hour is lost to it: its units go to the next hour.
    fn refuse(&mut self, d: &str, h: i64, record: &Record, code: &str, now_hour: i64) {
        tracing::warn!(
            target: "marketgate",
            dimension = d,
            hour = %hour_label(h),
            quantity = record.quantity,
            code,
            "AWS will not take this hour; usage carried to a later hour"
        );
        self.carried_units += u64::from(record.quantity);
        metrics::carried(d, u64::from(record.quantity));
        self.commit(&[Event::Rejected {
            dimension: d.to_owned(),
            hour: h,
            code: code.to_owned(),
            to: now_hour,
        }]);
    }

    /// A record that may have been stored and can no longer be confirmed.
    fn unconfirmed(&mut self, d: &str, h: i64, record: &Record) {
        let message = format!(
            "{} units of `{d}` for {} are unconfirmed: a request for them may have reached AWS \
             before the connection failed, and AWS no longer accepts that hour; they are not \
             billed again to avoid billing twice",
            record.quantity,
            hour_label(h)
        );
        tracing::error!(target: "marketgate", "{message}");
        metrics::written_off(d, u64::from(record.quantity), WriteOff::Unconfirmed);
        self.commit(&[Event::Unbillable {
            dimension: d.to_owned(),
            hour: h,
            code: "Unconfirmed".to_owned(),
            message,
        }]);
        self.overdue.written_off();
    }

    /// A record about to leave the 6-hour window without confirmation.
    fn expire(&mut self, d: &str, h: i64, record: &Record, now_hour: i64) {
        if record.doubt > 0 || record.suspect {
            self.unconfirmed(d, h, record);
        } else {
            tracing::error!(
                target: "marketgate",
                dimension = d,
                hour = %hour_label(h),
                quantity = record.quantity,
                "AWS could not be reached for almost 6 hours; usage carried to the current hour"
            );
            self.refuse(d, h, record, "OutOfWindow", now_hour);
        }
    }
}
