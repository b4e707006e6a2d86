//! Start-up verification, one way per pricing model: `RegisterUsage` with
//! signature verification (hourly, monthly), a `MeterUsage` dry run of every
//! dimension (custom), `CheckoutLicense` (contract); docs/aws-rules.md.

use std::time::Duration;

use aws_smithy_types::DateTime;

use super::error::StartError;
use super::options::SEAT_WAIT_ENV;
use crate::aws::credentials::{CredentialSource, Verdict};
use crate::aws::retry::{Backoff, Exhausted};
use crate::aws::{AwsFailure, Clients, classify};
use crate::catalog::{Catalog, FeatureSet, Pricing, Product, RegistrationKey};
use crate::license::{self, Grant, Monotonic, Sent, features_for};
use crate::metrics;
use crate::random::random_hex;
use crate::region::DiscoveredRegion;
use crate::signature;
use crate::status::{self, LeaseState, LicenseStatus};

/// What verification established.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Features the license allowed (contract); for other models the
    /// product's features (narrowed by tier in `entitlement::grants`).
    pub(crate) granted: FeatureSet,
    /// The license checkout made and when it was sent (contract products).
    pub(crate) lease: Option<(Grant, Sent)>,
}

/// Context for turning AWS failures into start-up errors.
pub(crate) struct Context<'a> {
    pub(crate) catalog: &'static Catalog,
    pub(crate) product: &'static Product,
    pub(crate) region: &'a DiscoveredRegion,
    pub(crate) clients: &'a Clients,
    pub(crate) backoff: Backoff,
    pub(crate) clock: &'a crate::time::Clock,
    /// The lease's monotonic clock.
    pub(crate) lease_clock: &'a Monotonic,
    /// How long a contract checkout waits for a seat to be freed.
    pub(crate) seat_wait: Duration,
    /// Where the credentials came from (resolved before the first call).
    pub(crate) credentials: CredentialSource,
}

impl Context<'_> {
    /// Calls `op` with retries, recording each outcome in the status.
    async fn call<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, StartError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsFailure>>,
    {
        // A fake AWS does not become real by waiting: at start-up an
        // untrusted certificate refuses at once.
        let mut op = op;
        let op = move || {
            let attempt = op();
            async move {
                let timer = metrics::Timer::start();
                let result = attempt.await;
                timer.finish(operation, result.as_ref().map(|_| ()));
                result.map_err(|mut failure| {
                    if failure.is_untrusted_certificate() {
                        failure.retry = crate::aws::Retry::Permanent;
                    }
                    failure
                })
            }
        };
        let result = self
            .backoff
            .run(op, |failure, retry_in| {
                status::record_call(operation, Err(failure));
                match retry_in {
                    Some(delay) => tracing::warn!(
                        target: "marketgate", %failure, ?delay, "transient AWS failure; retrying"
                    ),
                    None => tracing::error!(target: "marketgate", %failure, "AWS call failed"),
                }
            })
            .await;
        match result {
            Ok(value) => {
                status::record_call(operation, Ok(()));
                Ok(value)
            }
            Err(Exhausted::Permanent(failure)) => Err(self.refusal(failure)),
            Err(Exhausted::GaveUp {
                last,
                attempts,
                elapsed,
            }) => Err(StartError::Unavailable {
                attempts,
                elapsed,
                last,
            }),
        }
    }

    /// The start-up error for a permanent failure, with what to do about it.
    fn refusal(&self, failure: AwsFailure) -> StartError {
        let product = self.product.name();
        if failure.is_missing_credentials() {
            return StartError::Credentials(failure);
        }
        if failure.is_untrusted_certificate() {
            return StartError::UntrustedPeer(failure);
        }
        // With credentials Metering refuses, any answer that is not about
        // the product, the subscription or the Region is most likely about
        // them (AWS does not say so): name the source and the fix.
        let about_the_product = matches!(
            failure.code.as_deref(),
            Some(
                "InvalidRegionException"
                    | "InvalidEndpointRegionException"
                    | "CustomerNotEntitledException"
                    | "InvalidProductCodeException"
                    | "InvalidPublicKeyVersionException"
                    | "InvalidUsageDimensionException"
                    | "NoEntitlementsAllowedException"
            )
        );
        if !about_the_product
            && self.credentials.verdict(self.product.pricing()) == Verdict::Refused
        {
            return StartError::RefusedCredentials {
                credentials: self.credentials,
                failure,
            };
        }
        match failure.code.as_deref() {
            Some("PlatformNotSupportedException") => StartError::NotOnAws(failure),
            Some("InvalidRegionException" | "InvalidEndpointRegionException") => {
                StartError::RegionMismatch {
                    region: self.region.region.clone(),
                    region_source: self.region.source,
                    failure,
                }
            }
            Some("CustomerNotEntitledException") => StartError::NotSubscribed { product, failure },
            Some("InvalidProductCodeException") => StartError::InvalidProductCode {
                product,
                code: self.product.code(),
                failure,
            },
            Some("InvalidPublicKeyVersionException") => StartError::InvalidPublicKeyVersion {
                product,
                version: self
                    .product
                    .registration()
                    .map_or(0, RegistrationKey::version),
                failure,
            },
            Some("InvalidUsageDimensionException") => {
                StartError::InvalidDimension { product, failure }
            }
            Some("NoEntitlementsAllowedException") => StartError::NotLicensed { product, failure },
            _ => StartError::Aws(failure),
        }
    }
}

