//! Floating units: each [`Units`] guard is one `PROVISIONAL` consumption of
//! `n` units, held while the guard lives.
//!
//! One task keeps every guard's consumption alive. Each consumption is due
//! for extension at half the time left before its deadline (its
//! `Expiration` less a margin, as the lease computes it); when the task
//! wakes for the first one due, it extends every other one due within
//! [`COALESCE`] too, one after the other: however many guards there are, the
//! extensions come in a few bursts an hour, never a storm. A consumption
//! whose deadline passes without an extension is given up (its guard's
//! [`Units::is_held`] turns false): AWS has returned the units to the pool.
//!
//! A dropped guard is checked in at once, from the runtime's thread; at
//! shutdown every guard still alive is checked in. After a crash AWS
//! returns the units 60 minutes after the last extension.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};

use super::state::{Held, Lost, Shared, lock, not_running, shared, spec_of};
use crate::aws::retry::{Backoff, Exhausted};
use crate::aws::{AwsFailure, Retry, classify};
use crate::catalog::UnitModel;
use crate::denied::{DenialReason, Denied, Subject};
use crate::license::{DEADLINE_MARGIN, PROVISIONAL_TTL};

/// Extensions due within this much of the first one due are sent with it.
pub(crate) const COALESCE: Duration = Duration::from_mins(5);
/// First retry of a failed extension; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_mins(2);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Floating units of one entitlement, held until dropped.
///
/// Dropping the guard checks the units in (from the runtime's thread, at
/// once); [`Units::release`] does the same and waits for AWS's answer.
#[must_use = "the units are checked in as soon as the guard is dropped"]
#[derive(Debug)]
pub struct Units {
    id: u64,
    name: &'static str,
    count: u64,
    lost: Arc<Lost>,
    /// The run that holds them (weak: a guard kept past shutdown must not
    /// keep that run's journal open).
    shared: Weak<Shared>,
}

impl Units {
    /// The entitlement the units are of.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many units are held.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the units are still held: false once their consumption could
    /// not be extended before its deadline (AWS has them back), or the
    /// runtime shut down.
    #[must_use]
    pub fn is_held(&self) -> bool {
        !self.lost.is_set()
    }

    /// Resolves when the units are no longer held (see [`Units::is_held`]):
    /// work that must not outlive them selects on it.
    ///
    /// ```ignore
    /// tokio::select! {
    ///     done = job.run() => done,
    ///     () = units.lost() => Err(JobError::UnitsLost),
    /// }
    /// ```
    pub async fn lost(&self) {
        self.lost.wait().await;
    }

    /// Checks the units in and waits for AWS's answer (retrying transient
    /// failures for a few seconds).
    ///
    /// # Errors
    /// The last failure when AWS did not confirm the check-in; it returns
    /// the units by itself within 60 minutes.
    pub async fn release(mut self) -> Result<(), AwsFailure> {
        let id = std::mem::take(&mut self.id);
        let Some((shared, held)) = take(id, &self.shared) else {
            return Ok(());
        };
        let handle = shared.handle.clone();
        match handle
            .spawn(async move { check_in(&shared, &held.token).await })
            .await
        {
            Ok(result) => result,
            Err(e) => Err(runtime_gone(&e.to_string())),
        }
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        if let Some((shared, held)) = take(self.id, &self.shared) {
            let handle = shared.handle.clone();
            let task = {
                let shared = shared.clone();
                handle.spawn(async move {
                    let _ = check_in(&shared, &held.token).await;
                })
            };
            // Shutdown waits for the check-ins under way.
            let mut check_ins = lock(&shared.check_ins);
            check_ins.retain(|t| !t.is_finished());
            check_ins.push(task);
        }
    }
}

/// Removes guard `id` from its run's pool (once).
fn take(id: u64, run: &Weak<Shared>) -> Option<(Arc<Shared>, Held)> {
    if id == 0 {
        return None;
    }
    let shared = run.upgrade()?;
    let held = lock(&shared.pool).held.remove(&id)?;
    held.lost.set();
    shared.pool_changed.notify_one();
    Some((shared, held))
}

fn runtime_gone(why: &str) -> AwsFailure {
    AwsFailure {
        operation: "CheckInLicense",
        code: None,
        message: format!("the marketgate runtime stopped first: {why}"),
        status: None,
        retry: Retry::Permanent,
        delivery: crate::aws::Delivery::Answered,
    }
}

/// Sends `CheckInLicense` for `token`, retrying transient failures for a
/// few seconds.
async fn check_in(shared: &Shared, token: &str) -> Result<(), AwsFailure> {
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
        budget: Duration::from_secs(10),
    };
    let result = backoff
        .run(
            || crate::license::check_in_once(&shared.clients, token),
            |_, _| {},
        )
        .await;
    match result {
        Ok(()) => Ok(()),
        Err(Exhausted::Permanent(f) | Exhausted::GaveUp { last: f, .. }) => {
            tracing::warn!(
                target: "marketgate",
                failure = %f,
                "floating units not checked in; AWS returns them within 60 minutes"
            );
            Err(f)
        }
    }
}

