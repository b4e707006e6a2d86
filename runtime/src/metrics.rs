//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (cargo
//! feature `metrics`), so that a seller can alarm on "usage is not being
//! reported" with the exporter of their choice and no code of their own.
//! Every metric, its labels and a suggested alarm: docs/operations.md.
//!
//! Nothing here runs on the hot path: `#[entitled]`, `#[metered]` and the
//! usage counters never call into this module. The background work notes
//! what happened (units checkpointed, reported, carried or written off, AWS
//! calls, journal failures) in process-wide tallies, and a task on the
//! runtime's thread publishes the tallies and the same snapshot
//! [`crate::status()`] serves, every checkpoint interval. Counters are
//! published as absolute values, so a recorder installed late (in `main`'s
//! body, after `#[marketgate::main]` has verified) still sees everything
//! counted since the process started; only latency observations made before
//! it was installed are lost.
//!
//! Labels have bounded values: `dimension` (the manifest's), `operation`
//! (six AWS operations), `outcome` ([`outcome`]), `reason`, `state`.
//!
//! Without the feature every function here is empty and [`Timer`] holds
//! nothing.

use std::time::Duration;

use crate::aws::AwsFailure;

/// Why units were written off (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOff {
    /// AWS refused the product definition (`InvalidProductCodeException`,
    /// `CustomerNotEntitledException`, ...): never billable.
    ProductDefinition,
    /// A request may have reached AWS, and the hour can no longer be
    /// confirmed: not billed again, to avoid billing twice.
    Unconfirmed,
}

impl WriteOff {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            WriteOff::ProductDefinition => "product_definition",
            WriteOff::Unconfirmed => "unconfirmed",
        }
    }
}

/// Units of `dimension` moved from the counters into the journal at a
/// checkpoint.
pub(crate) fn recorded(dimension: &str, units: u64) {
    #[cfg(feature = "metrics")]
    imp::add(|t| &mut t.recorded, dimension, units);
    #[cfg(not(feature = "metrics"))]
    let _ = (dimension, units);
}

/// Units of `dimension` AWS confirmed.
pub(crate) fn reported(dimension: &str, units: u64) {
    #[cfg(feature = "metrics")]
    imp::add(|t| &mut t.reported, dimension, units);
    #[cfg(not(feature = "metrics"))]
    let _ = (dimension, units);
}

/// Units of `dimension` carried to a later hour.
pub(crate) fn carried(dimension: &str, units: u64) {
    #[cfg(feature = "metrics")]
    imp::add(|t| &mut t.carried, dimension, units);
    #[cfg(not(feature = "metrics"))]
    let _ = (dimension, units);
}

/// Units of `dimension` that will never be billed.
pub(crate) fn written_off(dimension: &str, units: u64, reason: WriteOff) {
    #[cfg(feature = "metrics")]
    imp::written_off(dimension, units, reason.label());
    #[cfg(not(feature = "metrics"))]
    let _ = (dimension, units, reason);
}

/// A checkpoint of the usage counters.
pub(crate) fn checkpoint() {
    #[cfg(feature = "metrics")]
    imp::with(|t| t.checkpoints += 1);
}

/// The journal could not be opened, written or compacted.
pub(crate) fn journal_failure() {
    #[cfg(feature = "metrics")]
    imp::with(|t| t.journal_failures += 1);
}

/// How long start-up verification took (successful or not).
pub(crate) fn startup_verified(elapsed: Duration) {
    #[cfg(feature = "metrics")]
    imp::with(|t| t.startup = Some(elapsed.as_secs_f64()));
    #[cfg(not(feature = "metrics"))]
    let _ = elapsed;
}

