//! Compact JWS (RFC 7515) signed with PS256: `RegisterUsage`'s `Signature` and
//! `CheckoutLicense`'s `SignedToken`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::keys::{KeyError, SigningKey};

/// `header.payload.signature`, each part base64url without padding, signed
/// over the ASCII of `header.payload` as RFC 7515 §5.1 requires.
pub(crate) fn sign(key: &SigningKey, header: &Value, payload: &Value) -> Result<String, KeyError> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let signature = key.sign_ps256(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
    use serde_json::json;

    use super::*;

    #[test]
    fn token_has_three_parts_and_verifies() {
        let key = SigningKey::from_pem(include_str!("../keys/license-issuer.key.pem"))
            .expect("valid key");
        let token = sign(
            &key,
            &json!({"alg": "PS256", "typ": "JWT"}),
            &json!({"productCode": "p", "nonce": "n"}),
        )
        .expect("signs");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(payload["productCode"], "p");
        let spki_pem = key.public_key_pem();
        let body: String = spki_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let spki = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("b64");
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, spki)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).expect("b64"),
            )
            .expect("verifies");
    }
}
