//! `CheckoutLicense`: which license a checkout draws on, which requested
//! entitlements it allows, and the answer it returns.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::signed_token::signed_token;
use super::state::{CheckoutRequest, Consumption, Licensing, PROVISIONAL_TTL};
use super::views::{CheckoutState, CheckoutType, HeldEntitlement};
use crate::config::{EntitlementConfig, EntitlementUnit};
use crate::constraints;
use crate::ids;
use crate::operation::{CheckoutLicenseError, Failure, fail};
use crate::protocol::{Call, Input, Output, validation};
use crate::state::State;
use crate::timestamp;

fn parse_unit<E: Copy>(
    text: &str,
    member: &str,
    invalid: E,
) -> Result<EntitlementUnit, Failure<E>> {
    EntitlementUnit::from_wire(text).ok_or_else(|| {
        let names: Vec<&str> = EntitlementUnit::ALL.iter().map(|u| u.as_str()).collect();
        Failure::new(
            invalid,
            validation(
                member,
                &format!("Member must satisfy enum value set: [{}]", names.join(", ")),
            ),
        )
    })
}

fn parse_checkout(
    input: Input<'_>,
) -> Result<(CheckoutRequest, String), Failure<CheckoutLicenseError>> {
    use CheckoutLicenseError as E;
    let sku = input.required_str("ProductSKU", E::ValidationException)?;
    let checkout_type = match input.required_str("CheckoutType", E::ValidationException)? {
        "PROVISIONAL" => CheckoutType::Provisional,
        "PERPETUAL" => CheckoutType::Perpetual,
        _ => {
            return Err(fail(
                E::ValidationException,
                validation(
                    "CheckoutType",
                    "Member must satisfy enum value set: [PROVISIONAL, PERPETUAL]",
                ),
            ));
        }
    };
    let key_fingerprint = input.required_str("KeyFingerprint", E::ValidationException)?;
    let list = input.required_list("Entitlements", E::ValidationException)?;
    let mut entitlements = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let what = format!("Entitlements.{}", i + 1);
        let data = Input::structure(item, &what, E::ValidationException)?;
        let name = data.required_str("Name", E::ValidationException)?;
        let value = data.str("Value", E::ValidationException)?;
        let unit = data.required_str("Unit", E::ValidationException)?;
        let unit = parse_unit(unit, &format!("{what}.Unit"), E::ValidationException)?;
        entitlements.push((name.to_owned(), value.map(str::to_owned), unit));
    }
    let client_token = input.required_str("ClientToken", E::ValidationException)?;
    if !constraints::is_lm_client_token(client_token) {
        return Err(fail(
            E::ValidationException,
            validation(
                "ClientToken",
                "Member must have length less than or equal to 2048 and satisfy regular expression pattern: \\S+",
            ),
        ));
    }
    let beneficiary = input.str("Beneficiary", E::ValidationException)?;
    let node_id = input.str("NodeId", E::ValidationException)?;
    let request = CheckoutRequest {
        sku: sku.to_owned(),
        checkout_type,
        key_fingerprint: key_fingerprint.to_owned(),
        entitlements,
        beneficiary: beneficiary.map(str::to_owned),
        node_id: node_id.map(str::to_owned),
    };
    Ok((request, client_token.to_owned()))
}