/// Times one attempt of an AWS call; [`Timer::finish`] counts it by
/// operation and [`outcome`] and observes its latency. A plain value next to
/// the call, not a wrapper around its future: the SDK's futures are large,
/// and wrapping one would double the size of every future that awaits it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Timer {
    /// Starts timing an attempt.
    pub(crate) fn start() -> Timer {
        Timer {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    /// The attempt of `operation` ended with `result`.
    pub(crate) fn finish(self, operation: &'static str, result: Result<(), &AwsFailure>) {
        #[cfg(feature = "metrics")]
        imp::call(operation, outcome(result), self.started.elapsed());
        #[cfg(not(feature = "metrics"))]
        let _ = (self, operation, result);
    }
}

/// Publishes the tallies and the status snapshot now.
pub(crate) fn publish() {
    #[cfg(feature = "metrics")]
    imp::publish();
}

/// Publishes every `every` until the runtime's thread ends.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) async fn run(every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        publish();
    }
}

/// AWS error codes that mean "slow down" (both services).
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RateLimitExceededException",
    "TooManyRequestsException",
];

/// AWS error codes that mean the caller's identity or permissions were
/// refused (a detached IAM policy, expired or wrong credentials, a bad
/// signature from clock skew).
const ACCESS_DENIED: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "AuthorizationException",
    "UnauthorizedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationTokenException",
];

/// AWS error codes for a fault on AWS's side.
const SERVER_ERROR: &[&str] = &[
    "InternalServiceErrorException",
    "ServerInternalException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// The `outcome` label of an AWS call: a class, never the error text, so
/// that the label has a handful of values.
///
/// | outcome | meaning |
/// |---|---|
/// | `ok` | AWS accepted the call |
/// | `throttled` | AWS asked to slow down (throttling codes, HTTP 429) |
/// | `access_denied` | identity or permissions refused (HTTP 401/403, `AccessDeniedException`, expired token, bad signature) |
/// | `credentials` | no credentials found: the request never left |
/// | `server_error` | a fault on AWS's side (HTTP 5xx) |
/// | `rejected` | another error AWS answered (the request itself was refused: duplicate hour, out of bounds, not entitled, ...) |
/// | `network` | no answer: DNS, connect, timeout, connection lost, or the credentials provider did not answer |
/// | `untrusted_peer` | the TLS certificate that answered is not from AWS |
/// | `other` | a request that could not be built |
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn outcome(result: Result<(), &AwsFailure>) -> &'static str {
    let Err(failure) = result else {
        return "ok";
    };
    if failure.is_untrusted_certificate() {
        return "untrusted_peer";
    }
    if failure.is_missing_credentials() {
        return "credentials";
    }
    let code = failure.code.as_deref().unwrap_or_default();
    if THROTTLED.contains(&code) || failure.status == Some(429) {
        "throttled"
    } else if ACCESS_DENIED.contains(&code) || matches!(failure.status, Some(401 | 403)) {
        "access_denied"
    } else if SERVER_ERROR.contains(&code) || failure.status.is_some_and(|s| s >= 500) {
        "server_error"
    } else if failure.status.is_some() || !code.is_empty() {
        "rejected"
    } else if failure.retry == crate::aws::Retry::Transient {
        "network"
    } else {
        "other"
    }
}

#[cfg(feature = "metrics")]
mod imp {
    //! The tallies and the publisher.

    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

    use crate::status::{self, LeaseState, RunState};

    /// What the background work counted since the process started (never
    /// reset: the counters it feeds only grow), and the label values
    /// published so far (set to zero when they disappear).
    pub(super) struct Tally {
        pub(super) recorded: BTreeMap<String, u64>,
        pub(super) reported: BTreeMap<String, u64>,
        pub(super) carried: BTreeMap<String, u64>,
        written_off: BTreeMap<(String, &'static str), u64>,
        calls: BTreeMap<(&'static str, &'static str), u64>,
        pub(super) checkpoints: u64,
        pub(super) journal_failures: u64,
        pub(super) startup: Option<f64>,
        dimensions: BTreeSet<String>,
        degraded: BTreeSet<&'static str>,
    }

