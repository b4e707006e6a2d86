//! Start-up verification, one way per pricing model: `RegisterUsage` with
//! signature verification (hourly, monthly), a `MeterUsage` dry run of every
//! dimension (custom), `CheckoutLicense` (contract); docs/aws-rules.md.

use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};
use aws_smithy_types::DateTime;

use super::error::StartError;
use crate::aws::retry::{Backoff, Exhausted};
use crate::aws::{AwsFailure, Clients, classify};
use crate::catalog::{Catalog, FeatureSet, Pricing, Product, RegistrationKey};
use crate::license::{Consumption, features_for};
use crate::random::random_hex;
use crate::region::DiscoveredRegion;
use crate::signature;
use crate::status::{self, LicenseStatus};

/// What verification established.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Features the license allowed (contract); for other models the
    /// product's features (narrowed by tier in `entitlement::grants`).
    pub(crate) granted: FeatureSet,
    /// The license consumption held (contract products).
    pub(crate) consumption: Option<Consumption>,
}

/// Context for turning AWS failures into start-up errors.
pub(crate) struct Context<'a> {
    pub(crate) catalog: &'static Catalog,
    pub(crate) product: &'static Product,
    pub(crate) region: &'a DiscoveredRegion,
    pub(crate) clients: &'a Clients,
    pub(crate) backoff: Backoff,
    pub(crate) clock: &'a crate::time::Clock,
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
                attempt.await.map_err(|mut failure| {
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
        consumption: None,
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
        consumption: None,
    })
}

/// `CheckoutLicense` PROVISIONAL for the manifest's entitlements.
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
    let entitlements: Vec<EntitlementData> = spec
        .entitlements()
        .iter()
        .filter_map(|e| {
            let mut data = EntitlementData::builder()
                .name(e.name())
                .unit(EntitlementDataUnit::from(e.unit()));
            if let Some(value) = e.value() {
                data = data.value(value);
            }
            data.build().ok()
        })
        .collect();
    let output = cx
        .call("CheckoutLicense", || {
            let request = cx
                .clients
                .licenses
                .checkout_license()
                .product_sku(spec.sku())
                .checkout_type(CheckoutType::Provisional)
                .key_fingerprint(spec.key_fingerprint())
                .set_entitlements(Some(entitlements.clone()))
                .client_token(&client_token);
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| classify("CheckoutLicense", &e))
            }
        })
        .await?;
    let allowed: Vec<String> = output
        .entitlements_allowed()
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    let granted = features_for(product, &allowed);
    let (Some(token), Some(arn)) = (output.license_consumption_token(), output.license_arn())
    else {
        return Err(StartError::Aws(AwsFailure {
            operation: "CheckoutLicense",
            code: None,
            message: "the response has no LicenseConsumptionToken or LicenseArn".to_owned(),
            status: None,
            retry: crate::aws::Retry::Permanent,
            delivery: crate::aws::Delivery::Answered,
        }));
    };
    tracing::info!(
        target: "marketgate",
        product = product.name(),
        license = arn,
        allowed = ?allowed,
        expiration = output.expiration().unwrap_or("?"),
        "license checked out"
    );
    let expiration = output.expiration().unwrap_or_default().to_owned();
    status::update_license(|l| {
        *l = Some(LicenseStatus {
            license_arn: arn.to_owned(),
            expiration,
            entitlements_allowed: allowed.clone(),
            last_extended: None,
            last_checked: None,
            license_state: None,
        });
    });
    Ok(Verified {
        granted,
        consumption: Some(Consumption {
            token: token.to_owned(),
            license_arn: arn.to_owned(),
            allowed,
        }),
    })
}
