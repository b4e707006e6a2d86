//! The lease's driver: does what [`Lease::next`] asks, on the lease's
//! clock, and publishes what the lease grants to the entitlement snapshot
//! and to `status()`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::checkout::{checkout, parse_time};
use super::clock::Monotonic;
use super::consumption::features_for;
use super::lease::{Extension, Lease, Leftover, Recheck, Sent, Step, View, is_gone};
use crate::aws::retry::{Backoff, Exhausted};
use crate::aws::{Clients, classify};
use crate::catalog::{Catalog, FeatureSet, Product};
use crate::entitlement;
use crate::metrics;
use crate::status::{self, LeaseState};
use crate::time::{Clock, epoch_secs};

/// The lease, shared by its driver and the shutdown that checks it in.
pub(crate) type SharedLease = Arc<Mutex<Lease>>;

/// Everything the driver needs.
pub(crate) struct Driver {
    pub(crate) catalog: &'static Catalog,
    pub(crate) product: &'static Product,
    pub(crate) clients: Clients,
    pub(crate) clock: Monotonic,
    pub(crate) wall: Clock,
    pub(crate) lease: SharedLease,
    /// Told every license a re-check reads (what the buyer bought, for the
    /// counted units seller code uses).
    pub(crate) on_license: Option<fn(&aws_sdk_licensemanager::types::License)>,
}

/// What one turn of the driver did.
pub(crate) enum Turn {
    /// A call was made (or its time passed).
    Acted,
    /// Nothing to do until this monotonic instant.
    Wait(Duration),
    /// The lease has ended.
    Done,
}

