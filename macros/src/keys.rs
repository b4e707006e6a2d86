//! `RegisterUsage` public keys: parsed at compile time so a wrong file is a
//! build error, not a refusal in production.

use spki::der::pem;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A parsed RSA public key.
pub(crate) struct PublicKey {
    /// DER `SubjectPublicKeyInfo`.
    pub(crate) spki: Vec<u8>,
    /// DER PKCS#1 `RSAPublicKey` (what RSA verifiers take).
    pub(crate) rsa: Vec<u8>,
}

/// Parses a PEM `SubjectPublicKeyInfo` holding an RSA key. The error says
/// what the file is instead and how to get the right thing.
pub(crate) fn parse_rsa_spki_pem(text: &[u8]) -> Result<PublicKey, String> {
    let (label, der) = pem::decode_vec(text).map_err(|e| {
        format!(
            "it is not a PEM file ({e}); AWS Marketplace gives the key as \
             `-----BEGIN PUBLIC KEY-----` PEM text"
        )
    })?;
    match label {
        "PUBLIC KEY" => {}
        "RSA PUBLIC KEY" => {
            return Err(
                "it is a PKCS#1 `RSA PUBLIC KEY`; convert it to SubjectPublicKeyInfo with \
                 `openssl rsa -RSAPublicKey_in -in KEY -pubout`"
                    .to_owned(),
            );
        }
        other if other.contains("PRIVATE") => {
            return Err(format!(
                "it is a `{other}`: never ship a private key; use the public key AWS \
                 Marketplace gave you (`-----BEGIN PUBLIC KEY-----`)"
            ));
        }
        other => {
            return Err(format!(
                "its PEM label is `{other}`, expected `PUBLIC KEY` (SubjectPublicKeyInfo)"
            ));
        }
    }
    let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice())
        .map_err(|e| format!("it is not a valid SubjectPublicKeyInfo ({e})"))?;
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!(
            "it is not an RSA key (algorithm {}); RegisterUsage signatures are PS256, which \
             needs RSA",
            spki.algorithm.oid
        ));
    }
    let rsa = spki
        .subject_public_key
        .as_bytes()
        .ok_or("its key bit string is not byte-aligned")?;
    let key = pkcs1::RsaPublicKeyRef::try_from(rsa)
        .map_err(|e| format!("its RSA key does not parse ({e})"))?;
    let modulus = key.modulus.as_bytes();
    let bits = modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
    if !(1024..=8192).contains(&bits) {
        return Err(format!(
            "its RSA modulus has {bits} bits; expected 1024 to 8192"
        ));
    }
    Ok(PublicKey {
        spki: der.clone(),
        rsa: rsa.to_vec(),
    })
}
