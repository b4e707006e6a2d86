//! Fault injection: make an operation throttle, fail, slow down or drop the
//! connection, for the next N calls or with a probability.
//!
//! Faults apply after authentication and before the request is read, like an
//! overloaded or failing AWS front end, so a faulted call changes no state.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids;
use crate::operation::{Operation, Service};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Metering's `ThrottlingException` (HTTP 400), which the AWS SDKs retry.
    Throttling,
    /// License Manager's `RateLimitExceededException` (HTTP 400), which the
    /// AWS SDKs do not retry.
    RateLimitExceeded,
    /// The service's server fault, HTTP 500: Metering's
    /// `InternalServiceErrorException`, License Manager's
    /// `ServerInternalException`.
    InternalError,
    /// The response is delayed by this long; the call then proceeds (or meets
    /// another fault).
    Latency(Duration),
    /// The connection is closed without a response.
    DropConnection,
}

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// On each of the next N calls of the operation, then never again.
    NextCalls(u32),
    /// On each call with this probability (0.0 to 1.0).
    Probability(f64),
}

/// The longest latency that can be injected; longer would only hang tests.
const MAX_LATENCY: Duration = Duration::from_mins(10);

/// An injected fault as the inspection API shows and accepts it.
///
/// ```json
/// {"operation": "MeterUsage", "fault": "Throttling", "nextCalls": 2}
/// {"operation": "CheckoutLicense", "fault": "Latency", "latencyMs": 250, "probability": 0.5}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// Set by the simulator; ignored on input.
    #[serde(default)]
    pub id: u64,
    /// The operation it applies to.
    pub operation: Operation,
    /// `Throttling`, `RateLimitExceeded`, `InternalError`, `Latency` or
    /// `DropConnection`.
    pub fault: FaultKind,
    /// The delay of a `Latency` fault, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// For a `NextCalls` trigger: how many more calls it fires on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_calls: Option<u32>,
    /// For a `Probability` trigger: the chance per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// How often it has fired; set by the simulator.
    #[serde(default)]
    pub fired: u64,
}

/// The kind of a [`Fault`], without its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// [`Fault::Throttling`].
    Throttling,
    /// [`Fault::RateLimitExceeded`].
    RateLimitExceeded,
    /// [`Fault::InternalError`].
    InternalError,
    /// [`Fault::Latency`].
    Latency,
    /// [`Fault::DropConnection`].
    DropConnection,
}

impl FaultRule {
    /// Checks a rule and builds it from its parts.
    ///
    /// # Errors
    /// [`Error::Fault`] when the fault does not exist for the operation's
    /// service (Metering throttles with `ThrottlingException`, License
    /// Manager with `RateLimitExceededException`) or a parameter is out of
    /// range.
    pub fn new(operation: Operation, fault: Fault, trigger: Trigger) -> Result<Self, Error> {
        let (kind, latency_ms) = match fault {
            Fault::Throttling => (FaultKind::Throttling, None),
            Fault::RateLimitExceeded => (FaultKind::RateLimitExceeded, None),
            Fault::InternalError => (FaultKind::InternalError, None),
            Fault::DropConnection => (FaultKind::DropConnection, None),
            Fault::Latency(d) => {
                if d > MAX_LATENCY {
                    return Err(Error::Fault(format!(
                        "latency {d:?} is longer than the {MAX_LATENCY:?} limit"
                    )));
                }
                (
                    FaultKind::Latency,
                    Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                )
            }
        };
        match (kind, operation.service()) {
            (FaultKind::Throttling, Service::LicenseManager) => {
                return Err(Error::Fault(format!(
                    "{operation} is a License Manager operation, which throttles with \
                     RateLimitExceededException: use Fault::RateLimitExceeded"
                )));
            }
            (FaultKind::RateLimitExceeded, Service::Metering) => {
                return Err(Error::Fault(format!(
                    "{operation} is a Metering operation, which throttles with \
                     ThrottlingException: use Fault::Throttling"
                )));
            }
            _ => {}
        }
        let (next_calls, probability) = match trigger {
            Trigger::NextCalls(0) => {
                return Err(Error::Fault("NextCalls(0) would never fire".to_owned()));
            }
            Trigger::NextCalls(n) => (Some(n), None),
            Trigger::Probability(p) if (0.0..=1.0).contains(&p) => (None, Some(p)),
            Trigger::Probability(p) => {
                return Err(Error::Fault(format!(
                    "probability {p} is not between 0.0 and 1.0"
                )));
            }
        };
        Ok(Self {
            id: 0,
            operation,
            fault: kind,
            latency_ms,
            next_calls,
            probability,
            fired: 0,
        })
    }

