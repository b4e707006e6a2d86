//! Fault injection: make an operation throttle, fail, slow down, drop the
//! connection or lose its response, for the next N calls or with a
//! probability, for every caller or for one task.
//!
//! The simulator tells tasks apart by the access key id their requests are
//! signed with, so a rule [`FaultRule::for_task`] fires only on that task's
//! calls: one replica of a service can lose its connection while the others
//! carry on.
//!
//! Faults are decided after authentication, and the request body is read
//! before any of them answers, so the call log shows what was sent. Most
//! faults answer instead of the operation, like an overloaded or failing AWS
//! front end, and change no state; [`Fault::StoreThenDrop`] and
//! [`Fault::ServerError`] with `stored: true` run the operation first, like a
//! response lost on its way back.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids;
use crate::operation::{Operation, Service};

/// What goes wrong.
///
/// ```
/// use marketgate_simulator::{Fault, FaultRule, Operation, Trigger};
///
/// // The usage record is stored, then the response is lost.
/// FaultRule::new(Operation::MeterUsage, Fault::StoreThenDrop, Trigger::NextCalls(1))?;
/// // The credentials have expired.
/// let expired = Fault::Error("ExpiredTokenException".to_owned());
/// FaultRule::new(Operation::MeterUsage, expired, Trigger::NextCalls(1))?;
/// // A load balancer answers 503 after the record was stored.
/// let lost = Fault::ServerError { status: 503, stored: true };
/// FaultRule::new(Operation::MeterUsage, lost, Trigger::NextCalls(1))?;
/// # Ok::<(), marketgate_simulator::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Metering's `ThrottlingException` (HTTP 400), which the AWS SDKs retry.
    Throttling,
    /// License Manager's `RateLimitExceededException` (HTTP 400), which the
    /// AWS SDKs do not retry.
    RateLimitExceeded,
    /// The service's server fault, HTTP 500: Metering's
    /// `InternalServiceErrorException`, License Manager's
    /// `ServerInternalException`. The same answer as
    /// `ServerError { status: 500, stored: false }`.
    InternalError,
    /// The response is delayed by this long; the call then proceeds (or meets
    /// another fault).
    Latency(Duration),
    /// The connection is closed without a response; the operation does not
    /// run.
    DropConnection,
    /// The operation runs in full (a `MeterUsage` record or a
    /// `CheckoutLicense` consumption is stored), then the connection is
    /// closed without a response, as if the response was lost.
    StoreThenDrop,
    /// The named error, with the HTTP status AWS answers it with, instead of
    /// running the operation: any error the operation's model declares
    /// ([`Operation::declared_errors`]) or one of the common
    /// [`ACCESS_ERRORS`](crate::ACCESS_ERRORS); [`Operation::injectable_errors`]
    /// lists them with their statuses.
    Error(String),
    /// An HTTP 500, 502, 503 or 504. With `stored: true` the operation runs
    /// first (its effect is kept) and the error replaces its answer; with
    /// `stored: false` it does not run. A 500 carries the service's modelled
    /// server fault, as [`Fault::InternalError`]; 502, 503 and 504 carry a
    /// load balancer's HTML page, which no model describes.
    ServerError {
        /// 500, 502, 503 or 504.
        status: u16,
        /// Whether the operation runs (and stores its effect) first.
        stored: bool,
    },
}

impl Fault {
    /// The fault's kind, without its parameters.
    #[must_use]
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::Throttling => FaultKind::Throttling,
            Self::RateLimitExceeded => FaultKind::RateLimitExceeded,
            Self::InternalError => FaultKind::InternalError,
            Self::Latency(_) => FaultKind::Latency,
            Self::DropConnection => FaultKind::DropConnection,
            Self::StoreThenDrop => FaultKind::StoreThenDrop,
            Self::Error(_) => FaultKind::Error,
            Self::ServerError { .. } => FaultKind::ServerError,
        }
    }
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

/// The statuses a [`Fault::ServerError`] can answer with: the service's own
/// server fault (500) and what a load balancer in front of it answers when the
/// service behind it fails (502), is overloaded (503) or too slow (504).
const SERVER_ERROR_STATUSES: [u16; 4] = [500, 502, 503, 504];

