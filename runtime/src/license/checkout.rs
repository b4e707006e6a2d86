//! `CheckoutLicense` as start-up and the lease's recovery both send it, and
//! what its answer grants.

use aws_sdk_licensemanager::operation::checkout_license::CheckoutLicenseOutput;
use aws_sdk_licensemanager::types::{CheckoutType, EntitlementData, EntitlementDataUnit};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::lease::Grant;
use crate::aws::{AwsFailure, Clients, Delivery, Retry, classify};
use crate::catalog::LicenseSpec;

/// Sends one `PROVISIONAL` checkout of every entitlement the process holds
/// for its whole life (tiers, and floating units with a `value`); the units
/// seller code takes on demand are checked out by `crate::units`.
/// Retries of one checkout reuse `client_token`, so that a request AWS
/// already served returns the same consumption instead of a second seat.
pub(crate) async fn checkout(
    clients: &Clients,
    spec: &LicenseSpec,
    client_token: &str,
) -> Result<Grant, AwsFailure> {
    let entitlements: Vec<EntitlementData> = spec
        .entitlements()
        .iter()
        .filter(|e| e.held_by_process())
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
    let output = clients
        .licenses
        .checkout_license()
        .product_sku(spec.sku())
        .checkout_type(CheckoutType::Provisional)
        .key_fingerprint(spec.key_fingerprint())
        .set_entitlements(Some(entitlements))
        .client_token(client_token)
        .send()
        .await
        .map_err(|e| classify("CheckoutLicense", &e))?;
    grant(&output)
}

/// Whether a `NoEntitlementsAllowedException` may only mean that every unit
/// is in use: the checkout asks for a counted entitlement.
pub(crate) fn asks_for_counted(spec: &LicenseSpec) -> bool {
    spec.entitlements()
        .iter()
        .any(|e| e.held_by_process() && e.unit() != "None")
}

/// An AWS timestamp string (`IssuedAt`, `Expiration`).
pub(crate) fn parse_time(text: &str) -> Option<std::time::SystemTime> {
    DateTime::from_str(text, Format::DateTime)
        .ok()
        .and_then(|t| std::time::SystemTime::try_from(t).ok())
}

fn grant(output: &CheckoutLicenseOutput) -> Result<Grant, AwsFailure> {
    let (Some(token), Some(arn)) = (output.license_consumption_token(), output.license_arn())
    else {
        return Err(AwsFailure {
            operation: "CheckoutLicense",
            code: None,
            message: "the response has no LicenseConsumptionToken or LicenseArn".to_owned(),
            status: None,
            retry: Retry::Permanent,
            delivery: Delivery::Answered,
        });
    };
    Ok(Grant {
        token: token.to_owned(),
        license_arn: arn.to_owned(),
        allowed: output
            .entitlements_allowed()
            .iter()
            .map(|e| e.name().to_owned())
            .collect(),
        issued_at: output.issued_at().and_then(parse_time),
        expiration: output.expiration().and_then(parse_time),
        expiration_text: output.expiration().unwrap_or_default().to_owned(),
    })
}