    /// Rebuilds a rule received over the inspection API, checking it as
    /// [`FaultRule::new`] does.
    ///
    /// # Errors
    /// As [`FaultRule::new`], and when the parameters do not fit the kind.
    pub fn validated(self) -> Result<Self, Error> {
        let fault = match (self.fault, self.latency_ms) {
            (FaultKind::Latency, Some(ms)) => Fault::Latency(Duration::from_millis(ms)),
            (FaultKind::Latency, None) => {
                return Err(Error::Fault("a Latency fault needs latencyMs".to_owned()));
            }
            (_, Some(_)) => {
                return Err(Error::Fault(
                    "only Latency faults take latencyMs".to_owned(),
                ));
            }
            (FaultKind::Throttling, None) => Fault::Throttling,
            (FaultKind::RateLimitExceeded, None) => Fault::RateLimitExceeded,
            (FaultKind::InternalError, None) => Fault::InternalError,
            (FaultKind::DropConnection, None) => Fault::DropConnection,
        };
        let trigger = match (self.next_calls, self.probability) {
            (Some(n), None) => Trigger::NextCalls(n),
            (None, Some(p)) => Trigger::Probability(p),
            _ => {
                return Err(Error::Fault(
                    "give exactly one of nextCalls or probability".to_owned(),
                ));
            }
        };
        Self::new(self.operation, fault, trigger)
    }

    /// Whether the rule fires on this call; consumes one of its next calls.
    fn fires(&mut self) -> bool {
        let fire = match (&mut self.next_calls, self.probability) {
            (Some(n), _) if *n > 0 => {
                *n -= 1;
                true
            }
            (_, Some(p)) => ids::unit_interval() < p,
            _ => false,
        };
        if fire {
            self.fired += 1;
        }
        fire
    }

    fn exhausted(&self) -> bool {
        self.next_calls == Some(0)
    }
}

/// What the faults decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// Delay before answering.
    pub(crate) latency: Duration,
    /// The error or drop that replaces the answer, if any.
    pub(crate) action: Option<Action>,
}

/// A fault that replaces the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The service's throttling error.
    Throttle,
    /// The service's HTTP 500 error.
    Internal,
    /// Close the connection without answering.
    Drop,
}

/// The injected faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<(u64, Vec<FaultRule>)>,
}

impl Faults {
    fn rules(&self) -> std::sync::MutexGuard<'_, (u64, Vec<FaultRule>)> {
        // Each mutation leaves the list consistent, so a poisoned lock is safe.
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a checked rule and returns its id.
    pub(crate) fn add(&self, mut rule: FaultRule) -> u64 {
        let mut guard = self.rules();
        guard.0 += 1;
        rule.id = guard.0;
        rule.fired = 0;
        guard.1.push(rule);
        guard.0
    }

    /// Removes every rule.
    pub(crate) fn clear(&self) {
        self.rules().1.clear();
    }

    /// The active rules.
    pub(crate) fn list(&self) -> Vec<FaultRule> {
        self.rules().1.clone()
    }

