//! RSA signing keys from PEM, and PS256 signatures.
//!
//! PS256 is RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt
//! (RFC 7518 §3.5), which is what AWS Marketplace's `RegisterUsage` signature
//! uses; aws-lc-rs's `RSA_PSS_SHA256` is exactly that.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error(
        "no PEM block found; expected -----BEGIN PRIVATE KEY----- (PKCS#8) or \
         -----BEGIN RSA PRIVATE KEY----- (PKCS#1), e.g. from \
         `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`"
    )]
    NoPem,
    #[error("the PEM body is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not an RSA private key aws-lc accepts (2048 to 8192 bits): {0}")]
    Rejected(String),
    #[error("signing failed")]
    Sign,
}

/// An RSA private key that signs PS256, with its public half as PEM.
pub(crate) struct SigningKey {
    pair: RsaKeyPair,
    public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private key material.
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM key.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        let pair = if label == "RSA PRIVATE KEY" {
            RsaKeyPair::from_der(&der)
        } else {
            RsaKeyPair::from_pkcs8(&der)
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Rejected("cannot encode its public key".to_owned()))?;
        let public_pem = encode_pem("PUBLIC KEY", spki.as_ref());
        Ok(Self { pair, public_pem })
    }

    /// The public key as `SubjectPublicKeyInfo` PEM (`-----BEGIN PUBLIC KEY-----`),
    /// the form AWS Marketplace gives sellers.
    pub(crate) fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Signs `message` with RSASSA-PSS SHA-256 (JWS `PS256`).
    pub(crate) fn sign_ps256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PSS_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| KeyError::Sign)?;
        Ok(signature)
    }
}

/// The label and DER bytes of the first PEM block in `pem`.
fn decode_pem(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let mut lines = pem.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
        })
        .ok_or(KeyError::NoPem)?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut closed = false;
    for line in lines {
        if line == end {
            closed = true;
            break;
        }
        body.push_str(line);
    }
    if !closed {
        return Err(KeyError::NoPem);
    }
    Ok((label, STANDARD.decode(body)?))
}

/// `der` as a PEM block with 64-character lines, as openssl writes it.
fn encode_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END ");
    pem.push_str(label);
    pem.push_str("-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    const KEY: &str = include_str!("../keys/license-issuer.key.pem");
    const PUBLIC: &str = include_str!("../keys/license-issuer.pub.pem");

    #[test]
    fn public_pem_matches_openssl_output() {
        let key = SigningKey::from_pem(KEY).expect("valid key");
        assert_eq!(key.public_key_pem(), PUBLIC);
    }

    #[test]
    fn signatures_verify_as_ps256() {
        let key = SigningKey::from_pem(KEY).expect("valid key");
        let signature = key.sign_ps256(b"header.payload").expect("signs");
        let (_, spki) = decode_pem(PUBLIC).expect("pem");
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, spki)
            .verify(b"header.payload", &signature)
            .expect("verifies");
    }

    #[test]
    fn garbage_is_rejected_with_a_hint() {
        let err = SigningKey::from_pem("not a key").unwrap_err();
        assert!(err.to_string().contains("openssl genpkey"), "{err}");
        let err =
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err();
        assert!(matches!(err, KeyError::Rejected(_)), "{err}");
    }
}