    static TALLY: Mutex<Tally> = Mutex::new(Tally {
        recorded: BTreeMap::new(),
        reported: BTreeMap::new(),
        carried: BTreeMap::new(),
        written_off: BTreeMap::new(),
        calls: BTreeMap::new(),
        checkpoints: 0,
        journal_failures: 0,
        startup: None,
        dimensions: BTreeSet::new(),
        degraded: BTreeSet::new(),
    });

    fn tally() -> MutexGuard<'static, Tally> {
        TALLY.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn with(f: impl FnOnce(&mut Tally)) {
        f(&mut tally());
    }

    pub(super) fn add(
        map: fn(&mut Tally) -> &mut BTreeMap<String, u64>,
        dimension: &str,
        units: u64,
    ) {
        let mut t = tally();
        let map = map(&mut t);
        match map.get_mut(dimension) {
            Some(total) => *total = total.saturating_add(units),
            None => {
                map.insert(dimension.to_owned(), units);
            }
        }
    }

    pub(super) fn written_off(dimension: &str, units: u64, reason: &'static str) {
        let mut t = tally();
        let total = t
            .written_off
            .entry((dimension.to_owned(), reason))
            .or_default();
        *total = total.saturating_add(units);
    }

    pub(super) fn call(operation: &'static str, outcome: &'static str, latency: Duration) {
        *tally().calls.entry((operation, outcome)).or_default() += 1;
        ::metrics::histogram!(
            "marketgate_aws_call_duration_seconds",
            "operation" => operation,
            "outcome" => outcome
        )
        .record(latency.as_secs_f64());
    }

    const RUN_STATES: [(RunState, &str); 6] = [
        (RunState::NotStarted, "not_started"),
        (RunState::Starting, "starting"),
        (RunState::Running, "running"),
        (RunState::Refused, "refused"),
        (RunState::ShuttingDown, "shutting_down"),
        (RunState::Stopped, "stopped"),
    ];

    const LEASE_STATES: [(LeaseState, &str); 5] = [
        (LeaseState::Held, "held"),
        (LeaseState::HeldPastFailure, "held_past_failure"),
        (LeaseState::Ending, "ending"),
        (LeaseState::Lapsed, "lapsed"),
        (LeaseState::CheckedIn, "checked_in"),
    ];

    fn flag(on: bool) -> f64 {
        if on { 1.0 } else { 0.0 }
    }

    #[allow(clippy::cast_precision_loss)] // gauges are f64; these stay far below 2^53
    fn float(v: u64) -> f64 {
        v as f64
    }

