//! The lease's rules on a made-up clock: each transition, and a seeded
//! search over answers and timings against the two invariants (features
//! never outlive AWS's consumption; never revoked before the deadline).

// Times here are small made-up offsets whose differences cannot underflow;
// answers are `Result`s because that is what the lease takes.
#![allow(clippy::unchecked_time_subtraction, clippy::unnecessary_wraps)]

use std::time::{Duration, SystemTime};

use super::*;
use crate::aws::Delivery;

const MIN: Duration = Duration::from_mins(1);
const SEC: Duration = Duration::from_secs(1);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_hours(490_000)
}

fn policy() -> Policy {
    crate::license::policy(Duration::from_mins(30), Duration::from_mins(15))
}

fn grant(token: &str, issued: SystemTime, ttl: Duration) -> Grant {
    Grant {
        token: token.to_owned(),
        license_arn: "arn:aws:license-manager::1:license:l-1".to_owned(),
        allowed: vec!["Seats".to_owned()],
        issued_at: Some(issued),
        expiration: Some(issued + ttl),
        expiration_text: "expiration".to_owned(),
    }
}

fn sent(at: Duration) -> Sent {
    Sent {
        at,
        wall: t0() + at,
    }
}

fn extension(expires: SystemTime) -> Result<Extension, AwsFailure> {
    Ok(Extension {
        expiration: Some(expires),
        expiration_text: "later".to_owned(),
    })
}

fn failure(code: &str, retry: Retry) -> AwsFailure {
    AwsFailure {
        operation: "ExtendLicenseConsumption",
        code: Some(code.to_owned()),
        message: "injected".to_owned(),
        status: Some(400),
        retry,
        delivery: Delivery::Answered,
    }
}

fn rate_limited() -> AwsFailure {
    failure("RateLimitExceededException", Retry::Transient)
}

/// A lease whose first extension, at 27.5 minutes, AWS refused with `code`.
fn first_extension_refused(code: &str) -> (Lease, Duration) {
    let mut lease = lease();
    let at = 27 * MIN + 30 * SEC;
    let _ = lease.next(at);
    lease.extended("tok-1", sent(at), at, Err(failure(code, Retry::Permanent)));
    (lease, at)
}

fn lease() -> Lease {
    Lease::new(
        policy(),
        grant("tok-1", t0(), 60 * MIN),
        sent(Duration::ZERO),
    )
}

/// Answers every due extension with `answer` until `until`, returning the
/// times extensions were tried.
fn extend_until(
    lease: &mut Lease,
    until: Duration,
    mut answer: impl FnMut(Duration) -> Result<Extension, AwsFailure>,
) -> Vec<Duration> {
    let mut now = Duration::ZERO;
    let mut tries = Vec::new();
    while now < until {
        match lease.next(now) {
            Step::Wait(at) => {
                assert!(at > now, "a wait for {at:?} at {now:?} would spin");
                now = at.min(until);
            }
            Step::Extend(token) => {
                tries.push(now);
                lease.extended(&token, sent(now), now, answer(now));
            }
            Step::Recheck(_) => lease.rechecked(now, None),
            other => panic!("unexpected {other:?} at {now:?}"),
        }
    }
    tries
}

#[test]
fn the_deadline_is_the_expiry_less_the_margin_and_extensions_come_at_half_of_it() {
    let mut lease = lease();
    assert_eq!(lease.deadline_pending(), Some(55 * MIN));
    // First a re-check at 15 minutes, then the extension at 27.5.
    assert_eq!(lease.next(Duration::ZERO), Step::Wait(15 * MIN));
    assert!(matches!(lease.next(15 * MIN), Step::Recheck(_)));
    lease.rechecked(15 * MIN, None);
    assert_eq!(lease.next(15 * MIN), Step::Wait(27 * MIN + 30 * SEC));
    let at = 27 * MIN + 30 * SEC;
    assert_eq!(lease.next(at), Step::Extend("tok-1".to_owned()));
    lease.extended("tok-1", sent(at), at, extension(t0() + at + 60 * MIN));
    assert_eq!(lease.deadline_pending(), Some(at + 55 * MIN));
}