/// `marketgate::checkout!`.
pub(super) async fn checkout(name: &'static str, count: u64) -> Result<Units, Denied> {
    let denied = |reason| Denied::new(Subject::Entitlement(name), reason);
    if count == 0 {
        return Err(denied(DenialReason::ZeroUnits));
    }
    let shared = shared().ok_or_else(|| not_running(name))?;
    let spec = spec_of(&shared, name)?;
    if spec.model() != Some(UnitModel::Floating) {
        return Err(denied(DenialReason::NotInProduct {
            product: shared.product.name(),
        }));
    }
    // The checkout, and the guard's place in the pool, are the runtime's
    // task: if the caller stops waiting (a timeout, a dropped future), the
    // task sees it and checks the units straight back in.
    let (reply, answer) = tokio::sync::oneshot::channel();
    let task_shared = shared.clone();
    let unit = spec.unit();
    shared.handle.spawn(async move {
        let taken = take_units(&task_shared, name, unit, count).await;
        if let Err(Ok((id, _))) = reply.send(taken) {
            let held = lock(&task_shared.pool).held.remove(&id);
            if let Some(held) = held {
                held.lost.set();
                let _ = check_in(&task_shared, &held.token).await;
            }
        }
    });
    let (id, lost) = answer.await.map_err(|_| not_running(name))??;
    Ok(Units {
        id,
        name,
        count,
        lost,
        shared: Arc::downgrade(&shared),
    })
}

/// Checks `count` units out and puts them in the pool: the guard's id and
/// loss flag, or why not.
async fn take_units(
    shared: &Arc<Shared>,
    name: &'static str,
    unit: &'static str,
    count: u64,
) -> Result<(u64, Arc<Lost>), Denied> {
    let denied = |reason| Denied::new(Subject::Entitlement(name), reason);
    let product = shared.product.name();
    let client_token = crate::random::random_hex(32);
    let sent_at = shared.clock.now();
    let sent_wall = (shared.wall)();
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        budget: shared.settings.checkout_budget,
    };
    let answer = backoff
        .run(
            || send_checkout(shared, name, unit, count, &client_token),
            |_, _| {},
        )
        .await;
    let (token, expiration) = match answer {
        Ok(ok) => ok,
        Err(Exhausted::Permanent(f))
            if f.code.as_deref() == Some("NoEntitlementsAllowedException") =>
        {
            return Err(denied(DenialReason::Exhausted { product }));
        }
        Err(Exhausted::Permanent(f)) => {
            tracing::warn!(target: "marketgate", failure = %f, entitlement = name, "floating units refused");
            return Err(denied(DenialReason::NotLicensed { product }));
        }
        Err(Exhausted::GaveUp { last, .. }) => {
            tracing::warn!(target: "marketgate", failure = %last, entitlement = name, "floating units not checked out");
            return Err(denied(DenialReason::Unavailable { product }));
        }
    };
    let deadline = deadline(sent_at, sent_wall, expiration);
    let lost = Arc::new(Lost::default());
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let joined = {
        let mut pool = lock(&shared.pool);
        // After shutdown's check-in nothing would extend or check these
        // units in: give them back now.
        if pool.closed {
            false
        } else {
            pool.held.insert(
                id,
                Held {
                    name,
                    count,
                    token: token.clone(),
                    deadline,
                    next: sent_at + deadline.saturating_sub(sent_at) / 2,
                    failures: 0,
                    lost: lost.clone(),
                },
            );
            true
        }
    };
    if !joined {
        let _ = check_in(shared, &token).await;
        return Err(denied(DenialReason::Stopped));
    }
    shared.pool_changed.notify_one();
    Ok((id, lost))
}

/// The lease-clock deadline of a consumption sent at `sent_at`: its
/// expiration less the margin, never more than 60 minutes from the send.
fn deadline(sent_at: Duration, sent_wall: SystemTime, expiration: Option<SystemTime>) -> Duration {
    // An expiration already past (by this clock) leaves no time at all.
    let ttl = expiration
        .map_or(PROVISIONAL_TTL, |e| {
            e.duration_since(sent_wall).unwrap_or(Duration::ZERO)
        })
        .min(PROVISIONAL_TTL);
    sent_at + ttl.saturating_sub(DEADLINE_MARGIN)
}

async fn send_checkout(
    shared: &Shared,
    name: &str,
    unit: &str,
    count: u64,
    client_token: &str,
) -> Result<(String, Option<SystemTime>), AwsFailure> {
    let data = EntitlementData::builder()
        .name(name)
        .unit(EntitlementDataUnit::from(unit))
        .value(count.to_string())
        .build()
        .map_err(|e| local_failure("CheckoutLicense", &e.to_string()))?;
    let output = shared
        .clients
        .licenses
        .checkout_license()
        .product_sku(shared.spec.sku())
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(shared.spec.key_fingerprint())
        .entitlements(data)
        .client_token(client_token)
        .send()
        .await
        .map_err(|e| classify("CheckoutLicense", &e));
    crate::status::record_call("CheckoutLicense", output.as_ref().map(|_| ()));
    let output = output?;
    let token = output.license_consumption_token().ok_or_else(|| {
        local_failure(
            "CheckoutLicense",
            "the response has no LicenseConsumptionToken",
        )
    })?;
    Ok((
        token.to_owned(),
        output.expiration().and_then(crate::license::parse_time),
    ))
}