fn lock(lease: &SharedLease) -> MutexGuard<'_, Lease> {
    // Every method leaves the lease consistent; a panic cannot tear it.
    lease.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Driver {
    fn sent(&self) -> Sent {
        Sent {
            at: self.clock.now(),
            wall: (self.wall)(),
        }
    }

    /// Awaits `call`, revoking at the deadline if it passes meanwhile: a
    /// hanging call never stretches the lease.
    async fn guarded<T>(&self, call: impl Future<Output = T>) -> T {
        let mut call = std::pin::pin!(call);
        loop {
            let deadline = lock(&self.lease).deadline_pending();
            let Some(deadline) = deadline else {
                return call.await;
            };
            tokio::select! {
                out = &mut call => return out,
                () = self.clock.sleep_until(deadline) => {
                    // `next` revokes once the deadline has passed.
                    let _ = lock(&self.lease).next(self.clock.now());
                    self.publish(None);
                }
            }
        }
    }

    /// Runs the lease until it ends (the task is aborted at shutdown).
    pub(crate) async fn run(self) {
        // Only this task takes features away at the deadline: if it ever
        // ended by a panic, nothing would. Then nothing stays granted.
        let _revoke_on_panic = RevokeOnPanic {
            catalog: self.catalog,
            product: self.product,
        };
        loop {
            match self.turn().await {
                Turn::Done => return,
                Turn::Wait(at) => self.clock.sleep_until(at).await,
                Turn::Acted => {}
            }
        }
    }

    /// One turn: does what the lease asks now, or says until when nothing
    /// is to be done. The fault simulation drives the lease turn by turn.
    pub(crate) async fn turn(&self) -> Turn {
        let step = lock(&self.lease).next(self.clock.now());
        self.publish(Some(&step));
        match step {
            Step::Done => return Turn::Done,
            Step::Wait(at) => return Turn::Wait(at),
            Step::Extend(token) => self.extend(&token).await,
            Step::Recheck(arn) => self.recheck(&arn).await,
            Step::CheckIn(token) => {
                let answer = self.guarded(check_in_once(&self.clients, &token)).await;
                lock(&self.lease).checked_in(&token, self.clock.now(), answer);
            }
            Step::Checkout(client_token) => {
                let Some(spec) = self.product.license() else {
                    return Turn::Done;
                };
                let sent = self.sent();
                let timer = metrics::Timer::start();
                let answer = checkout(&self.clients, spec, &client_token).await;
                timer.finish("CheckoutLicense", answer.as_ref().map(|_| ()));
                status::record_call("CheckoutLicense", answer.as_ref().map(|_| ()));
                match &answer {
                    Ok(grant) => tracing::info!(
                        target: "marketgate",
                        license = %grant.license_arn,
                        allowed = ?grant.allowed,
                        "license checked out again: features restored"
                    ),
                    Err(failure) => tracing::warn!(
                        target: "marketgate",
                        %failure,
                        "no license yet: features stay off, checking out again later"
                    ),
                }
                lock(&self.lease).checked_out(&client_token, sent, self.clock.now(), answer);
            }
        }
        Turn::Acted
    }

    async fn extend(&self, token: &str) {
        let sent = self.sent();
        let timer = metrics::Timer::start();
        let answer = self
            .guarded(
                self.clients
                    .licenses
                    .extend_license_consumption()
                    .license_consumption_token(token)
                    .send(),
            )
            .await
            .map(|output| Extension {
                expiration: output.expiration().and_then(parse_time),
                expiration_text: output.expiration().unwrap_or_default().to_owned(),
            })
            .map_err(|e| classify("ExtendLicenseConsumption", &e));
        timer.finish("ExtendLicenseConsumption", answer.as_ref().map(|_| ()));
        status::record_call("ExtendLicenseConsumption", answer.as_ref().map(|_| ()));
        match &answer {
            Ok(_) => tracing::debug!(target: "marketgate", "license consumption extended"),
            Err(failure) => tracing::warn!(
                target: "marketgate",
                %failure,
                "license consumption not extended; features stay on until the lease's deadline"
            ),
        }
        lock(&self.lease).extended(token, sent, self.clock.now(), answer);
    }

    async fn recheck(&self, arn: &str) {
        let timer = metrics::Timer::start();
        let answer = self
            .guarded(self.clients.licenses.get_license().license_arn(arn).send())
            .await
            .map_err(|e| classify("GetLicense", &e));
        timer.finish("GetLicense", answer.as_ref().map(|_| ()));
        status::record_call("GetLicense", answer.as_ref().map(|_| ()));
        let found = match answer {
            // A license without a status says nothing: like a failed re-check.
            Ok(output) => {
                if let (Some(license), Some(tell)) = (output.license(), self.on_license) {
                    tell(license);
                }
                output
                    .license()
                    .filter(|license| license.status().is_some())
                    .map(|license| self.found(license))
            }
            Err(failure) => {
                tracing::warn!(target: "marketgate", %failure, "license re-check failed");
                None
            }
        };
        if let Some(found) = &found {
            status::update_license(|l| {
                if let Some(l) = l {
                    l.last_checked = Some(status::now_secs());
                    l.license_state = Some(found.state.clone());
                }
            });
        }
        lock(&self.lease).rechecked(self.clock.now(), found);
    }

    /// What the license read back means for what is held.
    fn found(&self, license: &aws_sdk_licensemanager::types::License) -> Recheck {
        let in_license: Vec<&str> = license
            .entitlements()
            .iter()
            .map(aws_sdk_licensemanager::types::Entitlement::name)
            .collect();
        let specs = self
            .product
            .license()
            .map_or(&[][..], |spec| spec.entitlements());
        let lease = lock(&self.lease);
        Recheck {
            state: license.status().map_or_else(
                || "in an unknown state".to_owned(),
                |s| s.as_str().to_owned(),
            ),
            present: specs
                .iter()
                .filter(|e| e.unit() == "None" && in_license.contains(&e.name()))
                .map(|e| e.name().to_owned())
                .collect(),
            missing: lease
                .allowed()
                .iter()
                .filter(|name| !in_license.contains(&name.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Makes the entitlement snapshot and `status()` say what the lease
    /// holds, and what it does next (`step`, when it has just decided).
    fn publish(&self, step: Option<&Step>) {
        let lease = lock(&self.lease);
        let now = self.clock.now();
        let entitlements = lease.entitlements();
        let lapsed = entitlements.is_none();
        let granted = entitlements.map_or(FeatureSet::EMPTY, |names| {
            features_for(self.product, &names)
        });
        let view = lease.view(now);
        drop(lease);
        if granted != entitlement::granted() || lapsed != entitlement::license_lapsed() {
            if lapsed {
                let reason = view
                    .as_ref()
                    .and_then(|v| v.reason.clone())
                    .unwrap_or_default();
                tracing::error!(
                    target: "marketgate",
                    product = self.product.name(),
                    "{reason}: every feature of the license is revoked until a checkout succeeds"
                );
                status::degrade(
                    "license",
                    format!("{reason}; features are off until a new checkout succeeds"),
                );
            } else {
                tracing::info!(
                    target: "marketgate",
                    features = ?self.catalog.feature_names(granted).collect::<Vec<_>>(),
                    "license features granted"
                );
                status::recover("license");
            }
            entitlement::activate_license(self.catalog, self.product, granted, lapsed);
        }
        if let Some(view) = view {
            self.publish_status(&view, step, now);
        }
    }

    /// What `status()` shows of the lease.
    fn publish_status(&self, view: &View, step: Option<&Step>, now: Duration) {
        match view.state {
            LeaseState::HeldPastFailure => status::degrade(
                "license-extension",
                format!(
                    "license consumption not extended ({} tries failed, the last: {}); features \
                     stay on until the deadline",
                    view.failures,
                    view.last_error.as_deref().unwrap_or("?")
                ),
            ),
            LeaseState::Ending => status::degrade(
                "license-extension",
                format!(
                    "{}: this process keeps its features until the consumption's deadline, then \
                     checks out again",
                    view.reason
                        .as_deref()
                        .unwrap_or("the consumption is ending")
                ),
            ),
            _ => status::recover("license-extension"),
        }
        let wall = (self.wall)();
        let wall_now = epoch_secs(wall);
        let wall_now_exact = wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        status::update_license(|l| {
            if let Some(l) = l {
                l.state = view.state;
                l.license_arn.clone_from(&view.license_arn);
                l.consumption.clone_from(&view.consumption);
                if let Some(expiration) = &view.expiration {
                    l.expiration.clone_from(expiration);
                }
                l.deadline = view
                    .deadline_in
                    .map(|d| u64::try_from(wall_now).unwrap_or(0) + d.as_secs());
                l.last_extended = view
                    .last_extended
                    .map(|t| u64::try_from(epoch_secs(t)).unwrap_or(0));
                l.last_extension_error.clone_from(&view.last_error);
                l.failed_attempts = view.failures;
                l.held_past_failure = view.state == LeaseState::HeldPastFailure;
                l.reason.clone_from(&view.reason);
                match step {
                    Some(Step::Wait(at)) => {
                        let at = wall_now_exact + at.saturating_sub(now).as_secs_f64();
                        // Whole seconds, rounded up: never before the action.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let at = at.ceil() as u64;
                        l.next_action_at = Some(at);
                        l.busy_since = None;
                    }
                    Some(Step::Done) => {
                        l.next_action_at = None;
                        l.busy_since = None;
                    }
                    Some(_) => {
                        l.next_action_at = None;
                        l.busy_since = Some(u64::try_from(wall_now).unwrap_or(0));
                    }
                    None => {}
                }
            }
        });
    }
}

/// Revokes the license's features if the driver unwinds.
struct RevokeOnPanic {
    catalog: &'static Catalog,
    product: &'static Product,
}

impl Drop for RevokeOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            entitlement::activate_license(self.catalog, self.product, FeatureSet::EMPTY, true);
        }
    }
}

/// One `CheckInLicense` of `token`, timed and recorded in `status()`.
pub(crate) async fn check_in_once(
    clients: &Clients,
    token: &str,
) -> Result<(), crate::aws::AwsFailure> {
    let timer = metrics::Timer::start();
    let answer = clients
        .licenses
        .check_in_license()
        .license_consumption_token(token)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("CheckInLicense", &e));
    timer.finish("CheckInLicense", answer.as_ref().copied());
    status::record_call("CheckInLicense", answer.as_ref().copied());
    answer
}

