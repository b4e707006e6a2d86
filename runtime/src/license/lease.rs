//! The lease: the License Manager consumption a contract process holds, and
//! the one deadline until which its features may be used.
//!
//! Pure state, no I/O and no clock: the driver ([`super::maintain`]) asks
//! [`Lease::next`] what to do at a monotonic instant, does it, and reports
//! AWS's answer. The rules (docs/contract.md, "The lease"):
//!
//! - **One deadline.** The consumption's `Expiration`, as AWS returns it on
//!   checkout and on every extension, minus [`Policy::margin`], on the
//!   monotonic clock. AWS's timestamps are mapped to it through the
//!   checkout: `IssuedAt` is AWS's clock when it served the checkout, which
//!   was no earlier than when the first request with its client token was
//!   sent, so the deadline never falls after the real expiry whatever this
//!   machine's wall clock says.
//!   No consumption lasts longer than [`Policy::ttl_cap`] from the request
//!   that made or extended it, whatever `Expiration` says.
//! - **Extensions** at half the time left (at most [`Policy::extend_every`]
//!   apart); after a failure, retried with jittered backoff within minutes;
//!   never scheduled past the deadline.
//! - **Revocation only at the deadline**, however many transient failures
//!   came before, or at once when AWS says the consumption no longer
//!   exists. Then the lease is lapsed: the consumption it had is extended if
//!   AWS still has it (the same seat), else a new checkout is tried with
//!   backoff until one succeeds, which restores the features.
//! - **A definitive answer ends the consumption at its deadline**: AWS
//!   refusing an extension, or a re-check finding the license no longer
//!   `AVAILABLE` or without an entitlement the consumption holds. The
//!   process keeps what it has until then (AWS: a buyer who unsubscribes may
//!   keep running what already runs); it then checks the consumption in and
//!   checks out anew, which grants what the license allows now, or nothing.

use std::time::{Duration, SystemTime};

use crate::aws::retry::Backoff;
use crate::aws::{AwsFailure, Delivery, Retry};
use crate::random::random_hex;

/// The timing rules of a lease.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Taken off the consumption's expiry to give the deadline: covers the
    /// revocation's own latency and clock drift.
    pub(crate) margin: Duration,
    /// The longest a consumption can last from the request that made or
    /// extended it (AWS: 60 minutes).
    pub(crate) ttl_cap: Duration,
    /// The longest time between extensions.
    pub(crate) extend_every: Duration,
    /// Interval of license re-checks (`GetLicense`).
    pub(crate) check_every: Duration,
    /// Delays between tries to extend after a failure.
    pub(crate) retry: Backoff,
    /// Delays between tries to check out again once lapsed.
    pub(crate) recover: Backoff,
}

/// What the driver is to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing until this monotonic instant.
    Wait(Duration),
    /// `ExtendLicenseConsumption` of this token.
    Extend(String),
    /// `GetLicense` of this license.
    Recheck(String),
    /// `CheckInLicense` of a consumption the lease is ending.
    CheckIn(String),
    /// `CheckoutLicense` with this client token.
    Checkout(String),
    /// The lease has ended (checked in at shutdown).
    Done,
}

/// A successful checkout.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) token: String,
    pub(crate) license_arn: String,
    pub(crate) allowed: Vec<String>,
    /// `IssuedAt` and `Expiration`, parsed when AWS sent them.
    pub(crate) issued_at: Option<SystemTime>,
    pub(crate) expiration: Option<SystemTime>,
    /// `Expiration` as AWS wrote it.
    pub(crate) expiration_text: String,
}

/// A successful extension.
#[derive(Debug, Clone)]
pub(crate) struct Extension {
    pub(crate) expiration: Option<SystemTime>,
    pub(crate) expiration_text: String,
}

/// When a request was sent: on the monotonic clock and on the wall clock
/// (the latter only maps `Expiration` when AWS sent no `IssuedAt`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) at: Duration,
    pub(crate) wall: SystemTime,
}

/// What a re-check found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recheck {
    /// The license's status (`AVAILABLE`, `EXPIRED`, ...).
    pub(crate) state: String,
    /// `Unit = None` entitlements the manifest maps that the license carries
    /// now (upgrades are granted at once: they hold no seat).
    pub(crate) present: Vec<String>,
    /// Entitlements the consumption holds that the license no longer has.
    pub(crate) missing: Vec<String>,
}

/// Why the runtime stops extending a consumption.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// AWS refused to extend it.
    Refused(String),
    /// A re-check found the license unusable or without what is held.
    Changed(String),
}