/// An injected fault as the inspection API shows and accepts it.
///
/// ```json
/// {"operation": "MeterUsage", "fault": "Throttling", "nextCalls": 2}
/// {"operation": "CheckoutLicense", "fault": "Latency", "latencyMs": 250, "probability": 0.5}
/// {"operation": "MeterUsage", "fault": "StoreThenDrop", "nextCalls": 1}
/// {"operation": "MeterUsage", "fault": "Error", "code": "AccessDeniedException", "nextCalls": 1}
/// {"operation": "MeterUsage", "fault": "ServerError", "status": 503, "stored": true, "nextCalls": 1}
/// {"operation": "ExtendLicenseConsumption", "fault": "DropConnection", "probability": 1.0, "task": "AKIDA"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// Set by the simulator; ignored on input.
    #[serde(default)]
    pub id: u64,
    /// The operation it applies to.
    pub operation: Operation,
    /// The task (`SigV4` access key id) whose calls it applies to; `None`
    /// for every caller. Calls of other tasks neither fire nor consume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `Throttling`, `RateLimitExceeded`, `InternalError`, `Latency`,
    /// `DropConnection`, `StoreThenDrop`, `Error` or `ServerError`.
    pub fault: FaultKind,
    /// The delay of a `Latency` fault, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The error code of an `Error` fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The HTTP status of a `ServerError` fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether a `ServerError` fault runs the operation first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<bool>,
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

/// The kind of a [`Fault`], without its parameters.
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
    /// [`Fault::StoreThenDrop`].
    StoreThenDrop,
    /// [`Fault::Error`].
    Error,
    /// [`Fault::ServerError`].
    ServerError,
}