/// Checks the lease's consumption in at shutdown, retrying transient
/// failures for up to `budget`; revokes the license's features first (the
/// seat is no longer this process's once AWS has it back).
pub(crate) async fn check_in(
    catalog: &'static Catalog,
    product: &'static Product,
    clients: &Clients,
    lease: &SharedLease,
    budget: Duration,
) {
    let leftover = lock(lease).end();
    entitlement::activate_license(catalog, product, FeatureSet::EMPTY, false);
    let (token, arn) = match leftover {
        None => return,
        Some(Leftover::Consumption(token, arn)) => (token, arn),
        // A checkout was under way when the lease ended: the same client
        // token gives back the consumption AWS may have made, to check in.
        Some(Leftover::Checkout(client_token)) => {
            let Some(spec) = product.license() else {
                return;
            };
            let timer = metrics::Timer::start();
            let answer = tokio::time::timeout(budget, checkout(clients, spec, &client_token)).await;
            if let Ok(answer) = &answer {
                timer.finish("CheckoutLicense", answer.as_ref().map(|_| ()));
            }
            match answer {
                Ok(Ok(grant)) => (grant.token, grant.license_arn),
                _ => return,
            }
        }
    };
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
        budget,
    };
    let result = backoff
        .run(
            || check_in_once(clients, &token),
            |failure, retry_in| {
                if let Some(delay) = retry_in {
                    tracing::warn!(target: "marketgate", %failure, ?delay, "license check-in failed; retrying");
                }
            },
        )
        .await;
    status::update_license(|l| {
        if let Some(l) = l {
            l.state = LeaseState::CheckedIn;
            l.deadline = None;
        }
    });
    match result {
        Ok(()) => tracing::info!(target: "marketgate", license = %arn, "license checked in"),
        Err(Exhausted::Permanent(failure)) if is_gone(&failure) => {
            tracing::info!(target: "marketgate", license = %arn, "license consumption had already ended");
        }
        Err(Exhausted::Permanent(failure) | Exhausted::GaveUp { last: failure, .. }) => {
            tracing::warn!(
                target: "marketgate",
                %failure,
                "license check-in failed; AWS returns the seat when the consumption expires (at \
                 most 60 minutes)"
            );
        }
    }
}