    /// Rolls the rules for one call of `operation`. Latencies add up; the
    /// first replacing fault that fires wins and later ones are not consumed.
    pub(crate) fn decide(&self, operation: Operation) -> Decision {
        let mut decision = Decision::default();
        let mut guard = self.rules();
        for rule in guard.1.iter_mut().filter(|r| r.operation == operation) {
            let action = match rule.fault {
                FaultKind::Latency => None,
                FaultKind::Throttling | FaultKind::RateLimitExceeded => Some(Action::Throttle),
                FaultKind::InternalError => Some(Action::Internal),
                FaultKind::DropConnection => Some(Action::Drop),
            };
            if action.is_some() && decision.action.is_some() {
                continue;
            }
            if rule.fires() {
                match action {
                    Some(action) => decision.action = Some(action),
                    None => {
                        decision.latency += Duration::from_millis(rule.latency_ms.unwrap_or(0));
                    }
                }
            }
        }
        guard.1.retain(|r| !r.exhausted());
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(op: Operation, fault: Fault, trigger: Trigger) -> FaultRule {
        FaultRule::new(op, fault, trigger).expect("valid rule")
    }

    #[test]
    fn next_calls_fire_then_expire() {
        let faults = Faults::default();
        faults.add(rule(
            Operation::MeterUsage,
            Fault::Throttling,
            Trigger::NextCalls(2),
        ));
        assert_eq!(faults.decide(Operation::RegisterUsage).action, None);
        assert_eq!(
            faults.decide(Operation::MeterUsage).action,
            Some(Action::Throttle)
        );
        assert_eq!(
            faults.decide(Operation::MeterUsage).action,
            Some(Action::Throttle)
        );
        assert_eq!(faults.decide(Operation::MeterUsage).action, None);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn latency_adds_and_first_error_wins_without_consuming_later_ones() {
        let faults = Faults::default();
        let op = Operation::CheckoutLicense;
        faults.add(rule(
            op,
            Fault::Latency(Duration::from_millis(30)),
            Trigger::NextCalls(1),
        ));
        faults.add(rule(
            op,
            Fault::Latency(Duration::from_millis(20)),
            Trigger::Probability(1.0),
        ));
        faults.add(rule(op, Fault::InternalError, Trigger::NextCalls(1)));
        faults.add(rule(op, Fault::DropConnection, Trigger::NextCalls(1)));
        let first = faults.decide(op);
        assert_eq!(first.latency, Duration::from_millis(50));
        assert_eq!(first.action, Some(Action::Internal));
        let second = faults.decide(op);
        assert_eq!(second.latency, Duration::from_millis(20));
        assert_eq!(second.action, Some(Action::Drop));
        assert_eq!(faults.decide(op).action, None);
    }

    #[test]
    fn probability_zero_never_fires_and_one_always_does() {
        let faults = Faults::default();
        faults.add(rule(
            Operation::GetLicense,
            Fault::InternalError,
            Trigger::Probability(0.0),
        ));
        faults.add(rule(
            Operation::ListReceivedLicenses,
            Fault::DropConnection,
            Trigger::Probability(1.0),
        ));
        for _ in 0..100 {
            assert_eq!(faults.decide(Operation::GetLicense).action, None);
            assert_eq!(
                faults.decide(Operation::ListReceivedLicenses).action,
                Some(Action::Drop)
            );
        }
        let fired: Vec<u64> = faults.list().iter().map(|r| r.fired).collect();
        assert_eq!(fired, [0, 100]);
    }

    #[test]
    fn throttling_must_match_the_service() {
        let err = FaultRule::new(
            Operation::CheckoutLicense,
            Fault::Throttling,
            Trigger::NextCalls(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("RateLimitExceeded"), "{err}");
        let err = FaultRule::new(
            Operation::MeterUsage,
            Fault::RateLimitExceeded,
            Trigger::NextCalls(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Fault::Throttling"), "{err}");
        assert!(
            FaultRule::new(
                Operation::MeterUsage,
                Fault::Throttling,
                Trigger::NextCalls(0)
            )
            .is_err()
        );
        assert!(
            FaultRule::new(
                Operation::MeterUsage,
                Fault::Throttling,
                Trigger::Probability(1.5)
            )
            .is_err()
        );
        assert!(
            FaultRule::new(
                Operation::MeterUsage,
                Fault::Throttling,
                Trigger::Probability(f64::NAN)
            )
            .is_err()
        );
    }

    #[test]
    fn json_rules_are_validated() {
        let parse = |text: &str| {
            serde_json::from_str::<FaultRule>(text)
                .map_err(|e| e.to_string())
                .and_then(|r| r.validated().map_err(|e| e.to_string()))
        };
        let ok = parse(
            r#"{"operation": "MeterUsage", "fault": "Latency", "latencyMs": 100, "nextCalls": 1}"#,
        )
        .expect("valid");
        assert_eq!(ok.latency_ms, Some(100));
        assert!(
            parse(r#"{"operation": "MeterUsage", "fault": "Latency", "nextCalls": 1}"#).is_err()
        );
        assert!(parse(r#"{"operation": "MeterUsage", "fault": "Throttling"}"#).is_err());
        assert!(
            parse(r#"{"operation": "MeterUsage", "fault": "Throttling", "nextCalls": 1, "probability": 0.5}"#)
                .is_err()
        );
        assert!(parse(r#"{"operation": "Nope", "fault": "Throttling", "nextCalls": 1}"#).is_err());
    }
}