#[test]
fn transient_failures_keep_the_features_until_the_deadline_and_no_longer() {
    let mut lease = lease();
    let tries = extend_until(&mut lease, 55 * MIN - SEC, |_| Err(rate_limited()));
    assert!(
        lease.entitlements().is_some(),
        "revoked before the deadline"
    );
    // Retried within minutes, never past the deadline.
    assert!(tries.len() >= 10, "{tries:?}");
    for pair in tries.windows(2) {
        assert!(pair[1] - pair[0] <= 2 * MIN, "{tries:?}");
    }
    assert!(tries.iter().all(|t| *t < 55 * MIN));
    // At the deadline: revoked, and the lease tries to extend what it had.
    assert_eq!(lease.next(55 * MIN), Step::Extend("tok-1".to_owned()));
    assert_eq!(lease.entitlements(), None);
    assert_eq!(
        lease.view(55 * MIN).map(|v| v.state),
        Some(crate::status::LeaseState::Lapsed)
    );
}

#[test]
fn one_failure_then_success_keeps_one_consumption() {
    // The reported bug: one rate limit at the first extension must not
    // revoke anything; the retry comes within minutes.
    let mut lease = lease();
    let mut failed = false;
    let tries = extend_until(&mut lease, 4 * 60 * MIN, |now| {
        if failed {
            extension(t0() + now + 60 * MIN)
        } else {
            failed = true;
            Err(rate_limited())
        }
    });
    assert!(tries[1] - tries[0] <= 2 * MIN, "{tries:?}");
    assert!(lease.entitlements().is_some());
    assert_eq!(token_left(lease.end()), Some("tok-1".to_owned()));
}

#[test]
fn a_far_future_expiration_or_a_wrong_local_clock_never_stretches_the_deadline() {
    // Expiration ten hours away: capped at 60 minutes from the request.
    let far = Lease::new(
        policy(),
        grant("t", t0(), 10 * 60 * MIN),
        sent(Duration::ZERO),
    );
    assert_eq!(far.deadline_pending(), Some(55 * MIN));
    // The local wall clock is two hours behind AWS: the deadline comes from
    // AWS's own IssuedAt, not from the local clock.
    let skewed = Sent {
        at: Duration::ZERO,
        wall: t0() - 120 * MIN,
    };
    let lease = Lease::new(policy(), grant("t", t0(), 60 * MIN), skewed);
    assert_eq!(lease.deadline_pending(), Some(55 * MIN));
    // A shorter consumption (say, the license ends in 20 minutes) is honoured.
    let short = Lease::new(policy(), grant("t", t0(), 20 * MIN), sent(Duration::ZERO));
    assert_eq!(short.deadline_pending(), Some(15 * MIN));
    // Without IssuedAt, the local clock maps Expiration, within the cap.
    let mut no_issued = grant("t", t0(), 60 * MIN);
    no_issued.issued_at = None;
    let lease = Lease::new(policy(), no_issued.clone(), skewed);
    assert_eq!(lease.deadline_pending(), Some(55 * MIN));
    let ahead = Sent {
        at: Duration::ZERO,
        wall: t0() + 30 * MIN,
    };
    let lease = Lease::new(policy(), no_issued, ahead);
    assert_eq!(lease.deadline_pending(), Some(25 * MIN));
}

#[test]
fn a_late_answer_never_shortens_the_deadline() {
    let mut lease = lease();
    let at = 27 * MIN + 30 * SEC;
    let _ = lease.next(at);
    lease.extended("tok-1", sent(at), at, extension(t0() + at + 60 * MIN));
    // An answer to an earlier request (sent at 10 minutes) arrives now.
    lease.extended(
        "tok-1",
        sent(10 * MIN),
        at + SEC,
        extension(t0() + 70 * MIN),
    );
    assert_eq!(lease.deadline_pending(), Some(at + 55 * MIN));
}

