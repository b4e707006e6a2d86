//! What happens to a checkout afterwards: `ExtendLicenseConsumption` and
//! `CheckInLicense`.

use serde_json::{Map, Value, json};

use super::state::PROVISIONAL_TTL;
use super::views::{CheckoutState, CheckoutType};
use crate::operation::{CheckInLicenseError, ExtendLicenseConsumptionError, Failure};
use crate::protocol::{Call, Output};
use crate::state::State;
use crate::timestamp;

/// `ExtendLicenseConsumption`: an active `PROVISIONAL` consumption of a
/// license still usable now is kept for another 60 minutes. `DryRun` makes
/// the same checks and changes nothing.
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
    let consumption = &licensing.consumptions[index];
    // Extension exists to keep a floating (provisional) checkout from being
    // checked in after 60 minutes; a perpetual one never expires.
    if consumption.checkout_type == CheckoutType::Perpetual {
        return Err(Failure::new(
            E::ValidationException,
            format!(
                "License consumption {token} is a PERPETUAL consumption: only PROVISIONAL \
                 consumptions expire and can be extended."
            ),
        ));
    }
    // AWS documents only that a license that is not usable (not AVAILABLE,
    // or outside its validity) allows no new checkouts; what an extension of
    // an existing consumption gets is undocumented. Refusing it with
    // ValidationException is the simulator's modelling choice. The
    // consumption stays active, holding what it took, until its expiration.
    if let Some(why) = licensing.unusable(consumption.license, call.now) {
        return Err(Failure::new(
            E::ValidationException,
            format!(
                "License {} {why}: its consumptions can no longer be extended.",
                licensing.licenses[consumption.license].0.arn
            ),
        ));
    }
    let consumption = &mut licensing.consumptions[index];
    if !dry_run {
        consumption.expiration = Some(call.now + PROVISIONAL_TTL);
        consumption.extensions += 1;
        state.revision += 1;
    }
    let mut output = Map::new();
    output.insert(
        "LicenseConsumptionToken".to_owned(),
        Value::from(consumption.token.clone()),
    );
    // A provisional consumption always has an expiration.
    if let Some(expiration) = consumption.expiration {
        output.insert(
            "Expiration".to_owned(),
            Value::from(timestamp::iso8601(expiration)),
        );
    }
    Ok(Value::Object(output))
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
    // A PERPETUAL checkout is the drawdown model: "counted units are drawn
    // permanently", so there is nothing to give back whatever the
    // entitlement's AllowCheckIn says. AWS documents no error for this; the
    // model's CheckInLicense declares ConflictException, the error it
    // answers when AllowCheckIn is false, so the simulator uses it here too.
    if licensing.consumptions[index].checkout_type == CheckoutType::Perpetual {
        return Err(Failure::new(
            E::ConflictException,
            format!(
                "License consumption {token} is a PERPETUAL consumption: its units are drawn \
                 for good and cannot be checked in."
            ),
        ));
    }
    // Nor can a PROVISIONAL checkout give back an entitlement whose
    // AllowCheckIn is false; it returns when the checkout expires.
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