impl FaultRule {
    /// Checks a rule and builds it from its parts.
    ///
    /// # Errors
    /// [`Error::Fault`] when the fault does not exist for the operation
    /// (Metering throttles with `ThrottlingException`, License Manager with
    /// `RateLimitExceededException`; [`Fault::Error`] takes only the names
    /// [`Operation::injectable_errors`] lists) or a parameter is out of range
    /// (a latency above ten minutes, a [`Fault::ServerError`] status other
    /// than 500, 502, 503 and 504).
    pub fn new(operation: Operation, fault: Fault, trigger: Trigger) -> Result<Self, Error> {
        let kind = fault.kind();
        let mut rule = Self {
            id: 0,
            operation,
            task: None,
            fault: kind,
            latency_ms: None,
            code: None,
            status: None,
            stored: None,
            next_calls: None,
            probability: None,
            fired: 0,
        };
        match fault {
            Fault::Throttling if operation.service() == Service::LicenseManager => {
                return Err(Error::Fault(format!(
                    "{operation} is a License Manager operation, which throttles with \
                     RateLimitExceededException: use Fault::RateLimitExceeded"
                )));
            }
            Fault::RateLimitExceeded if operation.service() == Service::Metering => {
                return Err(Error::Fault(format!(
                    "{operation} is a Metering operation, which throttles with \
                     ThrottlingException: use Fault::Throttling"
                )));
            }
            Fault::Latency(d) if d > MAX_LATENCY => {
                return Err(Error::Fault(format!(
                    "latency {d:?} is longer than the {MAX_LATENCY:?} limit"
                )));
            }
            Fault::Latency(d) => {
                rule.latency_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            Fault::Error(code) => {
                if operation.error_status(&code).is_none() {
                    let names: Vec<&str> = operation
                        .injectable_errors()
                        .into_iter()
                        .map(|(name, _)| name)
                        .collect();
                    return Err(Error::Fault(format!(
                        "{operation} cannot answer {code:?}; give one of {}",
                        names.join(", ")
                    )));
                }
                rule.code = Some(code);
            }
            Fault::ServerError { status, stored } => {
                if !SERVER_ERROR_STATUSES.contains(&status) {
                    return Err(Error::Fault(format!(
                        "a ServerError fault answers HTTP 500, 502, 503 or 504, not {status}"
                    )));
                }
                rule.status = Some(status);
                rule.stored = Some(stored);
            }
            Fault::Throttling
            | Fault::RateLimitExceeded
            | Fault::InternalError
            | Fault::DropConnection
            | Fault::StoreThenDrop => {}
        }
        match trigger {
            Trigger::NextCalls(0) => {
                return Err(Error::Fault("NextCalls(0) would never fire".to_owned()));
            }
            Trigger::NextCalls(n) => rule.next_calls = Some(n),
            Trigger::Probability(p) if (0.0..=1.0).contains(&p) => rule.probability = Some(p),
            Trigger::Probability(p) => {
                return Err(Error::Fault(format!(
                    "probability {p} is not between 0.0 and 1.0"
                )));
            }
        }
        Ok(rule)
    }

    /// Limits the rule to the calls of one task, named by the access key id
    /// its requests are signed with.
    ///
    /// ```
    /// use marketgate_simulator::{Fault, FaultRule, Operation, Trigger};
    ///
    /// // Only AKIDA's next extension loses its connection.
    /// let rule = FaultRule::new(
    ///     Operation::ExtendLicenseConsumption,
    ///     Fault::DropConnection,
    ///     Trigger::NextCalls(1),
    /// )?
    /// .for_task("AKIDA");
    /// assert_eq!(rule.task.as_deref(), Some("AKIDA"));
    /// # Ok::<(), marketgate_simulator::Error>(())
    /// ```
    #[must_use]
    pub fn for_task(mut self, access_key_id: impl Into<String>) -> Self {
        self.task = Some(access_key_id.into());
        self
    }

    /// Rebuilds a rule received over the inspection API, checking it as
    /// [`FaultRule::new`] does.
    ///
    /// # Errors
    /// As [`FaultRule::new`], when the parameters do not fit the kind, and
    /// when `task` is empty (no signed request has an empty access key id).
    pub fn validated(self) -> Result<Self, Error> {
        if self.task.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Fault(
                "task must name an access key id, not be empty".to_owned(),
            ));
        }
        let fault = self.to_fault()?;
        let trigger = match (self.next_calls, self.probability) {
            (Some(n), None) => Trigger::NextCalls(n),
            (None, Some(p)) => Trigger::Probability(p),
            _ => {
                return Err(Error::Fault(
                    "give exactly one of nextCalls or probability".to_owned(),
                ));
            }
        };
        let rule = Self::new(self.operation, fault, trigger)?;
        Ok(match self.task {
            Some(task) => rule.for_task(task),
            None => rule,
        })
    }

    /// Whether the rule applies to a call of `operation` by the task
    /// `access_key_id`.
    fn applies_to(&self, operation: Operation, access_key_id: &str) -> bool {
        self.operation == operation && self.task.as_deref().is_none_or(|t| t == access_key_id)
    }

    /// The fault the rule describes, if its parameters fit its kind.
    fn to_fault(&self) -> Result<Fault, Error> {
        let parameters = [
            ("latencyMs", self.latency_ms.is_some(), FaultKind::Latency),
            ("code", self.code.is_some(), FaultKind::Error),
            ("status", self.status.is_some(), FaultKind::ServerError),
            ("stored", self.stored.is_some(), FaultKind::ServerError),
        ];
        if let Some((name, _, owner)) = parameters
            .iter()
            .find(|(_, given, owner)| *given && *owner != self.fault)
        {
            return Err(Error::Fault(format!(
                "only {owner:?} faults take {name}, not {:?}",
                self.fault
            )));
        }
        let missing = |what: &str| Error::Fault(format!("a {:?} fault needs {what}", self.fault));
        Ok(match self.fault {
            FaultKind::Throttling => Fault::Throttling,
            FaultKind::RateLimitExceeded => Fault::RateLimitExceeded,
            FaultKind::InternalError => Fault::InternalError,
            FaultKind::DropConnection => Fault::DropConnection,
            FaultKind::StoreThenDrop => Fault::StoreThenDrop,
            FaultKind::Latency => Fault::Latency(Duration::from_millis(
                self.latency_ms.ok_or_else(|| missing("latencyMs"))?,
            )),
            FaultKind::Error => Fault::Error(self.code.clone().ok_or_else(|| missing("code"))?),
            FaultKind::ServerError => Fault::ServerError {
                status: self.status.ok_or_else(|| missing("status"))?,
                stored: self.stored.ok_or_else(|| missing("stored"))?,
            },
        })
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
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Decision {
    /// Delay before answering.
    pub(crate) latency: Duration,
    /// The fault that decides the answer, if any: never a `Latency`.
    pub(crate) fault: Option<Fault>,
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

    /// Removes the rule with this id; whether there was one.
    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut guard = self.rules();
        let before = guard.1.len();
        guard.1.retain(|r| r.id != id);
        guard.1.len() != before
    }

    /// Removes every rule.
    pub(crate) fn clear(&self) {
        self.rules().1.clear();
    }

    /// The active rules.
    pub(crate) fn list(&self) -> Vec<FaultRule> {
        self.rules().1.clone()
    }

    /// Rolls the rules for one call of `operation` by the task
    /// `access_key_id`: rules for every caller and for that task. Latencies
    /// add up; the first answer-deciding fault that fires wins and later ones
    /// are not consumed.
    pub(crate) fn decide(&self, operation: Operation, access_key_id: &str) -> Decision {
        let mut decision = Decision::default();
        let mut guard = self.rules();
        for rule in guard
            .1
            .iter_mut()
            .filter(|r| r.applies_to(operation, access_key_id))
        {
            // Rules are checked when added, so this always succeeds.
            let Ok(fault) = rule.to_fault() else {
                continue;
            };
            let decides = !matches!(fault, Fault::Latency(_));
            if decides && decision.fault.is_some() {
                continue;
            }
            if rule.fires() {
                match fault {
                    Fault::Latency(delay) => decision.latency += delay,
                    fault => decision.fault = Some(fault),
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

    const TASK: &str = "AKIDTASK";

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
        assert_eq!(faults.decide(Operation::RegisterUsage, TASK).fault, None);
        assert_eq!(
            faults.decide(Operation::MeterUsage, TASK).fault,
            Some(Fault::Throttling)
        );
        assert_eq!(
            faults.decide(Operation::MeterUsage, TASK).fault,
            Some(Fault::Throttling)
        );
        assert_eq!(faults.decide(Operation::MeterUsage, TASK).fault, None);
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
        let first = faults.decide(op, TASK);
        assert_eq!(first.latency, Duration::from_millis(50));
        assert_eq!(first.fault, Some(Fault::InternalError));
        let second = faults.decide(op, TASK);
        assert_eq!(second.latency, Duration::from_millis(20));
        assert_eq!(second.fault, Some(Fault::DropConnection));
        assert_eq!(faults.decide(op, TASK).fault, None);
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
            assert_eq!(faults.decide(Operation::GetLicense, TASK).fault, None);
            assert_eq!(
                faults.decide(Operation::ListReceivedLicenses, TASK).fault,
                Some(Fault::DropConnection)
            );
        }
        let fired: Vec<u64> = faults.list().iter().map(|r| r.fired).collect();
        assert_eq!(fired, [0, 100]);
    }

    #[test]
    fn a_task_rule_fires_and_counts_only_on_that_tasks_calls() {
        let faults = Faults::default();
        let op = Operation::ExtendLicenseConsumption;
        faults.add(rule(op, Fault::DropConnection, Trigger::NextCalls(2)).for_task("AKIDA"));
        for _ in 0..5 {
            assert_eq!(faults.decide(op, "AKIDB").fault, None);
        }
        assert_eq!(faults.list()[0].next_calls, Some(2), "B consumed nothing");
        assert_eq!(
            faults.decide(op, "AKIDA").fault,
            Some(Fault::DropConnection)
        );
        assert_eq!(faults.decide(Operation::GetLicense, "AKIDA").fault, None);
        assert_eq!(
            faults.decide(op, "AKIDA").fault,
            Some(Fault::DropConnection)
        );
        assert_eq!(faults.decide(op, "AKIDA").fault, None);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn rules_are_removed_by_id() {
        let faults = Faults::default();
        let op = Operation::GetLicense;
        let first = faults.add(rule(op, Fault::InternalError, Trigger::Probability(1.0)));
        let second = faults.add(rule(op, Fault::DropConnection, Trigger::Probability(1.0)));
        assert!(faults.remove(first));
        assert!(!faults.remove(first), "already removed");
        assert_eq!(faults.decide(op, TASK).fault, Some(Fault::DropConnection));
        assert!(faults.remove(second));
        assert_eq!(faults.decide(op, TASK).fault, None);
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
    fn every_fault_round_trips_through_its_rule() {
        let faults = [
            Fault::Throttling,
            Fault::InternalError,
            Fault::Latency(Duration::from_millis(5)),
            Fault::DropConnection,
            Fault::StoreThenDrop,
            Fault::Error("AccessDeniedException".to_owned()),
            Fault::ServerError {
                status: 504,
                stored: true,
            },
        ];
        for fault in faults {
            let rule = rule(Operation::MeterUsage, fault.clone(), Trigger::NextCalls(1));
            assert_eq!(rule.fault, fault.kind());
            assert_eq!(rule.to_fault().ok(), Some(fault.clone()));
            let json = serde_json::to_string(&rule).expect("serializes");
            let back: FaultRule = serde_json::from_str(&json).expect("parses");
            assert_eq!(back.validated().ok(), Some(rule), "{json}");
        }
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

        let text = r#"{"operation":"ExtendLicenseConsumption","fault":"DropConnection","probability":1.0,"task":"AKIDA"}"#;
        let task = parse(text).expect("valid");
        assert_eq!(task.task.as_deref(), Some("AKIDA"));
        let json = serde_json::to_value(&task).expect("serializes");
        assert_eq!(json["task"], "AKIDA");
        let everyone = serde_json::to_value(&ok).expect("serializes");
        assert!(everyone.get("task").is_none(), "no task, no member");
        assert!(
            parse(r#"{"operation": "GetLicense", "fault": "DropConnection", "nextCalls": 1, "task": ""}"#)
                .is_err()
        );
    }
}