#[test]
fn a_consumption_aws_no_longer_has_is_revoked_at_once_and_checked_out_again() {
    let (mut lease, at) = first_extension_refused("ResourceNotFoundException");
    assert_eq!(lease.entitlements(), None);
    let Step::Checkout(client_token) = lease.next(at) else {
        panic!("expected a checkout");
    };
    // Exhausted seats: retried with backoff (a refusal made nothing, so
    // with a new client token).
    lease.checked_out(
        &client_token,
        sent(at),
        at,
        Err(failure("NoEntitlementsAllowedException", Retry::Permanent)),
    );
    let Step::Wait(retry) = lease.next(at) else {
        panic!("expected a wait");
    };
    assert!(retry > at && retry <= at + 10 * SEC, "{retry:?}");
    let Step::Checkout(client_token) = lease.next(retry) else {
        panic!("expected a checkout");
    };
    lease.checked_out(
        &client_token,
        sent(retry),
        retry,
        Ok(grant("tok-2", t0() + retry, 60 * MIN)),
    );
    assert_eq!(lease.entitlements(), Some(vec!["Seats".to_owned()]));
    assert_eq!(lease.deadline_pending(), Some(retry + 55 * MIN));
    assert_eq!(token_left(lease.end()), Some("tok-2".to_owned()));
}

#[test]
fn a_lapsed_lease_whose_consumption_aws_still_has_gets_the_same_seat_back() {
    let mut lease = lease();
    let _ = extend_until(&mut lease, 55 * MIN, |_| Err(rate_limited()));
    assert_eq!(lease.next(55 * MIN), Step::Extend("tok-1".to_owned()));
    lease.extended("tok-1", sent(55 * MIN), 55 * MIN, Err(rate_limited()));
    assert!(matches!(lease.next(55 * MIN), Step::Wait(_)));
    let at = 57 * MIN;
    assert_eq!(lease.next(at), Step::Extend("tok-1".to_owned()));
    lease.extended("tok-1", sent(at), at, extension(t0() + at + 60 * MIN));
    assert_eq!(lease.entitlements(), Some(vec!["Seats".to_owned()]));
    assert_eq!(lease.deadline_pending(), Some(at + 55 * MIN));
}

#[test]
fn a_refused_extension_keeps_the_features_until_the_deadline_then_checks_in_and_out() {
    let (mut lease, at) = first_extension_refused("ValidationException");
    assert_eq!(
        lease.view(at).map(|v| v.state),
        Some(crate::status::LeaseState::Ending)
    );
    // No more extensions; re-checks only, features on.
    let mut now = at;
    loop {
        match lease.next(now) {
            Step::Wait(next) => {
                assert!(next > now, "a wait for {next:?} at {now:?} would spin");
                now = next;
            }
            Step::Recheck(_) => lease.rechecked(now, None),
            Step::CheckIn(token) => {
                assert_eq!(now, 55 * MIN, "checked in before the deadline");
                assert_eq!(token, "tok-1");
                break;
            }
            other => panic!("{other:?} at {now:?}"),
        }
        if now < 55 * MIN {
            assert!(lease.entitlements().is_some());
        }
    }
    assert_eq!(lease.entitlements(), None);
    lease.checked_in("tok-1", now, Ok(()));
    assert!(matches!(lease.next(now), Step::Checkout(_)));
}

#[test]
fn a_license_that_is_no_longer_usable_ends_the_consumption_unless_it_recovers() {
    let mut lease = lease();
    let _ = lease.next(15 * MIN);
    lease.rechecked(
        15 * MIN,
        Some(Recheck {
            state: "SUSPENDED".to_owned(),
            ..Recheck::default()
        }),
    );
    let view = lease.view(15 * MIN).expect("view");
    assert_eq!(view.state, crate::status::LeaseState::Ending);
    assert_eq!(view.reason.as_deref(), Some("the license is SUSPENDED"));
    // Reinstated at the next re-check: extended at once.
    assert_eq!(lease.next(30 * MIN), Step::Recheck(lease_arn()));
    lease.rechecked(
        30 * MIN,
        Some(Recheck {
            state: "AVAILABLE".to_owned(),
            present: vec!["ProEdition".to_owned()],
            missing: Vec::new(),
        }),
    );
    assert_eq!(lease.next(30 * MIN), Step::Extend("tok-1".to_owned()));
    // The upgrade is granted at once; it holds no seat.
    assert_eq!(
        lease.entitlements(),
        Some(vec!["Seats".to_owned(), "ProEdition".to_owned()])
    );
    // A held entitlement removed from the license: kept until the deadline.
    lease.rechecked(
        31 * MIN,
        Some(Recheck {
            state: "AVAILABLE".to_owned(),
            present: Vec::new(),
            missing: vec!["Seats".to_owned()],
        }),
    );
    let view = lease.view(31 * MIN).expect("view");
    assert_eq!(view.state, crate::status::LeaseState::Ending);
    assert_eq!(lease.entitlements(), Some(vec!["Seats".to_owned()]));
}