    #[allow(clippy::too_many_lines)] // one call per metric
    fn describe() {
        describe_counter!(
            "marketgate_metering_recorded_units_total",
            Unit::Count,
            "Units recorded by #[metered] and usage records, moved into the journal at a checkpoint."
        );
        describe_counter!(
            "marketgate_metering_reported_units_total",
            Unit::Count,
            "Units AWS confirmed (MeterUsage accepted)."
        );
        describe_counter!(
            "marketgate_metering_carried_units_total",
            Unit::Count,
            "Units moved to a later hour (hour already reported, refused, leaving the 6-hour window, over the i32 limit)."
        );
        describe_counter!(
            "marketgate_metering_written_off_units_total",
            Unit::Count,
            "Units that will never be billed, by reason."
        );
        describe_counter!(
            "marketgate_metering_checkpoints_total",
            Unit::Count,
            "Checkpoints of the usage counters: grows every interval while the background task runs."
        );
        describe_gauge!(
            "marketgate_metering_outstanding_units",
            Unit::Count,
            "Units recorded and neither confirmed by AWS nor written off (open hour, carried usage, pending records)."
        );
        describe_gauge!(
            "marketgate_metering_pending_records",
            Unit::Count,
            "MeterUsage records made and waiting for AWS's confirmation."
        );
        describe_gauge!(
            "marketgate_metering_oldest_unreported_age_seconds",
            Unit::Seconds,
            "Age of the oldest unreported unit, from the start of its hour; 0 when nothing is outstanding."
        );
        describe_gauge!(
            "marketgate_metering_overdue_seconds",
            Unit::Seconds,
            "How long usage whose hour ended has waited for a report; 0 when none waits."
        );
        describe_gauge!(
            "marketgate_metering_max_unreported_seconds",
            Unit::Seconds,
            "The bound on overdue_seconds past which #[metered] calls are denied."
        );
        describe_gauge!(
            "marketgate_metering_reporting_blocked",
            Unit::Count,
            "1 while #[metered] calls are denied because usage could not be reported in time."
        );
        describe_gauge!(
            "marketgate_journal_writable",
            Unit::Count,
            "1 while the metering journal is open and written; 0 while usage lives in memory only."
        );
        describe_gauge!(
            "marketgate_journal_damaged",
            Unit::Count,
            "1 when recovery found part of the journal unreadable at start-up."
        );
        describe_counter!(
            "marketgate_journal_failures_total",
            Unit::Count,
            "Failed journal operations (open, append, compact); grows at every retry while the journal cannot be written."
        );
        describe_counter!(
            "marketgate_aws_calls_total",
            Unit::Count,
            "AWS calls (each attempt), by operation and outcome class."
        );
        describe_histogram!(
            "marketgate_aws_call_duration_seconds",
            Unit::Seconds,
            "Latency of AWS calls (each attempt), by operation and outcome class."
        );
        describe_gauge!(
            "marketgate_license_lease_state",
            Unit::Count,
            "1 for the state the license lease is in (contract products)."
        );
        describe_gauge!(
            "marketgate_license_deadline_timestamp_seconds",
            Unit::Seconds,
            "Until when (Unix time) the license's features are held without a renewal; 0 when no consumption is held."
        );
        describe_gauge!(
            "marketgate_license_extension_failures",
            Unit::Count,
            "Failed tries to extend (or check out again) since the last success."
        );
        describe_gauge!(
            "marketgate_startup_verification_duration_seconds",
            Unit::Seconds,
            "How long start-up verification (Region, RegisterUsage / MeterUsage dry run / CheckoutLicense) took."
        );
        describe_gauge!(
            "marketgate_runtime_state",
            Unit::Count,
            "1 for the state the runtime is in."
        );
        describe_gauge!(
            "marketgate_degraded",
            Unit::Count,
            "1 for each reason the runtime is degraded now (status().degraded)."
        );
    }

