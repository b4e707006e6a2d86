//! The `SignedToken` of a checkout.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::state::CheckoutRequest;
use super::views::HeldEntitlement;
use crate::catalog::Issuer;
use crate::jws;
use crate::keys::KeyError;
use crate::timestamp;

/// The model's minimum length of `SignedToken`.
const SIGNED_TOKEN_MIN_LEN: usize = 4096;

/// The `SignedToken`: a compact JWS, PS256, by the license issuer's key,
/// over the plaintext fields License Manager's guide lists
/// (`entitlementsAllowed`, `expiration`, `issuedAt`, `licenseArn`,
/// `licenseConsumptionToken`, `nodeId`, `checkoutMetadata`). A perpetual
/// checkout never expires, so its payload has no `expiration`, as its
/// response has no `Expiration`. The model requires at least 4096
/// characters, so when the token is shorter its payload gets a `padding`
/// claim of `-` characters, which verifiers ignore.
pub(super) fn signed_token(
    issuer: &Issuer,
    held: &[HeldEntitlement],
    request: &CheckoutRequest,
    token: &str,
    arn: &str,
    now: SystemTime,
    expiration: Option<SystemTime>,
) -> Result<String, KeyError> {
    let header = json!({"alg": "PS256", "typ": "JWT", "kid": issuer.key_fingerprint});
    let entitlements: Vec<Value> = held
        .iter()
        .map(|h| json!({"name": h.name, "unit": h.unit.as_str(), "value": h.value}))
        .collect();
    let mut claims = Map::new();
    claims.insert("entitlementsAllowed".to_owned(), Value::Array(entitlements));
    if let Some(expiration) = expiration {
        claims.insert(
            "expiration".to_owned(),
            Value::from(timestamp::iso8601(expiration)),
        );
    }
    claims.insert("issuedAt".to_owned(), Value::from(timestamp::iso8601(now)));
    claims.insert("licenseArn".to_owned(), Value::from(arn));
    claims.insert("licenseConsumptionToken".to_owned(), Value::from(token));
    claims.insert(
        "nodeId".to_owned(),
        request.node_id.clone().map_or(Value::Null, Value::from),
    );
    claims.insert(
        "checkoutMetadata".to_owned(),
        json!({
            "checkoutType": request.checkout_type.as_str(),
            "productSKU": request.sku,
            "keyFingerprint": request.key_fingerprint,
            "issuer": issuer.name,
        }),
    );
    let mut signed = jws::sign(&issuer.key, &header, &Value::Object(claims.clone()))?;
    while signed.len() < SIGNED_TOKEN_MIN_LEN {
        // base64url turns 3 payload bytes into 4 characters, so this many
        // bytes more is enough in one round; the loop is only a guard.
        let missing = SIGNED_TOKEN_MIN_LEN - signed.len();
        let current = claims
            .get("padding")
            .and_then(Value::as_str)
            .map_or(0, str::len);
        claims.insert(
            "padding".to_owned(),
            Value::from("-".repeat(current + missing * 3 / 4 + 1)),
        );
        signed = jws::sign(&issuer.key, &header, &Value::Object(claims.clone()))?;
    }
    Ok(signed)
}