fn token_left(leftover: Option<Leftover>) -> Option<String> {
    match leftover {
        Some(Leftover::Consumption(token, _)) => Some(token),
        _ => None,
    }
}

#[test]
fn a_retried_checkout_anchors_its_deadline_at_the_first_send() {
    // AWS served the first try; its answer was lost. The retry, much
    // later, gets the same answer back (same client token): the deadline
    // counts from the first send, not from the retry.
    let (mut lease, at) = first_extension_refused("ResourceNotFoundException");
    let Step::Checkout(client_token) = lease.next(at) else {
        panic!("expected a checkout");
    };
    let mut lost = failure("RequestTimeout", Retry::Transient);
    lost.delivery = Delivery::Unknown;
    lease.checked_out(&client_token, sent(at), at + 5 * SEC, Err(lost));
    // While that answer is outstanding, shutdown must reclaim it.
    assert_eq!(
        lease.clone().end(),
        Some(Leftover::Checkout(client_token.clone()))
    );
    let soon = at + 3 * MIN;
    let mut answered_soon = lease.clone();
    assert_eq!(
        answered_soon.next(soon),
        Step::Checkout(client_token.clone())
    );
    answered_soon.checked_out(
        &client_token,
        sent(soon),
        soon,
        Ok(grant("tok-2", t0() + at, 60 * MIN)),
    );
    assert_eq!(answered_soon.deadline_pending(), Some(at + 55 * MIN));
    // Answered 50 minutes after the first send: a deadline timed from it
    // would leave 5 minutes, and every extension would be timed from the
    // same anchor. That consumption is checked in and a new checkout, with
    // a new client token, is timed from its own send.
    let later = at + 50 * MIN;
    assert_eq!(lease.next(later), Step::Checkout(client_token.clone()));
    lease.checked_out(
        &client_token,
        sent(later),
        later,
        Ok(grant("tok-2", t0() + at, 60 * MIN)),
    );
    assert_eq!(lease.deadline_pending(), None, "not held");
    assert_eq!(lease.next(later), Step::CheckIn("tok-2".to_owned()));
    lease.checked_in("tok-2", later, Ok(()));
    let Step::Checkout(fresh) = lease.next(later) else {
        panic!("expected a new checkout");
    };
    assert_ne!(fresh, client_token);
    lease.checked_out(
        &fresh,
        sent(later),
        later,
        Ok(grant("tok-3", t0() + later, 60 * MIN)),
    );
    assert_eq!(lease.deadline_pending(), Some(later + 55 * MIN));
    // A refusal (nothing made) starts the next try with a new token.
    let (mut refused, _) = first_extension_refused("ResourceNotFoundException");
    let Step::Checkout(first) = refused.next(at) else {
        panic!("expected a checkout");
    };
    refused.checked_out(
        &first,
        sent(at),
        at,
        Err(failure("NoEntitlementsAllowedException", Retry::Permanent)),
    );
    assert_eq!(refused.clone().end(), None, "nothing to reclaim");
    let Step::Checkout(second) = refused.next(at + 10 * MIN) else {
        panic!("expected a checkout");
    };
    assert_ne!(first, second);
}

#[test]
fn a_lease_that_lapses_again_at_once_backs_off() {
    // Every extension answer arrives with a deadline already past.
    let mut lease = lease();
    let _ = extend_until(&mut lease, 55 * MIN, |_| Err(rate_limited()));
    let mut now = 55 * MIN;
    let mut tries = 0;
    while now < 120 * MIN {
        assert!(tries < 1000, "retrying without waiting, at {now:?}");
        match lease.next(now) {
            Step::Wait(at) => now = at,
            Step::Extend(token) => {
                tries += 1;
                lease.extended(&token, sent(now), now, extension(t0() + now));
            }
            other => panic!("{other:?}"),
        }
    }
    // Backoff up to 5 minutes apart: some 20 tries in these 65 minutes.
    assert!(tries <= 30, "{tries} tries in an hour");
}

