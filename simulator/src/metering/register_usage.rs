//! `RegisterUsage`: the entitlement check and signature of hourly and
//! monthly container products.

use serde_json::{Map, Value, json};

use super::members;
use crate::config::{Platform, Pricing, Subscription};
use crate::jws;
use crate::operation::{Failure, RegisterUsageError, fail};
use crate::protocol::{Call, Input, Output};
use crate::state::State;
use crate::timestamp;

/// `RegisterUsage`.
pub(crate) fn register_usage(call: &Call<'_>, state: &mut State) -> Output<RegisterUsageError> {
    use RegisterUsageError as E;
    let (product_code, version, nonce) = parse_register_usage(call.input)?;

    let catalog = call.catalog;
    if catalog.platform == Platform::Unsupported {
        return Err(fail(
            E::PlatformNotSupportedException,
            "AWS Marketplace does not support metering usage from the underlying platform. \
             Currently, Amazon ECS, Amazon EKS, and AWS Fargate are supported.",
        ));
    }
    if call.caller.region != catalog.region {
        return Err(fail(
            E::InvalidRegionException,
            format!(
                "RegisterUsage must be called in the same AWS Region the ECS task was launched \
                 in ({}); the request was signed for {}. Take the Region from the environment \
                 instead of hard-coding it.",
                catalog.region, call.caller.region
            ),
        ));
    }
    let product = catalog.product_by_code(product_code).ok_or_else(|| {
        fail(
            E::InvalidProductCodeException,
            format!("Product code {product_code} does not match a published product."),
        )
    })?;
    if !matches!(product.pricing, Pricing::Hourly | Pricing::Monthly) {
        return Err(fail(
            E::InvalidProductCodeException,
            format!(
                "Product {product_code} is not priced hourly or monthly, so it does not use RegisterUsage."
            ),
        ));
    }
    let key = product.key(version).ok_or_else(|| {
        let versions: Vec<String> = product.keys.keys().map(ToString::to_string).collect();
        fail(
            E::InvalidPublicKeyVersionException,
            format!(
                "Public Key version {version} is invalid for product {product_code}; it has version(s) {}.",
                versions.join(", ")
            ),
        )
    })?;

    let subscription = state.subscription(product_code);
    let task = state.task(&call.caller.access_key_id, call.now);
    // AWS refuses an unsubscribed buyer only on a task's first call (see the
    // module docs). "First" is until the task has registered once: a task
    // refused for lack of a subscription must not get through by simply
    // calling again.
    if !task.registered.contains(product_code) && subscription != Subscription::Subscribed {
        return Err(fail(
            E::CustomerNotEntitledException,
            format!("The customer does not have a valid subscription for product {product_code}."),
        ));
    }

    let mut payload = Map::new();
    payload.insert("productCode".to_owned(), Value::from(product_code));
    payload.insert("publicKeyVersion".to_owned(), Value::from(version));
    if let Some(nonce) = nonce {
        payload.insert("nonce".to_owned(), Value::from(nonce));
    }
    payload.insert(
        "iat".to_owned(),
        Value::from(timestamp::epoch_secs(call.now)),
    );
    let signature = jws::sign(
        &key.signing,
        &json!({"alg": "PS256", "typ": "JWT"}),
        &Value::Object(payload),
    )
    .map_err(|e| fail(E::InternalServiceErrorException, e.to_string()))?;

    if task.registered.insert(product_code.to_owned()) {
        state.revision += 1;
    }
    let mut output = Map::new();
    output.insert("Signature".to_owned(), Value::from(signature));
    if let Some(expired) = key.expires_at.filter(|at| *at <= call.now) {
        output.insert(
            "PublicKeyRotationTimestamp".to_owned(),
            timestamp::epoch_json(expired),
        );
    }
    Ok(Value::Object(output))
}

/// Reads and checks `RegisterUsage`'s members. The model declares no generic
/// validation error for `RegisterUsage`, so a bad `Nonce` is reported with the
/// error of the other signature input, the key version.
fn parse_register_usage(
    input: Input<'_>,
) -> Result<(&str, i32, Option<&str>), Failure<RegisterUsageError>> {
    use RegisterUsageError as E;
    let product_code = members::product_code(input, E::InvalidProductCodeException)?;
    let version = input.required_int("PublicKeyVersion", E::InvalidPublicKeyVersionException)?;
    let version = i32::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            fail(
                E::InvalidPublicKeyVersionException,
                format!("PublicKeyVersion {version} must be an integer of at least 1"),
            )
        })?;
    let nonce = input.str("Nonce", E::InvalidPublicKeyVersionException)?;
    if nonce.is_some_and(|n| n.chars().count() > 255) {
        return Err(fail(
            E::InvalidPublicKeyVersionException,
            "Nonce must be at most 255 characters",
        ));
    }

    Ok((product_code, version, nonce))
}
