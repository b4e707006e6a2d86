//! Sending records: one `MeterUsage` per pending record, exactly the
//! request journaled for it, and what each answer does to the record.

use std::time::SystemTime;

use aws_sdk_marketplacemetering::types::{Tag, UsageAllocation};
use aws_smithy_types::DateTime;

use super::journal::Event;
use super::ledger::{Record, RecordState, WINDOW, WINDOW_MARGIN};
use super::{Pipeline, SendStop};
use crate::aws::{Delivery, Retry, classify};
use crate::status;
use crate::time::{at_hour, epoch_secs, hour_label, hour_of};
use crate::usage::Tags;

/// Tags of untagged usage in a record that also has tagged usage (AWS
/// requires allocations to cover the whole quantity).
const UNTAGGED_KEY: &str = "marketgate:untagged";

impl Pipeline {
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

    /// Sends pending records, oldest first. Stops at the first transient
    /// failure (the caller backs off).
    pub(super) async fn send(&mut self, now: SystemTime) -> Result<(), SendStop> {
        let now_hour = hour_of(now);
        let pending: Vec<((String, i64), Record)> = self
            .ledger
            .records
            .iter()
            .filter(|(_, r)| r.state == RecordState::Pending)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let now_secs = epoch_secs(now);
        for ((d, h), record) in pending {
            if h + WINDOW - WINDOW_MARGIN <= now_secs {
                self.expire(&d, h, &record, now_hour);
                continue;
            }
            // Journaled before the request leaves: a crash or an abort
            // mid-request leaves the record in doubt, never re-billable.
            self.commit(&[Event::Attempt {
                dimension: d.clone(),
                hour: h,
            }]);
            let result = self
                .clients
                .metering
                .meter_usage()
                .product_code(self.product.code())
                .usage_dimension(&d)
                .timestamp(DateTime::from(at_hour(h)))
                .usage_quantity(i32::try_from(record.quantity).unwrap_or(i32::MAX))
                .set_usage_allocations(Self::allocations(&record.parts))
                .client_token(&record.token)
                .send()
                .await;
            let failure = match result {
                Ok(output) => {
                    status::record_call("MeterUsage", Ok(()));
                    let id = output.metering_record_id().unwrap_or_default().to_owned();
                    *self.sent_units.entry(d.clone()).or_default() += u64::from(record.quantity);
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
                    continue;
                }
                Err(e) => classify("MeterUsage", &e),
            };
            status::record_call("MeterUsage", Err(&failure));
            if failure.delivery != Delivery::Unknown {
                self.commit(&[Event::NotDelivered {
                    dimension: d.clone(),
                    hour: h,
                }]);
            }
            let in_doubt = self
                .ledger
                .records
                .get(&(d.clone(), h))
                .is_some_and(|r| r.doubt > 0);
            match failure.code.as_deref() {
                // Another record of this task holds the hour (ours would
                // have been answered as identical): this one was not stored.
                Some(code @ "DuplicateRequestException") => {
                    self.reject(&d, h, &record, code, now_hour);
                }
                // The hour is no longer accepted. Carry the units, unless an
                // earlier attempt may have been stored while it still was.
                Some(code @ ("TimestampOutOfBoundsException" | "IdempotencyConflictException")) => {
                    if in_doubt {
                        self.unconfirmed(&d, h, &record);
                    } else {
                        self.reject(&d, h, &record, code, now_hour);
                    }
                }
                _ if failure.retry == Retry::Transient => {
                    return Err(SendStop::Transient(failure));
                }
                _ => {
                    let code = failure.code.clone().unwrap_or_else(|| "Error".to_owned());
                    let message = format!(
                        "{} units of `{d}` for {} cannot be billed: {failure}",
                        record.quantity,
                        hour_label(h)
                    );
                    tracing::error!(target: "marketgate", "{message}");
                    self.commit(&[Event::Unbillable {
                        dimension: d,
                        hour: h,
                        code,
                        message,
                    }]);
                }
            }
        }
        Ok(())
    }

    /// AWS refused the record's hour: its units go to the next hour.
    fn reject(&mut self, d: &str, h: i64, record: &Record, code: &str, now_hour: i64) {
        tracing::warn!(
            target: "marketgate",
            dimension = d,
            hour = %hour_label(h),
            quantity = record.quantity,
            code,
            "AWS will not take this hour; usage carried to a later hour"
        );
        self.carried_units += u64::from(record.quantity);
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
        self.commit(&[Event::Unbillable {
            dimension: d.to_owned(),
            hour: h,
            code: "Unconfirmed".to_owned(),
            message,
        }]);
    }

    /// A record about to leave the 6-hour window without confirmation.
    fn expire(&mut self, d: &str, h: i64, record: &Record, now_hour: i64) {
        if record.doubt > 0 {
            self.unconfirmed(d, h, record);
        } else {
            tracing::error!(
                target: "marketgate",
                dimension = d,
                hour = %hour_label(h),
                quantity = record.quantity,
                "AWS could not be reached for almost 6 hours; usage carried to the current hour"
            );
            self.reject(d, h, record, "OutOfWindow", now_hour);
        }
    }
}