fn lease_arn() -> String {
    "arn:aws:license-manager::1:license:l-1".to_owned()
}

#[test]
fn shutdown_checks_in_what_aws_may_still_hold() {
    let mut lease = lease();
    assert_eq!(
        lease.end(),
        Some(Leftover::Consumption("tok-1".to_owned(), lease_arn())),
        "held"
    );
    assert_eq!(lease.next(Duration::ZERO), Step::Done);
    let mut lapsed = self::lease();
    let _ = extend_until(&mut lapsed, 55 * MIN, |_| Err(rate_limited()));
    let _ = lapsed.next(55 * MIN);
    assert_eq!(token_left(lapsed.end()), Some("tok-1".to_owned()));
}

/// A tiny deterministic generator for the search below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// AWS's side of one consumption: when it really expires.
struct Aws {
    token: u32,
    expires: Duration,
    seats_free: bool,
}

/// Seeded runs over random answers, latencies and outages: the lease never
/// grants past the real expiry of the consumption AWS holds for it, and
/// never revokes while the deadline it computed lies ahead.
#[test]
fn search_never_grants_past_the_real_expiry_nor_revokes_early() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut lease = lease();
        let mut aws = Aws {
            token: 1,
            expires: 60 * MIN,
            seats_free: true,
        };
        let mut now = Duration::ZERO;
        let mut outage_until = Duration::ZERO;
        let mut checkouts = 1;
        while now < 8 * 60 * MIN {
            if rng.below(40) == 0 {
                outage_until = now + Duration::from_secs(rng.below(7200));
            }
            let deadline_before = lease.deadline_pending();
            let step = lease.next(now);
            let granted = lease.entitlements().is_some();
            if granted {
                assert!(
                    now < aws.expires,
                    "seed {seed}: features on at {now:?}, AWS freed the seat at {:?}",
                    aws.expires
                );
            }
            if let Some(deadline) = deadline_before
                && now < deadline
            {
                assert!(
                    granted,
                    "seed {seed}: revoked at {now:?} before {deadline:?}"
                );
            }
            // AWS serves the request somewhere between sending and answering.
            let latency = Duration::from_millis(rng.below(20_000));
            let served = now + latency / 2;
            let down = now < outage_until;
            let token_alive =
                |aws: &Aws, t: &str| t == format!("tok-{}", aws.token) && served < aws.expires;
            match step {
                Step::Wait(at) => {
                    assert!(
                        at > now,
                        "seed {seed}: a wait for {at:?} at {now:?} would spin"
                    );
                    // Sleep, or wake early (a spurious wake-up costs nothing).
                    now = if rng.below(5) == 0 {
                        now + (at - now) / 2
                    } else {
                        at
                    };
                    continue;
                }
                Step::Done => break,
                Step::Extend(token) => {
                    let answer = if down || rng.below(6) == 0 {
                        Err(rate_limited())
                    } else if token_alive(&aws, &token) {
                        aws.expires = served + 60 * MIN;
                        extension(t0() + aws.expires)
                    } else {
                        Err(failure("ResourceNotFoundException", Retry::Permanent))
                    };
                    lease.extended(&token, sent(now), now + latency, answer);
                }
                Step::Recheck(_) => {
                    let found = (!down).then(|| Recheck {
                        state: "AVAILABLE".to_owned(),
                        ..Recheck::default()
                    });
                    lease.rechecked(now + latency, found);
                }
                Step::CheckIn(token) => {
                    if !down && token_alive(&aws, &token) {
                        aws.expires = served;
                    }
                    let answer = if down { Err(rate_limited()) } else { Ok(()) };
                    lease.checked_in(&token, now + latency, answer);
                }
                Step::Checkout(client_token) => {
                    aws.seats_free = served >= aws.expires;
                    let answer = if down {
                        Err(rate_limited())
                    } else if aws.seats_free {
                        checkouts += 1;
                        aws.token = checkouts;
                        aws.expires = served + 60 * MIN;
                        Ok(grant(&format!("tok-{checkouts}"), t0() + served, 60 * MIN))
                    } else {
                        Err(failure("NoEntitlementsAllowedException", Retry::Permanent))
                    };
                    lease.checked_out(&client_token, sent(now), now + latency, answer);
                }
            }
            now += latency;
        }
    }
}