    /// Sets every metric from the tallies and the status snapshot.
    pub(super) fn publish() {
        describe();
        let status = crate::status();
        let degraded = status::degraded_keys();
        let mut t = tally();
        for (name, map) in [
            ("marketgate_metering_recorded_units_total", &t.recorded),
            ("marketgate_metering_reported_units_total", &t.reported),
            ("marketgate_metering_carried_units_total", &t.carried),
        ] {
            for (dimension, units) in map {
                counter!(name, "dimension" => dimension.clone()).absolute(*units);
            }
        }
        for ((dimension, reason), units) in &t.written_off {
            counter!(
                "marketgate_metering_written_off_units_total",
                "dimension" => dimension.clone(),
                "reason" => *reason
            )
            .absolute(*units);
        }
        for ((operation, outcome), calls) in &t.calls {
            counter!(
                "marketgate_aws_calls_total",
                "operation" => *operation,
                "outcome" => *outcome
            )
            .absolute(*calls);
        }
        counter!("marketgate_metering_checkpoints_total").absolute(t.checkpoints);
        counter!("marketgate_journal_failures_total").absolute(t.journal_failures);
        if let Some(secs) = t.startup {
            gauge!("marketgate_startup_verification_duration_seconds").set(secs);
        }
        for (state, name) in RUN_STATES {
            gauge!("marketgate_runtime_state", "state" => name).set(flag(status.state == state));
        }
        for key in &degraded {
            t.degraded.insert(key);
        }
        for key in &t.degraded {
            gauge!("marketgate_degraded", "reason" => *key).set(flag(degraded.contains(key)));
        }
        if let Some(m) = &status.metering {
            let mut outstanding: BTreeMap<String, u64> = status
                .dimensions
                .iter()
                .map(|d| ((*d).to_owned(), 0))
                .collect();
            for (d, units) in &m.unreported {
                *outstanding.entry(d.clone()).or_default() += units;
            }
            for r in &m.pending {
                *outstanding.entry(r.dimension.clone()).or_default() += u64::from(r.quantity);
            }
            t.dimensions.extend(outstanding.keys().cloned());
            for d in &t.dimensions {
                gauge!("marketgate_metering_outstanding_units", "dimension" => d.clone())
                    .set(float(outstanding.get(d).copied().unwrap_or(0)));
            }
            gauge!("marketgate_metering_pending_records").set(float(m.pending.len() as u64));
            gauge!("marketgate_metering_oldest_unreported_age_seconds")
                .set(float(m.oldest_unreported_secs.unwrap_or(0)));
            gauge!("marketgate_metering_overdue_seconds").set(float(m.overdue_secs.unwrap_or(0)));
            gauge!("marketgate_metering_max_unreported_seconds").set(float(m.max_unreported_secs));
            gauge!("marketgate_metering_reporting_blocked").set(flag(m.reporting_blocked));
            gauge!("marketgate_journal_writable").set(flag(m.journal.is_some()));
            gauge!("marketgate_journal_damaged").set(flag(m.journal_damage.is_some()));
        }
        if let Some(l) = &status.license {
            for (state, name) in LEASE_STATES {
                gauge!("marketgate_license_lease_state", "state" => name)
                    .set(flag(l.state == state));
            }
            gauge!("marketgate_license_deadline_timestamp_seconds")
                .set(float(l.deadline.unwrap_or(0)));
            gauge!("marketgate_license_extension_failures").set(f64::from(l.failed_attempts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{Delivery, Retry};

    fn failure(code: Option<&str>, status: Option<u16>, retry: Retry) -> AwsFailure {
        AwsFailure {
            operation: "MeterUsage",
            code: code.map(str::to_owned),
            message: "m".to_owned(),
            status,
            retry,
            delivery: Delivery::Answered,
        }
    }

    #[test]
    fn outcomes_are_a_handful_of_classes_never_the_error_text() {
        let cases = [
            (
                Some("ThrottlingException"),
                Some(400),
                Retry::Transient,
                "throttled",
            ),
            (None, Some(429), Retry::Transient, "throttled"),
            (
                Some("AccessDeniedException"),
                Some(400),
                Retry::Permanent,
                "access_denied",
            ),
            (None, Some(403), Retry::Permanent, "access_denied"),
            (
                Some("ExpiredTokenException"),
                Some(400),
                Retry::Permanent,
                "access_denied",
            ),
            (
                Some("InternalServiceErrorException"),
                Some(500),
                Retry::Transient,
                "server_error",
            ),
            (None, Some(502), Retry::Transient, "server_error"),
            (
                Some("DuplicateRequestException"),
                Some(400),
                Retry::Permanent,
                "rejected",
            ),
            (
                Some("CustomerNotEntitledException"),
                Some(400),
                Retry::Permanent,
                "rejected",
            ),
            (None, None, Retry::Transient, "network"),
            (None, None, Retry::Permanent, "other"),
            (
                Some("marketgate:NoCredentials"),
                None,
                Retry::Permanent,
                "credentials",
            ),
            (
                Some("marketgate:UntrustedCertificate"),
                None,
                Retry::Transient,
                "untrusted_peer",
            ),
        ];
        for (code, status, retry, expected) in cases {
            let f = failure(code, status, retry);
            assert_eq!(outcome(Err(&f)), expected, "{f:?}");
        }
        assert_eq!(outcome(Ok(())), "ok");
    }
}