impl Ending {
    fn reason(&self) -> &str {
        match self {
            Ending::Refused(r) | Ending::Changed(r) => r,
        }
    }
}

#[derive(Debug, Clone)]
struct Held {
    token: String,
    license_arn: String,
    allowed: Vec<String>,
    present: Vec<String>,
    /// AWS's `IssuedAt` and when the checkout was sent.
    anchor: Option<(SystemTime, Duration)>,
    expiration: String,
    deadline: Duration,
    next_extend: Duration,
    failures: u32,
    last_error: Option<String>,
    extended_at: Option<SystemTime>,
    ending: Option<Ending>,
    /// When the features were (re)gained with this consumption.
    since: Duration,
}

#[derive(Debug, Clone)]
struct Lapsed {
    /// The consumption the lease had, while AWS may still have it: extended
    /// (it lapsed on failures) or checked in (the lease ended it), then
    /// forgotten.
    old: Option<Box<Held>>,
    license_arn: String,
    client_token: String,
    /// When the first checkout with `client_token` was sent: a retry with
    /// the same token may get the answer to that first request (AWS
    /// returns the consumption it already made), so only the first send
    /// may anchor a deadline.
    first_sent: Option<Sent>,
    /// A checkout with `client_token` may have been served: shutdown must
    /// find out (checking out again with the token) and check it in.
    checkout_tried: bool,
    next_attempt: Duration,
    failures: u32,
    /// Why the lease lapsed.
    reason: String,
    /// The last failure of recovering.
    last_error: Option<String>,
}

#[derive(Debug, Clone)]
enum Phase {
    Held(Box<Held>),
    Lapsed(Lapsed),
    Ended,
}

/// What a lease ended at shutdown may still hold with AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// A consumption (token, license) to check in.
    Consumption(String, String),
    /// A checkout whose answer never came: AWS may have made a consumption,
    /// which the same client token finds again.
    Checkout(String),
}

/// What [`crate::status`] shows of the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) state: crate::status::LeaseState,
    pub(crate) license_arn: String,
    /// The consumption token, shortened.
    pub(crate) consumption: Option<String>,
    pub(crate) expiration: Option<String>,
    /// Time left until the deadline.
    pub(crate) deadline_in: Option<Duration>,
    pub(crate) last_extended: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
    pub(crate) failures: u32,
    pub(crate) reason: Option<String>,
}

/// One License Manager consumption and its deadline.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    policy: Policy,
    phase: Phase,
    next_check: Duration,
    /// Lapses in a row, each soon after the features were regained.
    lapses: u32,
}

/// The token as `status()` shows it: enough to match a log line, not to use.
fn redact(token: &str) -> String {
    let head: String = token.chars().take(6).collect();
    format!("{head}…")
}

impl Lease {
    /// A lease on the consumption start-up checked out.
    pub(crate) fn new(policy: Policy, grant: Grant, sent: Sent) -> Self {
        let mut lease = Lease {
            policy,
            phase: Phase::Ended,
            next_check: sent.at.saturating_add(policy.check_every),
            lapses: 0,
        };
        lease.hold(grant, sent, sent.at);
        lease
    }

    fn hold(&mut self, grant: Grant, sent: Sent, now: Duration) {
        self.phase = Phase::Held(Box::new(held(&self.policy, grant, sent, now)));
    }

    /// What to do at `now`. Passing the deadline revokes (the lease lapses)
    /// before anything else is decided.
    pub(crate) fn next(&mut self, now: Duration) -> Step {
        if let Phase::Held(held) = &self.phase
            && now >= held.deadline
        {
            self.lapse(now);
        }
        if let Phase::Lapsed(lapsed) = &mut self.phase
            && lapsed.old.is_none()
            && now >= lapsed.next_attempt
        {
            lapsed.checkout_tried = true;
        }
        match &self.phase {
            Phase::Held(held) => {
                if held.ending.is_none() && now >= held.next_extend {
                    return Step::Extend(held.token.clone());
                }
                if now >= self.next_check {
                    return Step::Recheck(held.license_arn.clone());
                }
                let mut wake = held.deadline.min(self.next_check);
                if held.ending.is_none() {
                    wake = wake.min(held.next_extend);
                }
                Step::Wait(wake)
            }
            Phase::Lapsed(lapsed) if now >= lapsed.next_attempt => match &lapsed.old {
                Some(old) if old.ending.is_some() => Step::CheckIn(old.token.clone()),
                Some(old) => Step::Extend(old.token.clone()),
                None => Step::Checkout(lapsed.client_token.clone()),
            },
            Phase::Lapsed(lapsed) => Step::Wait(lapsed.next_attempt),
            Phase::Ended => Step::Done,
        }
    }

