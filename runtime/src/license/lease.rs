//! Keeping one License Manager consumption alive for the life of the process.
//!
//! A PROVISIONAL checkout holds its seat for 60 minutes and is checked back
//! in automatically after that (see the module above). The runtime extends it well
//! before expiry, re-reads the license every 15 minutes with `GetLicense`
//! (which takes no seat, so a 1-seat contract is never locked out by
//! re-checks), and checks it in on shutdown.
//!
//! Policy while running: an upgrade (a new `Unit = None` entitlement the
//! manifest maps) or a renewal shows up at the next re-check without a
//! restart; a removed `Unit = None` entitlement is revoked. An expired or
//! suspended license prevents new starts (the checkout fails); a running
//! process keeps what it checked out for as long as AWS extends its
//! consumption, and loses every feature once an extension is refused.

use std::time::Duration;

use super::consumption::{Consumption, features_for};
use crate::aws::{Clients, classify};
use crate::catalog::{Catalog, Product};
use crate::entitlement;
use crate::status;

/// Timing of the keep-alive work.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    pub(crate) extend_every: Duration,
    pub(crate) check_every: Duration,
}

/// Extends and re-checks the consumption until the task is dropped.
pub(crate) async fn maintain(
    catalog: &'static Catalog,
    product: &'static Product,
    clients: Clients,
    consumption: Consumption,
    schedule: Schedule,
) {
    let mut extend = tokio::time::interval(schedule.extend_every);
    let mut check = tokio::time::interval(schedule.check_every);
    // Both fire immediately on the first tick; the checkout just happened.
    extend.tick().await;
    check.tick().await;
    loop {
        tokio::select! {
            _ = extend.tick() => {
                if !extend_once(catalog, product, &clients, &consumption).await {
                    // Revoked for good: re-checks must not grant anything again.
                    return;
                }
            }
            _ = check.tick() => check_once(catalog, product, &clients, &consumption).await,
        }
    }
}

async fn extend_once(
    catalog: &'static Catalog,
    product: &'static Product,
    clients: &Clients,
    consumption: &Consumption,
) -> bool {
    let result = clients
        .licenses
        .extend_license_consumption()
        .license_consumption_token(&consumption.token)
        .send()
        .await;
    match result {
        Ok(output) => {
            status::record_call("ExtendLicenseConsumption", Ok(()));
            status::recover("license-extension");
            let expiration = output.expiration().unwrap_or_default().to_owned();
            status::update_license(|l| {
                if let Some(l) = l {
                    l.expiration = expiration;
                    l.last_extended = Some(status::now_secs());
                }
            });
            tracing::debug!(target: "marketgate", "license consumption extended");
            true
        }
        Err(e) => {
            let failure = classify("ExtendLicenseConsumption", &e);
            status::record_call("ExtendLicenseConsumption", Err(&failure));
            if failure.retry == crate::aws::Retry::Transient {
                // The next tick retries, well inside the 60-minute TTL.
                status::degrade(
                    "license-extension",
                    format!("license consumption not extended yet: {failure}"),
                );
                tracing::warn!(target: "marketgate", %failure, "extension failed; will retry");
                true
            } else {
                let message = format!(
                    "License Manager refused to extend this process's license consumption \
                     ({failure}); every feature of product `{}` is revoked",
                    product.name()
                );
                tracing::error!(target: "marketgate", "{message}");
                status::degrade("license-extension", message);
                entitlement::activate(catalog, product, crate::catalog::FeatureSet::EMPTY);
                false
            }
        }
    }
}

async fn check_once(
    catalog: &'static Catalog,
    product: &'static Product,
    clients: &Clients,
    consumption: &Consumption,
) {
    let result = clients
        .licenses
        .get_license()
        .license_arn(&consumption.license_arn)
        .send()
        .await;
    let license = match result {
        Ok(output) => {
            status::record_call("GetLicense", Ok(()));
            output.license().cloned()
        }
        Err(e) => {
            let failure = classify("GetLicense", &e);
            status::record_call("GetLicense", Err(&failure));
            tracing::warn!(target: "marketgate", %failure, "license re-check failed");
            return;
        }
    };
    let Some(license) = license else {
        return;
    };
    let state = license.status().map(|s| s.as_str().to_owned());
    status::update_license(|l| {
        if let Some(l) = l {
            l.last_checked = Some(status::now_secs());
            l.license_state.clone_from(&state);
        }
    });
    if state.as_deref() != Some("AVAILABLE") {
        status::degrade(
            "license-state",
            format!(
                "the license is {}: new containers will not start; this one keeps its \
                 checkout while AWS extends it",
                state.as_deref().unwrap_or("in an unknown state")
            ),
        );
        return;
    }
    status::recover("license-state");
    // What we hold: the entitlements allowed at checkout, plus `Unit = None`
    // entitlements the license carries now (upgrades); minus `Unit = None`
    // ones it no longer carries (downgrades). Counted ones stay as checked out.
    let in_license: Vec<&str> = license
        .entitlements()
        .iter()
        .map(aws_sdk_licensemanager::types::Entitlement::name)
        .collect();
    let Some(spec) = product.license() else {
        return;
    };
    let allowed: Vec<String> = spec
        .entitlements()
        .iter()
        .filter(|e| {
            let present = in_license.contains(&e.name());
            if e.unit() == "None" {
                present
            } else {
                consumption.allowed.iter().any(|a| a == e.name())
            }
        })
        .map(|e| e.name().to_owned())
        .collect();
    let granted = features_for(product, &allowed);
    if granted != entitlement::granted() {
        tracing::info!(target: "marketgate", allowed = ?allowed, "license entitlements changed");
    }
    entitlement::activate(catalog, product, granted);
}

/// Returns the seat.
pub(crate) async fn check_in(clients: &Clients, consumption: &Consumption) {
    let result = clients
        .licenses
        .check_in_license()
        .license_consumption_token(&consumption.token)
        .send()
        .await;
    match result {
        Ok(_) => {
            status::record_call("CheckInLicense", Ok(()));
            tracing::info!(target: "marketgate", license = %consumption.license_arn, "license checked in");
        }
        Err(e) => {
            let failure = classify("CheckInLicense", &e);
            status::record_call("CheckInLicense", Err(&failure));
            tracing::warn!(
                target: "marketgate",
                %failure,
                "license check-in failed; AWS returns the seat when the consumption expires"
            );
        }
    }
}