fn local_failure(operation: &'static str, message: &str) -> AwsFailure {
    AwsFailure {
        operation,
        code: None,
        message: message.to_owned(),
        status: None,
        retry: Retry::Permanent,
        delivery: crate::aws::Delivery::Answered,
    }
}

/// Keeps every guard's consumption extended until the runtime stops.
pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        let now = shared.clock.now();
        let (due, wake) = {
            let pool = lock(&shared.pool);
            let first = pool.held.values().map(|h| h.next).min();
            match first {
                Some(first) if first <= now => {
                    let horizon = now + COALESCE;
                    let due: Vec<(u64, String, Duration)> = pool
                        .held
                        .iter()
                        .filter(|(_, h)| h.next <= horizon)
                        .map(|(id, h)| (*id, h.token.clone(), h.deadline))
                        .collect();
                    (due, None)
                }
                other => (Vec::new(), other),
            }
        };
        if due.is_empty() {
            let changed = shared.pool_changed.notified();
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = shared.clock.sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
            continue;
        }
        for (id, token, deadline) in due {
            extend(&shared, id, &token, deadline).await;
        }
    }
}

/// Extends one consumption, recording the new deadline, a retry, or its
/// loss.
async fn extend(shared: &Shared, id: u64, token: &str, deadline: Duration) {
    let sent_at = shared.clock.now();
    if sent_at >= deadline {
        give_up(
            shared,
            id,
            "its deadline passed before it could be extended",
        );
        return;
    }
    let sent_wall = (shared.wall)();
    let answer = shared
        .clients
        .licenses
        .extend_license_consumption()
        .license_consumption_token(token)
        .send()
        .await
        .map_err(|e| classify("ExtendLicenseConsumption", &e));
    crate::status::record_call("ExtendLicenseConsumption", answer.as_ref().map(|_| ()));
    let now = shared.clock.now();
    match answer {
        Ok(output) => {
            let expiration = output.expiration().and_then(crate::license::parse_time);
            let mut pool = lock(&shared.pool);
            if let Some(held) = pool.held.get_mut(&id) {
                held.deadline = deadline_after(sent_at, sent_wall, expiration);
                held.next = sent_at + held.deadline.saturating_sub(sent_at) / 2;
                held.failures = 0;
            }
        }
        Err(failure) if failure.retry == Retry::Permanent => {
            tracing::warn!(target: "marketgate", %failure, "floating units lost");
            give_up(shared, id, "AWS refused to extend its consumption");
        }
        Err(failure) => {
            let mut pool = lock(&shared.pool);
            if let Some(held) = pool.held.get_mut(&id) {
                held.failures += 1;
                let delay = Backoff {
                    initial: RETRY_FIRST,
                    max: RETRY_MAX,
                    budget: Duration::MAX,
                }
                .delay(held.failures);
                // Never later than the deadline: one last try just before.
                // Never after the deadline, never back to back.
                held.next = (now + delay)
                    .min(held.deadline.saturating_sub(Duration::from_secs(1)))
                    .max(now + Duration::from_secs(1));
                tracing::warn!(
                    target: "marketgate",
                    %failure,
                    entitlement = held.name,
                    "floating units not extended; retrying before their deadline"
                );
            }
        }
    }
}

/// A deadline from an extension's answer (same rule as a checkout's).
fn deadline_after(
    sent_at: Duration,
    sent_wall: SystemTime,
    expiration: Option<SystemTime>,
) -> Duration {
    deadline(sent_at, sent_wall, expiration)
}

fn give_up(shared: &Shared, id: u64, why: &str) {
    if let Some(held) = lock(&shared.pool).held.remove(&id) {
        held.lost.set();
        tracing::warn!(
            target: "marketgate",
            entitlement = held.name,
            units = held.count,
            "floating units no longer held: {why}"
        );
    }
}

/// Checks in every guard still alive (shutdown), concurrently, within
/// `budget`; the guards then report [`Units::is_held`] false.
pub(super) async fn check_in_all(shared: &Shared, budget: Duration) {
    let (held, dropped) = {
        let mut pool = lock(&shared.pool);
        pool.closed = true;
        let held: Vec<Held> = std::mem::take(&mut pool.held).into_values().collect();
        (held, std::mem::take(&mut *lock(&shared.check_ins)))
    };
    for h in &held {
        h.lost.set();
    }
    let all = futures_util::future::join_all(held.iter().map(|h| check_in(shared, &h.token)));
    // And the check-ins of guards dropped just before.
    let dropped = futures_util::future::join_all(dropped);
    if tokio::time::timeout(budget, async { tokio::join!(all, dropped) })
        .await
        .is_err()
    {
        tracing::warn!(
            target: "marketgate",
            "floating units not all checked in within the shutdown budget; AWS returns them \
             within 60 minutes"
        );
    }
}
