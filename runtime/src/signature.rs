//! Verifying the `Signature` that `RegisterUsage` returns.
//!
//! It is a compact JWS, `alg` PS256 (RSASSA-PSS, SHA-256, MGF1-SHA-256,
//! 32-byte salt), over `{productCode, publicKeyVersion, nonce, iat}`. A
//! response that does not verify against the key embedded from the manifest
//! did not come from AWS Marketplace: start-up refuses, it never warns.
//!
//! Verification uses the `jsonwebtoken` crate (a maintained JOSE
//! implementation) on its aws-lc-rs backend: aws-lc-rs is the crypto
//! provider the AWS SDK already links for TLS, so no second RSA
//! implementation ships in the binary. Expiry and the other registered
//! claims are not required: AWS's token carries only `iat`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::catalog::RegistrationKey;

/// Why a `RegisterUsage` signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The response carried no signature at all.
    #[error("the RegisterUsage response has no Signature")]
    Missing,
    /// Not a compact JWS.
    #[error("the RegisterUsage Signature is not a compact JWS: {0}")]
    Malformed(String),
    /// Signed with something other than PS256.
    #[error("the RegisterUsage Signature uses `alg` {0:?}; only PS256 is accepted")]
    Algorithm(String),
    /// The RSA-PSS signature does not verify against the embedded key.
    #[error(
        "the RegisterUsage Signature does not verify against the public key (version {version}) \
         embedded from Marketplace.toml: the response did not come from AWS Marketplace \
         (possible tampering, e.g. an endpoint or DNS override) or the manifest holds the \
         wrong key"
    )]
    Invalid {
        /// Key version used.
        version: u32,
    },
    /// A claim is absent (under both of its spellings).
    #[error("the RegisterUsage Signature has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim differs from what was asked for.
    #[error(
        "the RegisterUsage Signature's `{claim}` is {actual:?}, but the request sent {expected:?} \
         (possible replay or tampering)"
    )]
    Mismatch {
        /// The claim.
        claim: &'static str,
        /// What the request sent.
        expected: String,
        /// What the signature says.
        actual: String,
    },
}

/// What a verified signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistrationClaims {
    /// The product code AWS registered.
    pub(crate) product_code: String,
    /// The key version.
    pub(crate) public_key_version: u32,
    /// The nonce of the request.
    pub(crate) nonce: String,
    /// Issued-at, seconds since the epoch, if present.
    pub(crate) issued_at: Option<i64>,
}

/// Verifies `token` against `key` and checks that it answers exactly this
/// request (`product_code`, `key.version()`, `nonce`).
///
/// # Errors
/// [`SignatureError`] on any defect; there is no partial acceptance.
pub(crate) fn verify_registration(
    token: &str,
    key: &RegistrationKey,
    product_code: &str,
    nonce: &str,
) -> Result<RegistrationClaims, SignatureError> {
    let token = token.trim();
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::PS256 {
        return Err(SignatureError::Algorithm(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(Algorithm::PS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_rsa_der(key.rsa_der()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) => SignatureError::Invalid {
            version: key.version(),
        },
        ErrorKind::InvalidAlgorithm => SignatureError::Algorithm("not PS256".to_owned()),
        _ => SignatureError::Malformed(e.to_string()),
    })?
    .claims;
    let got_code = string_claim(&claims, "productCode", "ProductCode")?;
    let got_nonce = string_claim(&claims, "nonce", "Nonce")?;
    let got_version = version_claim(&claims)?;
    expect("productCode", product_code, &got_code)?;
    expect(
        "publicKeyVersion",
        &key.version().to_string(),
        &got_version.to_string(),
    )?;
    expect("nonce", nonce, &got_nonce)?;
    Ok(RegistrationClaims {
        product_code: got_code,
        public_key_version: got_version,
        nonce: got_nonce,
        issued_at: claims.get("iat").and_then(Value::as_i64),
    })
}

fn expect(claim: &'static str, expected: &str, actual: &str) -> Result<(), SignatureError> {
    if expected == actual {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            claim,
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        })
    }
}

/// A claim under either spelling AWS's sources use (the seller guide's prose
/// capitalises, its sample code and NGINX's integration use lower camel
/// case). Both present and different is a mismatch, never a pick.
fn claim<'a>(
    claims: &'a Value,
    camel: &'static str,
    capital: &'static str,
) -> Result<&'a Value, SignatureError> {
    match (claims.get(camel), claims.get(capital)) {
        (Some(a), Some(b)) if a != b => Err(SignatureError::Mismatch {
            claim: camel,
            expected: a.to_string(),
            actual: b.to_string(),
        }),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(SignatureError::MissingClaim(camel)),
    }
}