/// `CheckoutLicense`.
pub(crate) fn checkout_license(call: &Call<'_>, state: &mut State) -> Output<CheckoutLicenseError> {
    use CheckoutLicenseError as E;
    let (request, client_token) = parse_checkout(call.input)?;
    let now = call.now;
    let licensing = &mut state.licensing;
    licensing.sweep(now);

    // A retried checkout (same ClientToken) must not take a second seat.
    if let Some(&index) = licensing.client_tokens.get(&client_token) {
        let previous = &licensing.consumptions[index];
        if previous.state == CheckoutState::Active {
            if previous.request == request {
                return Ok(previous.response.clone());
            }
            return Err(fail(
                E::ValidationException,
                format!(
                    "ClientToken {client_token:?} was already used for a checkout with different parameters."
                ),
            ));
        }
    }

    let license = choose_license(licensing, &request, now)?;
    let held = allow(licensing, license, &request.entitlements)?;
    let spec = &licensing.licenses[license].0;
    let token = ids::hex::<16>();
    // Only a provisional checkout expires; a perpetual one draws its units
    // for good ("Counted units are drawn permanently"), so it has no
    // expiration to report.
    let expiration = match request.checkout_type {
        CheckoutType::Provisional => Some(now + PROVISIONAL_TTL),
        CheckoutType::Perpetual => None,
    };
    let signed_token = signed_token(
        &call.catalog.issuer,
        &held,
        &request,
        &token,
        &spec.arn,
        now,
        expiration,
    )
    .map_err(|e| fail(E::ServerInternalException, e.to_string()))?;
    let response = checkout_response(
        &request,
        &held,
        &token,
        signed_token,
        &spec.arn,
        now,
        expiration,
    );

    licensing.consumptions.push(Consumption {
        token,
        license,
        checkout_type: request.checkout_type,
        access_key_id: call.caller.access_key_id.clone(),
        node_id: request.node_id.clone(),
        client_token: client_token.clone(),
        request,
        held,
        issued_at: now,
        expiration,
        state: CheckoutState::Active,
        ended_at: None,
        extensions: 0,
        response: response.clone(),
    });
    licensing
        .client_tokens
        .insert(client_token, licensing.consumptions.len() - 1);
    state.revision += 1;
    Ok(response)
}

/// The license a checkout draws on: the newest usable one with the SKU and
/// issuer fingerprint.
fn choose_license(
    licensing: &Licensing,
    request: &CheckoutRequest,
    now: SystemTime,
) -> Result<usize, Failure<CheckoutLicenseError>> {
    use CheckoutLicenseError as E;
    let candidates: Vec<usize> = (0..licensing.licenses.len())
        .filter(|&i| licensing.licenses[i].0.sku == request.sku)
        .collect();
    if candidates.is_empty() {
        return Err(fail(
            E::ResourceNotFoundException,
            format!("No license found for ProductSKU {:?}.", request.sku),
        ));
    }
    let from_issuer: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| licensing.licenses[i].0.key_fingerprint == request.key_fingerprint)
        .collect();
    if from_issuer.is_empty() {
        return Err(fail(
            E::ResourceNotFoundException,
            format!(
                "No license for ProductSKU {:?} was issued with KeyFingerprint {:?}.",
                request.sku, request.key_fingerprint
            ),
        ));
    }
    let Some(license) = from_issuer
        .iter()
        .copied()
        .filter(|&i| licensing.unusable(i, now).is_none())
        .max_by_key(|&i| licensing.licenses[i].0.begin)
    else {
        let reasons: Vec<String> = from_issuer
            .iter()
            .map(|&i| {
                let why = licensing.unusable(i, now).unwrap_or_default();
                format!("license {} {why}", licensing.licenses[i].0.arn)
            })
            .collect();
        return Err(fail(
            E::NoEntitlementsAllowedException,
            format!("No Entitlements Allowed: {}", reasons.join("; ")),
        ));
    };

    Ok(license)
}

