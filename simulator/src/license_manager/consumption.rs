//! What happens to a checkout afterwards: `ExtendLicenseConsumption` and
//! `CheckInLicense`.

use serde_json::json;

use super::state::PROVISIONAL_TTL;
use super::views::CheckoutState;
use crate::operation::{CheckInLicenseError, ExtendLicenseConsumptionError, Failure};
use crate::protocol::{Call, Output};
use crate::state::State;
use crate::timestamp;

/// `ExtendLicenseConsumption`.
pub(crate) fn extend_license_consumption(
    call: &Call<'_>,
    state: &mut State,
) -> Output<ExtendLicenseConsumptionError> {
    use ExtendLicenseConsumptionError as E;
    let input = call.input;
    let token = input.required_str("LicenseConsumptionToken", E::ValidationException)?;
    let dry_run = input
        .bool("DryRun", E::ValidationException)?
        .unwrap_or(false);
    let licensing = &mut state.licensing;
    let index = licensing
        .active(token, call.now)
        .ok_or_else(|| not_found(E::ResourceNotFoundException, token, "checked in"))?;
    let consumption = &mut licensing.consumptions[index];
    if !dry_run {
        consumption.expiration = call.now + PROVISIONAL_TTL;
        consumption.extensions += 1;
        state.revision += 1;
    }
    Ok(json!({
        "LicenseConsumptionToken": consumption.token,
        "Expiration": timestamp::iso8601(consumption.expiration),
    }))
}

/// `CheckInLicense`.
pub(crate) fn check_in_license(call: &Call<'_>, state: &mut State) -> Output<CheckInLicenseError> {
    use CheckInLicenseError as E;
    let input = call.input;
    let token = input.required_str("LicenseConsumptionToken", E::ValidationException)?;
    input.str("Beneficiary", E::ValidationException)?;
    let licensing = &mut state.licensing;
    let index = licensing
        .active(token, call.now)
        .ok_or_else(|| not_found(E::ResourceNotFoundException, token, "already checked in"))?;
    let spec = &licensing.licenses[licensing.consumptions[index].license].0;
    // Drawdown entitlements (AllowCheckIn false) cannot be given back.
    if let Some(locked) = licensing.consumptions[index].held.iter().find(|h| {
        h.count > 0
            && spec
                .entitlements
                .iter()
                .any(|e| e.name == h.name && !e.allow_check_in)
    }) {
        return Err(Failure::new(
            E::ConflictException,
            format!(
                "Entitlement {} of license {} does not allow check-in.",
                locked.name, spec.arn
            ),
        ));
    }
    let consumption = &mut licensing.consumptions[index];
    consumption.state = CheckoutState::CheckedIn;
    consumption.ended_at = Some(call.now);
    state.revision += 1;
    Ok(json!({}))
}

/// The error for a token that names no active consumption, saying it may
/// have been `ended`.
fn not_found<E>(kind: E, token: &str, ended: &str) -> Failure<E> {
    Failure::new(
        kind,
        format!(
            "License consumption {token} not found: it was {ended}, expired after 60 minutes, or never existed."
        ),
    )
}