/// Verifies the active product according to its pricing model.
pub(crate) async fn verify(cx: &Context<'_>) -> Result<Verified, StartError> {
    match cx.product.pricing() {
        Pricing::Hourly | Pricing::Monthly => register(cx).await,
        Pricing::Custom => dry_run(cx).await,
        Pricing::Contract => checkout(cx).await,
    }
}

/// `RegisterUsage` with a fresh nonce; the signature must verify against the
/// embedded key and answer exactly this request.
async fn register(cx: &Context<'_>) -> Result<Verified, StartError> {
    let product = cx.product;
    let nonce = random_hex(32);
    let version = product.registration().map_or(1, RegistrationKey::version);
    let version_i32 = i32::try_from(version).unwrap_or(i32::MAX);
    let output = cx
        .call("RegisterUsage", || {
            let request = cx
                .clients
                .metering
                .register_usage()
                .product_code(product.code())
                .public_key_version(version_i32)
                .nonce(&nonce);
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| classify("RegisterUsage", &e))
            }
        })
        .await?;
    match product.registration() {
        Some(key) => {
            let token = output.signature().ok_or(StartError::Signature {
                product: product.name(),
                source: signature::SignatureError::Missing,
            })?;
            let claims = signature::verify_registration(token, key, product.code(), &nonce)
                .map_err(|source| StartError::Signature {
                    product: product.name(),
                    source,
                })?;
            tracing::info!(
                target: "marketgate",
                product = product.name(),
                key_version = claims.public_key_version,
                issued_at = ?claims.issued_at,
                "RegisterUsage signature verified"
            );
        }
        // Only free products may lack a key (checked at compile time); they
        // unlock free features only, so a forged answer gains nothing.
        None => tracing::info!(
            target: "marketgate",
            product = product.name(),
            "RegisterUsage accepted (free product without a key: signature not checked)"
        ),
    }
    if let Some(rotation) = output.public_key_rotation_timestamp() {
        let message = format!(
            "AWS reports that public key version {version} of product `{}` expired at {rotation}; \
             put the new key and version in Marketplace.toml and rebuild",
            product.name()
        );
        tracing::warn!(target: "marketgate", "{message}");
        status::degrade("public-key", message);
    }
    Ok(Verified {
        granted: product.features(),
        lease: None,
    })
}

/// `MeterUsage` with `DryRun` for every dimension, in parallel.
async fn dry_run(cx: &Context<'_>) -> Result<Verified, StartError> {
    let product = cx.product;
    let dimensions: Vec<&'static str> = cx.catalog.dimension_names(product).collect();
    let checks = dimensions.iter().map(|dimension| async move {
        cx.call("MeterUsage", || {
            let request = cx
                .clients
                .metering
                .meter_usage()
                .product_code(product.code())
                .usage_dimension(*dimension)
                .usage_quantity(0)
                .timestamp(DateTime::from((cx.clock)()))
                .dry_run(true);
            async move {
                match request.send().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let failure = classify("MeterUsage", &e);
                        // "DryRun returns DryRunOperation if permitted"
                        // (model documentation; not a modelled error).
                        if failure.code.as_deref() == Some("DryRunOperation") {
                            Ok(())
                        } else {
                            Err(failure)
                        }
                    }
                }
            }
        })
        .await
    });
    for result in futures_util::future::join_all(checks).await {
        result?;
    }
    tracing::info!(
        target: "marketgate",
        product = product.name(),
        dimensions = ?dimensions,
        "MeterUsage dry run accepted for every dimension"
    );
    Ok(Verified {
        granted: product.features(),
        lease: None,
    })
}