    /// The deadline passed (or AWS no longer has the consumption): every
    /// feature goes, and recovery starts at once.
    fn lapse(&mut self, now: Duration) {
        let Phase::Held(held) = std::mem::replace(&mut self.phase, Phase::Ended) else {
            return;
        };
        // A lease that lapses again at once (an answer whose deadline had
        // already passed) backs off instead of looping.
        self.lapses = if now.saturating_sub(held.since) < self.policy.margin {
            self.lapses.saturating_add(1)
        } else {
            0
        };
        let failures = self.lapses;
        let reason = match (&held.ending, &held.last_error) {
            (Some(ending), _) => format!("the license consumption ended: {}", ending.reason()),
            (None, Some(error)) => format!(
                "the license consumption could not be extended before its deadline ({} tries \
                 failed, the last: {error})",
                held.failures
            ),
            (None, None) => "the license consumption reached its deadline".to_owned(),
        };
        self.phase = Phase::Lapsed(Lapsed {
            license_arn: held.license_arn.clone(),
            old: Some(held),
            client_token: random_hex(32),
            first_sent: None,
            checkout_tried: false,
            next_attempt: if failures == 0 {
                now
            } else {
                now + self.policy.recover.delay(failures)
            },
            failures,
            reason,
            last_error: None,
        });
    }

    /// The deadline while features are held: the driver races every call
    /// against it, so revocation is on time even while a call hangs.
    pub(crate) fn deadline_pending(&self) -> Option<Duration> {
        match &self.phase {
            Phase::Held(held) => Some(held.deadline),
            Phase::Lapsed(_) | Phase::Ended => None,
        }
    }

    /// AWS's answer to extending `token`.
    pub(crate) fn extended(
        &mut self,
        token: &str,
        sent: Sent,
        now: Duration,
        answer: Result<Extension, AwsFailure>,
    ) {
        let policy = self.policy;
        match &mut self.phase {
            Phase::Held(held) if held.token == token => {
                if apply_extension(&policy, held, sent, now, answer) {
                    // It is gone: nothing to check in, no deadline to wait for.
                    self.lapse(now);
                    if let Phase::Lapsed(lapsed) = &mut self.phase {
                        lapsed.old = None;
                    }
                }
            }
            Phase::Lapsed(lapsed) if lapsed.old.as_ref().is_some_and(|o| o.token == token) => {
                match answer {
                    Ok(extension) => {
                        // AWS still had it: the same seat, never shared.
                        if let Some(mut old) = lapsed.old.take() {
                            old.ending = None;
                            // The deadline it had has passed; only this answer counts.
                            old.deadline = Duration::ZERO;
                            old.since = now;
                            apply_extension(&policy, &mut old, sent, now, Ok(extension));
                            self.phase = Phase::Held(old);
                        }
                    }
                    Err(failure) if failure.retry == Retry::Transient && !is_gone(&failure) => {
                        lapsed.failures += 1;
                        lapsed.last_error = Some(failure.to_string());
                        lapsed.next_attempt = now + policy.recover.delay(lapsed.failures);
                    }
                    Err(failure) if is_gone(&failure) => {
                        lapsed.last_error = Some(failure.to_string());
                        lapsed.old = None;
                        lapsed.next_attempt = now;
                    }
                    Err(failure) => {
                        // Refused but perhaps still held: check it in, so
                        // that the new checkout can have its seat.
                        lapsed.last_error = Some(failure.to_string());
                        if let Some(old) = &mut lapsed.old {
                            old.ending = Some(Ending::Refused(failure.to_string()));
                        }
                        lapsed.next_attempt = now;
                    }
                }
            }
            // An answer for a consumption the lease no longer has.
            Phase::Held(_) | Phase::Lapsed(_) | Phase::Ended => {}
        }
    }

    /// AWS's answer to checking in a consumption the lease ended.
    pub(crate) fn checked_in(
        &mut self,
        token: &str,
        now: Duration,
        answer: Result<(), AwsFailure>,
    ) {
        let policy = self.policy;
        if let Phase::Lapsed(lapsed) = &mut self.phase
            && lapsed.old.as_ref().is_some_and(|o| o.token == token)
        {
            match answer {
                Err(failure) if failure.retry == Retry::Transient && !is_gone(&failure) => {
                    lapsed.failures += 1;
                    lapsed.last_error = Some(failure.to_string());
                    lapsed.next_attempt = now + policy.recover.delay(lapsed.failures);
                }
                Ok(()) | Err(_) => {
                    lapsed.old = None;
                    lapsed.next_attempt = now;
                }
            }
        }
    }