/// The `CheckoutLicense` response.
fn checkout_response(
    request: &CheckoutRequest,
    held: &[HeldEntitlement],
    token: &str,
    signed_token: String,
    arn: &str,
    now: SystemTime,
    expiration: Option<SystemTime>,
) -> Value {
    let allowed: Vec<Value> = held
        .iter()
        .map(|h| {
            let mut e = Map::new();
            e.insert("Name".to_owned(), Value::from(h.name.clone()));
            if let Some(value) = &h.value {
                e.insert("Value".to_owned(), Value::from(value.clone()));
            }
            e.insert("Unit".to_owned(), Value::from(h.unit.as_str()));
            Value::Object(e)
        })
        .collect();
    let mut response = Map::new();
    response.insert(
        "CheckoutType".to_owned(),
        Value::from(request.checkout_type.as_str()),
    );
    response.insert("LicenseConsumptionToken".to_owned(), Value::from(token));
    response.insert("EntitlementsAllowed".to_owned(), Value::Array(allowed));
    response.insert("SignedToken".to_owned(), Value::from(signed_token));
    if let Some(node) = &request.node_id {
        response.insert("NodeId".to_owned(), Value::from(node.clone()));
    }
    response.insert("IssuedAt".to_owned(), Value::from(timestamp::iso8601(now)));
    if let Some(expiration) = expiration {
        response.insert(
            "Expiration".to_owned(),
            Value::from(timestamp::iso8601(expiration)),
        );
    }
    response.insert("LicenseArn".to_owned(), Value::from(arn));
    Value::Object(response)
}

/// Decides which requested entitlements the license allows and how much of
/// each is taken.
fn allow(
    licensing: &Licensing,
    license: usize,
    requested: &[(String, Option<String>, EntitlementUnit)],
) -> Result<Vec<HeldEntitlement>, Failure<CheckoutLicenseError>> {
    use CheckoutLicenseError as E;
    let spec = &licensing.licenses[license].0;
    let mut held: Vec<HeldEntitlement> = Vec::new();
    let mut refused = Vec::new();
    for (name, value, unit) in requested {
        let Some(entitlement) = spec.entitlements.iter().find(|e| e.name == *name) else {
            refused.push(format!("{name} is not an entitlement of the license"));
            continue;
        };
        if entitlement.unit != *unit {
            refused.push(format!(
                "{name} has unit {} on the license, the request asked for {}",
                entitlement.unit.as_str(),
                unit.as_str()
            ));
            continue;
        }
        if *unit == EntitlementUnit::None {
            held.push(HeldEntitlement {
                name: name.clone(),
                unit: *unit,
                value: entitlement.value.clone().or_else(|| value.clone()),
                count: 0,
            });
            continue;
        }
        let count = match value.as_deref() {
            None => 1,
            Some(text) => text.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Failure::new(
                    E::InvalidParameterValueException,
                    format!("Entitlement {name} asks for Value {text:?}; a counted unit takes a whole number of at least 1."),
                )
            })?,
        };
        let in_use = licensing.in_use(license, name)
            + held
                .iter()
                .filter(|h| h.name == *name)
                .map(|h| h.count)
                .sum::<u64>();
        if fits(entitlement, in_use, count) {
            held.push(HeldEntitlement {
                name: name.clone(),
                unit: *unit,
                value: Some(count.to_string()),
                count,
            });
        } else {
            refused.push(format!(
                "{name}: {in_use} of {} in use, {count} more requested",
                entitlement.max_count.unwrap_or(0)
            ));
        }
    }
    if held.is_empty() {
        return Err(Failure::new(
            E::NoEntitlementsAllowedException,
            format!("No Entitlements Allowed: {}", refused.join("; ")),
        ));
    }
    Ok(held)
}

fn fits(entitlement: &EntitlementConfig, in_use: u64, count: u64) -> bool {
    let max = entitlement
        .max_count
        .and_then(|m| u64::try_from(m).ok())
        .unwrap_or(0);
    entitlement.overage || in_use.saturating_add(count) <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overage_lets_counts_exceed_the_maximum() {
        let mut e = EntitlementConfig {
            name: "Seats".to_owned(),
            unit: EntitlementUnit::Count,
            value: None,
            max_count: Some(2),
            overage: false,
            allow_check_in: true,
        };
        assert!(fits(&e, 1, 1));
        assert!(!fits(&e, 2, 1));
        e.overage = true;
        assert!(fits(&e, 2, 1));
    }
}
