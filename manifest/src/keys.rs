//! `RegisterUsage` public keys: parsed at compile time so a wrong file is a
//! build error, not a refusal in production.

use spki::der::pem;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A parsed RSA public key.
pub struct PublicKey {
    /// DER `SubjectPublicKeyInfo`.
    pub spki: Vec<u8>,
    /// DER PKCS#1 `RSAPublicKey` (what RSA verifiers take).
    pub rsa: Vec<u8>,
    /// Modulus size in bits.
    pub bits: usize,
}

/// Parses a PEM `SubjectPublicKeyInfo` holding an RSA key. The error says
/// what the file is instead and how to get the right thing.
///
/// # Errors
/// When `text` is not an RSA `SubjectPublicKeyInfo` PEM of 2048 to 8192 bits.
pub fn parse_rsa_spki_pem(text: &[u8]) -> Result<PublicKey, String> {
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
    // The runtime verifies with the AWS SDK's own crypto provider
    // (aws-lc-rs), whose PS256 verifier takes 2048- to 8192-bit keys.
    if !(2048..=8192).contains(&bits) {
        return Err(format!(
            "its RSA modulus has {bits} bits; PS256 verification needs 2048 to 8192 bits"
        ));
    }
    // aws-lc refuses what no RSA key pair can have (`rsa.c`,
    // `is_public_component_of_rsa_key_good`): an even modulus, and an
    // exponent that is even, 1, or over 33 bits (its DoS limit). Accepting
    // such a key here would refuse every start-up instead of the build.
    let exponent = key.public_exponent.as_bytes();
    let exponent_bits =
        exponent.len() * 8 - exponent.first().map_or(8, |b| b.leading_zeros() as usize);
    let odd = |n: &[u8]| n.last().is_some_and(|b| b & 1 == 1);
    if !odd(modulus) || !odd(exponent) || !(2..=33).contains(&exponent_bits) {
        return Err(format!(
            "it is not a usable RSA public key ({}); the file is damaged or was edited: \
             download the key again from the AWS Marketplace Management Portal",
            if odd(modulus) {
                "the public exponent must be odd, at least 3 and at most 33 bits"
            } else {
                "the modulus is even"
            }
        ));
    }
    Ok(PublicKey {
        spki: der.clone(),
        rsa: rsa.to_vec(),
        bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_an_rsa_spki_and_keeps_both_encodings() {
        let key = parse_rsa_spki_pem(include_bytes!("../testdata/rsa2048.pem")).expect("valid key");
        assert_eq!(key.spki.first(), Some(&0x30));
        assert!(key.spki.len() > key.rsa.len());
        assert!(key.spki.ends_with(&key.rsa));
    }

    #[test]
    fn explains_what_the_file_is_instead() {
        let err = |bytes: &[u8]| parse_rsa_spki_pem(bytes).err().expect("must be refused");
        assert!(err(include_bytes!("../testdata/rsa2048-pkcs1.pem")).contains("PKCS#1"));
        assert!(err(include_bytes!("../testdata/rsa1024.pem")).contains("1024 bits"));
        assert!(err(include_bytes!("../testdata/ec.pem")).contains("not an RSA key"));
        assert!(
            err(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .contains("never ship a private key")
        );
        assert!(err(b"hello").contains("not a PEM file"));
    }

    /// Found by the `manifest` fuzz target
    /// (fuzz/corpus/manifest/regression-even-exponent): a key with an even
    /// exponent parsed here, but aws-lc, the runtime's verifier, refuses it,
    /// so every start-up would have failed instead of the build.
    #[test]
    fn refuses_keys_the_runtime_verifier_refuses() {
        let err = |bytes: &[u8]| parse_rsa_spki_pem(bytes).err().expect("must be refused");
        for (file, why) in [
            (
                include_bytes!("../testdata/rsa2048-exponent-65536.pem").as_slice(),
                "the public exponent must be odd",
            ),
            (
                include_bytes!("../testdata/rsa2048-exponent-1.pem").as_slice(),
                "the public exponent must be odd",
            ),
            (
                include_bytes!("../testdata/rsa2048-exponent-35-bits.pem").as_slice(),
                "at most 33 bits",
            ),
            (
                include_bytes!("../testdata/rsa2048-even-modulus.pem").as_slice(),
                "the modulus is even",
            ),
        ] {
            let message = err(file);
            assert!(message.contains(why), "{message}");
            assert!(message.contains("download the key again"), "{message}");
        }
    }
}