    /// AWS's answer to a checkout while lapsed.
    pub(crate) fn checked_out(
        &mut self,
        client_token: &str,
        sent: Sent,
        now: Duration,
        answer: Result<Grant, AwsFailure>,
    ) {
        let policy = self.policy;
        let Phase::Lapsed(lapsed) = &mut self.phase else {
            return;
        };
        if lapsed.client_token != client_token {
            return;
        }
        let first_sent = *lapsed.first_sent.get_or_insert(sent);
        match answer {
            // The answer may be to the first of several requests under this
            // client token, so the consumption is timed from that first
            // send; and every extension is timed from the same anchor. An
            // answer that comes long after it would give a deadline that is
            // early for good (past, after a long outage: the lease would
            // lapse on every extension while holding the seat). Check that
            // consumption in and check out afresh, timed from a new send.
            Ok(grant) if now.saturating_sub(first_sent.at) > policy.margin => {
                let waited = now.saturating_sub(first_sent.at).as_secs();
                let mut stale = held(&policy, grant, first_sent, now);
                stale.ending = Some(Ending::Refused(format!(
                    "its checkout was answered {waited}s after it was first sent, too late to \
                     time the consumption from"
                )));
                lapsed.old = Some(Box::new(stale));
                lapsed.client_token = random_hex(32);
                lapsed.first_sent = None;
                lapsed.checkout_tried = false;
                lapsed.next_attempt = now;
            }
            Ok(grant) => {
                self.hold(grant, first_sent, now);
                self.next_check = now.saturating_add(policy.check_every);
            }
            Err(failure) => {
                lapsed.failures = lapsed.failures.saturating_add(1);
                lapsed.last_error = Some(failure.to_string());
                lapsed.next_attempt = now + policy.recover.delay(lapsed.failures);
                if failure.delivery == Delivery::Answered {
                    // Refused: nothing was made, so the next try starts afresh.
                    lapsed.client_token = random_hex(32);
                    lapsed.first_sent = None;
                    lapsed.checkout_tried = false;
                }
            }
        }
    }

    /// What a re-check of the license found (`None`: the re-check failed).
    pub(crate) fn rechecked(&mut self, now: Duration, found: Option<Recheck>) {
        self.next_check = now.saturating_add(self.policy.check_every);
        let (Phase::Held(held), Some(found)) = (&mut self.phase, found) else {
            return;
        };
        held.present = found.present;
        let change = if found.state != "AVAILABLE" {
            Some(format!("the license is {}", found.state))
        } else if !found.missing.is_empty() {
            Some(format!(
                "the license no longer has {}",
                found.missing.join(", ")
            ))
        } else {
            None
        };
        match (change, &held.ending) {
            (Some(change), None | Some(Ending::Changed(_))) => {
                held.ending = Some(Ending::Changed(change));
            }
            // Usable again, with everything held: keep extending.
            (None, Some(Ending::Changed(_))) => {
                held.ending = None;
                held.next_extend = now;
            }
            (_, _) => {}
        }
    }