/// `CheckoutLicense` PROVISIONAL for the manifest's entitlements. When every
/// unit is in use and the checkout asks for counted units, waits for one
/// (up to [`Context::seat_wait`]): during a rolling deployment the task being
/// replaced returns its seat when it checks in.
async fn checkout(cx: &Context<'_>) -> Result<Verified, StartError> {
    let product = cx.product;
    let Some(spec) = product.license() else {
        return Err(StartError::Aws(AwsFailure {
            operation: "CheckoutLicense",
            code: None,
            message: "contract product without a license spec".to_owned(),
            status: None,
            retry: crate::aws::Retry::Permanent,
            delivery: crate::aws::Delivery::Answered,
        }));
    };
    // One token for every retry of this checkout: a retried request that
    // AWS already served returns the same consumption instead of a second seat.
    let client_token = random_hex(32);
    // Real time: the wait is for another task to stop, not for AWS's clock.
    let waiting_since = tokio::time::Instant::now();
    let waited = || waiting_since.elapsed();
    let mut waits = 0u32;
    let mut sent = None;
    let (grant, sent) = loop {
        let result = cx
            .call("CheckoutLicense", || {
                // Only the first send anchors the deadline: a retry with the
                // same token may get the answer to the first request.
                if sent.is_none() {
                    sent = Some(Sent {
                        at: cx.lease_clock.now(),
                        wall: (cx.clock)(),
                    });
                }
                license::checkout(cx.clients, spec, &client_token)
            })
            .await;
        match result {
            Ok(grant) => break (grant, sent),
            Err(StartError::NotLicensed { failure, .. })
                if license::asks_for_counted(spec) && waited() < cx.seat_wait =>
            {
                waits += 1;
                // Refused: nothing was made, so the next send anchors afresh.
                sent = None;
                let delay = SEAT_RETRY
                    .delay(waits)
                    .min(cx.seat_wait.saturating_sub(waited()));
                let message = format!(
                    "no license seat is free: waiting for one, {:?} so far, at most {:?} (in a \
                     rolling deployment the task being replaced returns its seat when it stops; \
                     {SEAT_WAIT_ENV} sets the limit): {failure}",
                    waited(),
                    cx.seat_wait
                );
                tracing::warn!(target: "marketgate", product = product.name(), "{message}");
                // `main` has not run yet, so the program may not have set up
                // logging: an operator must still see why the task waits.
                if !tracing::dispatcher::has_been_set() {
                    eprintln!("marketgate: {message}");
                }
                tokio::time::sleep(delay).await;
            }
            Err(other) => return Err(other),
        }
    };
    let sent = sent.unwrap_or(Sent {
        at: cx.lease_clock.now(),
        wall: (cx.clock)(),
    });
    let granted = features_for(product, &grant.allowed);
    tracing::info!(
        target: "marketgate",
        product = product.name(),
        license = grant.license_arn,
        allowed = ?grant.allowed,
        expiration = grant.expiration_text,
        "license checked out"
    );
    status::update_license(|l| {
        *l = Some(LicenseStatus {
            state: LeaseState::Held,
            license_arn: grant.license_arn.clone(),
            consumption: None,
            expiration: grant.expiration_text.clone(),
            deadline: None,
            entitlements_allowed: grant.allowed.clone(),
            last_extended: None,
            last_extension_error: None,
            failed_attempts: 0,
            held_past_failure: false,
            reason: None,
            next_action_at: None,
            busy_since: None,
            last_checked: None,
            license_state: None,
        });
    });
    Ok(Verified {
        granted,
        lease: Some((grant, sent)),
    })
}

/// Delays between checkouts while waiting for a seat: 2 s, 4 s, ... up to
/// 30 s apart.
const SEAT_RETRY: Backoff = Backoff {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(30),
    budget: Duration::MAX,
};