fn string_claim(
    claims: &Value,
    camel: &'static str,
    capital: &'static str,
) -> Result<String, SignatureError> {
    claim(claims, camel, capital)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SignatureError::Malformed(format!("`{camel}` is not a string")))
}

/// `publicKeyVersion` is an integer; AWS's Java sample compares it as text,
/// so a numeric string is accepted too.
fn version_claim(claims: &Value) -> Result<u32, SignatureError> {
    let value = claim(claims, "publicKeyVersion", "PublicKeyVersion")?;
    value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| {
            SignatureError::Malformed("`publicKeyVersion` is not a whole number".to_owned())
        })
}

#[cfg(test)]
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA256, RsaKeyPair};

    struct Signer {
        pair: RsaKeyPair,
        key: RegistrationKey,
    }

    fn signer() -> Signer {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate");
        let rsa: &'static [u8] = Box::leak(pair.public_key().as_ref().to_vec().into_boxed_slice());
        Signer {
            key: RegistrationKey::__new(2, &[], rsa),
            pair,
        }
    }

    impl Signer {
        fn sign(&self, header: &str, payload: &str) -> String {
            let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
            let mut sig = vec![0; self.pair.public_modulus_len()];
            self.pair
                .sign(
                    &RSA_PSS_SHA256,
                    &SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .expect("sign");
            format!("{signing_input}.{}", b64(&sig))
        }
    }

    const HEADER: &str = r#"{"alg":"PS256","typ":"JWT"}"#;

    #[test]
    fn accepts_lower_camel_and_capitalised_claims() {
        let s = signer();
        let camel = s.sign(
            HEADER,
            r#"{"productCode":"p1","publicKeyVersion":2,"nonce":"n","iat":5}"#,
        );
        let claims = verify_registration(&camel, &s.key, "p1", "n").expect("valid");
        assert_eq!(claims.issued_at, Some(5));
        let capital = s.sign(
            HEADER,
            r#"{"ProductCode":"p1","PublicKeyVersion":"2","Nonce":"n"}"#,
        );
        assert!(verify_registration(&capital, &s.key, "p1", "n").is_ok());
    }

    #[test]
    fn refuses_mismatched_missing_or_contradictory_claims() {
        let s = signer();
        let t = s.sign(
            HEADER,
            r#"{"productCode":"p2","publicKeyVersion":2,"nonce":"n"}"#,
        );
        assert!(matches!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Mismatch {
                claim: "productCode",
                ..
            })
        ));
        let t = s.sign(
            HEADER,
            r#"{"productCode":"p1","publicKeyVersion":2,"nonce":"old"}"#,
        );
        assert!(matches!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Mismatch { claim: "nonce", .. })
        ));
        let t = s.sign(
            HEADER,
            r#"{"productCode":"p1","publicKeyVersion":1,"nonce":"n"}"#,
        );
        assert!(matches!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Mismatch {
                claim: "publicKeyVersion",
                ..
            })
        ));
        let t = s.sign(HEADER, r#"{"productCode":"p1","publicKeyVersion":2}"#);
        assert_eq!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::MissingClaim("nonce"))
        );
        let t = s.sign(
            HEADER,
            r#"{"productCode":"p1","ProductCode":"free","publicKeyVersion":2,"nonce":"n"}"#,
        );
        assert!(matches!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Mismatch { .. })
        ));
    }

    #[test]
    fn refuses_other_keys_algorithms_and_garbage() {
        let s = signer();
        let other = signer();
        let payload = r#"{"productCode":"p1","publicKeyVersion":2,"nonce":"n"}"#;
        let t = other.sign(HEADER, payload);
        assert_eq!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Invalid { version: 2 })
        );
        let t = s.sign(r#"{"alg":"none"}"#, payload);
        assert!(matches!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Malformed(_) | SignatureError::Algorithm(_))
        ));
        let t = s.sign(r#"{"alg":"RS256"}"#, payload);
        assert_eq!(
            verify_registration(&t, &s.key, "p1", "n"),
            Err(SignatureError::Algorithm("RS256".to_owned()))
        );
        // A valid signature with the payload swapped.
        let good = s.sign(HEADER, payload);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = b64(r#"{"productCode":"p1","publicKeyVersion":2,"nonce":"m"}"#.as_bytes());
        parts[1] = &forged;
        assert_eq!(
            verify_registration(&parts.join("."), &s.key, "p1", "m"),
            Err(SignatureError::Invalid { version: 2 })
        );
        assert!(matches!(
            verify_registration("a.b", &s.key, "p1", "n"),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify_registration("!!.!!.!!", &s.key, "p1", "n"),
            Err(SignatureError::Malformed(_))
        ));
    }
}