    /// The entitlements granted now: what the checkout allowed plus
    /// `Unit = None` upgrades; `None` once lapsed.
    pub(crate) fn entitlements(&self) -> Option<Vec<String>> {
        match &self.phase {
            Phase::Held(held) => {
                let mut names = held.allowed.clone();
                for name in &held.present {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                Some(names)
            }
            Phase::Lapsed(_) | Phase::Ended => None,
        }
    }

    /// The entitlements the held consumption was allowed at checkout.
    pub(crate) fn allowed(&self) -> &[String] {
        match &self.phase {
            Phase::Held(held) => &held.allowed,
            Phase::Lapsed(_) | Phase::Ended => &[],
        }
    }

    /// Ends the lease for shutdown: what AWS may still hold for it.
    pub(crate) fn end(&mut self) -> Option<Leftover> {
        let phase = std::mem::replace(&mut self.phase, Phase::Ended);
        match phase {
            Phase::Held(held) => Some(Leftover::Consumption(held.token, held.license_arn)),
            Phase::Lapsed(Lapsed {
                old: Some(old),
                license_arn,
                ..
            }) => Some(Leftover::Consumption(old.token, license_arn)),
            Phase::Lapsed(Lapsed {
                checkout_tried: true,
                client_token,
                ..
            }) => Some(Leftover::Checkout(client_token)),
            Phase::Lapsed(_) | Phase::Ended => None,
        }
    }

    /// What `status()` shows, at monotonic time `now`.
    pub(crate) fn view(&self, now: Duration) -> Option<View> {
        use crate::status::LeaseState;
        match &self.phase {
            Phase::Held(held) => Some(View {
                state: if held.ending.is_some() {
                    LeaseState::Ending
                } else if held.failures > 0 {
                    LeaseState::HeldPastFailure
                } else {
                    LeaseState::Held
                },
                license_arn: held.license_arn.clone(),
                consumption: Some(redact(&held.token)),
                expiration: Some(held.expiration.clone()),
                deadline_in: Some(held.deadline.saturating_sub(now)),
                last_extended: held.extended_at,
                last_error: held.last_error.clone(),
                failures: held.failures,
                reason: held.ending.as_ref().map(|e| e.reason().to_owned()),
            }),
            Phase::Lapsed(lapsed) => Some(View {
                state: LeaseState::Lapsed,
                license_arn: lapsed.license_arn.clone(),
                consumption: lapsed.old.as_ref().map(|o| redact(&o.token)),
                expiration: lapsed.old.as_ref().map(|o| o.expiration.clone()),
                deadline_in: None,
                last_extended: lapsed.old.as_ref().and_then(|o| o.extended_at),
                last_error: lapsed.last_error.clone(),
                failures: lapsed.failures,
                reason: Some(lapsed.reason.clone()),
            }),
            Phase::Ended => None,
        }
    }
}

/// The deadline for a consumption that expires at `expiration` (AWS's
/// clock), made or extended by a request sent at `sent`.
/// The consumption `grant` made, timed from `sent`.
fn held(policy: &Policy, grant: Grant, sent: Sent, now: Duration) -> Held {
    let anchor = grant.issued_at.map(|issued| (issued, sent.at));
    let deadline = deadline(policy, sent, anchor, grant.expiration);
    Held {
        token: grant.token,
        license_arn: grant.license_arn,
        allowed: grant.allowed,
        present: Vec::new(),
        anchor,
        expiration: grant.expiration_text,
        deadline,
        next_extend: extend_after(policy, now, deadline),
        failures: 0,
        last_error: None,
        extended_at: None,
        ending: None,
        since: now,
    }
}

fn deadline(
    policy: &Policy,
    sent: Sent,
    anchor: Option<(SystemTime, Duration)>,
    expiration: Option<SystemTime>,
) -> Duration {
    let cap = sent.at + policy.ttl_cap;
    let expires = expiration.map(|exp| match anchor {
        Some((issued, checkout_sent)) => {
            checkout_sent + exp.duration_since(issued).unwrap_or_default()
        }
        None => sent.at + exp.duration_since(sent.wall).unwrap_or_default(),
    });
    expires
        .map_or(cap, |e| e.min(cap))
        .saturating_sub(policy.margin)
}

/// When to extend a consumption whose deadline is `deadline`: half the time
/// left, at most `extend_every` from now.
fn extend_after(policy: &Policy, now: Duration, deadline: Duration) -> Duration {
    now + (deadline.saturating_sub(now) / 2).min(policy.extend_every)
}

/// Applies an answer to extending `held`; true when AWS no longer has it.
fn apply_extension(
    policy: &Policy,
    held: &mut Held,
    sent: Sent,
    now: Duration,
    answer: Result<Extension, AwsFailure>,
) -> bool {
    match answer {
        Ok(extension) => {
            // A late answer never shortens what an earlier one granted.
            held.deadline =
                held.deadline
                    .max(deadline(policy, sent, held.anchor, extension.expiration));
            held.expiration = extension.expiration_text;
            held.failures = 0;
            held.last_error = None;
            held.extended_at = Some(sent.wall);
            held.next_extend = extend_after(policy, now, held.deadline);
            false
        }
        Err(failure) if is_gone(&failure) => {
            held.last_error = Some(failure.to_string());
            held.ending = Some(Ending::Refused(format!("AWS no longer has it ({failure})")));
            true
        }
        Err(failure) if failure.retry == Retry::Transient => {
            held.failures += 1;
            held.last_error = Some(failure.to_string());
            held.next_extend = (now + policy.retry.delay(held.failures)).min(held.deadline);
            false
        }
        Err(failure) => {
            held.failures += 1;
            held.last_error = Some(failure.to_string());
            held.ending = Some(Ending::Refused(format!(
                "License Manager refused to extend it ({failure})"
            )));
            false
        }
    }
}

/// AWS no longer has the consumption (it expired or was checked in).
pub(crate) fn is_gone(failure: &AwsFailure) -> bool {
    failure.code.as_deref() == Some("ResourceNotFoundException")
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
