//! The `RegisterUsage` signature check (`signature::verify_registration`):
//! no token is accepted unless the embedded key signed exactly the claims of
//! the request, and nothing panics.
//!
//! The first byte picks a mode: `R`, `M`, `S` or `Q` (any other byte: its
//! value modulo 4, in that order):
//!
//! - `R` (0) raw: the rest is a token (lossy UTF-8), checked against the
//!   request [`PRODUCT`], [`NONCE`], key version [`VERSION`]. Accepted only if
//!   a strict reference check (canonical base64url parts, `alg` PS256,
//!   RSASSA-PSS verified with aws-lc-rs directly, claims equal) accepts it
//!   too. The seeds hold tokens signed with the test key.
//! - `M` (1) mutate: byte 2 picks one of the tokens signed at start-up
//!   ([`variants`]), the rest is a list of edits to it (bit flips, inserted,
//!   deleted or replaced bytes, JSON members set or removed in the header or
//!   payload, parts re-encoded in another base64 alphabet or padding, parts
//!   taken from another token, whitespace around it), checked against the
//!   request that token answers. Accepted if and only if the result, without
//!   surrounding whitespace (the verifier trims it; the signed bytes are
//!   unchanged), is byte-identical to a signed token that answers the
//!   request.
//! - `S` (2) signed: lines `product`, `nonce`, `version`, `header JSON`, then
//!   the payload; header and payload are signed with the test key as given.
//!   Accepted only if the header says PS256 and the payload's claims are
//!   those of the request (under either spelling, never contradicting);
//!   a plain well-formed payload answering the request must be accepted.
//! - `Q` (3) request: a valid token (byte 2), then lines `product`, `nonce`,
//!   `version`: accepted if and only if they are the token's claims.

#![no_main]

use std::sync::LazyLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use marketgate::RegistrationKey;
use marketgate::fuzzing::{RegistrationClaims, verify_registration};
use serde_json::{Map, Value};

/// The product code the raw and mutation requests send.
const PRODUCT: &str = "prod-fuzz";
/// The nonce they send.
const NONCE: &str = "nonce-fuzz";
/// The version of the embedded key.
const VERSION: u32 = 2;

/// The simulator's test-only license issuer key (published in the
/// repository): the fuzz targets' "AWS Marketplace" key.
const TEST_KEY: &str = include_str!("../../simulator/keys/license-issuer.key.pem");

struct Signer {
    pair: RsaKeyPair,
    /// PKCS#1 `RSAPublicKey`, what `RegistrationKey::rsa_der` holds.
    rsa: &'static [u8],
}

static SIGNER: LazyLock<Signer> = LazyLock::new(|| {
    let body: String = TEST_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).expect("test key PEM");
    let pair = RsaKeyPair::from_pkcs8(&der).expect("test key PKCS#8");
    let rsa = Box::leak(pair.public_key().as_ref().to_vec().into_boxed_slice());
    Signer { pair, rsa }
});

impl Signer {
    fn key(&self, version: u32) -> RegistrationKey {
        RegistrationKey::__new(version, &[], self.rsa)
    }

    /// A compact JWS over the exact bytes of `header` and `payload`.
    fn sign(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PSS_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// A token signed with the test key and the request it answers.
struct Signed {
    token: String,
    product: &'static str,
    nonce: &'static str,
    version: u32,
}

/// Tokens as AWS sends them (both claim spellings, numeric and string
/// versions, with and without `iat`), and one for another request, signed
/// once per process.
fn variants() -> &'static [Signed] {
    static VARIANTS: LazyLock<Vec<Signed>> = LazyLock::new(|| {
        let s = &*SIGNER;
        let typ = br#"{"alg":"PS256","typ":"JWT"}"#.as_slice();
        let bare = br#"{"alg":"PS256"}"#.as_slice();
        let kid = br#"{"alg":"PS256","kid":"2"}"#.as_slice();
        [
            (
                typ,
                r#"{"productCode":"prod-fuzz","publicKeyVersion":2,"nonce":"nonce-fuzz","iat":1795694400}"#,
                PRODUCT,
                NONCE,
            ),
            (
                bare,
                r#"{"ProductCode":"prod-fuzz","PublicKeyVersion":"2","Nonce":"nonce-fuzz"}"#,
                PRODUCT,
                NONCE,
            ),
            (
                kid,
                r#"{"productCode":"prod-fuzz","ProductCode":"prod-fuzz","publicKeyVersion":2,"PublicKeyVersion":2,"nonce":"nonce-fuzz","Nonce":"nonce-fuzz"}"#,
                PRODUCT,
                NONCE,
            ),
            (
                typ,
                r#"{"productCode":"other-product","publicKeyVersion":2,"nonce":"other-nonce","iat":1}"#,
                "other-product",
                "other-nonce",
            ),
        ]
        .into_iter()
        .map(|(header, payload, product, nonce)| Signed {
            token: s.sign(header, payload.as_bytes()),
            product,
            nonce,
            version: VERSION,
        })
        .collect()
    });
    &VARIANTS
}

/// Reads the fuzz input front to back; reads past the end give zeros.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mode = match mode {
        b'R' => 0,
        b'M' => 1,
        b'S' => 2,
        b'Q' => 3,
        other => other % 4,
    };
    match mode {
        0 => raw(rest),
        1 => mutate(rest),
        2 => signed(rest),
        _ => request(rest),
    }
});

fn raw(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let key = SIGNER.key(VERSION);
    if let Ok(claims) = verify_registration(&token, &key, PRODUCT, NONCE) {
        assert_eq!(
            (claims.product_code.as_str(), claims.nonce.as_str()),
            (PRODUCT, NONCE)
        );
        assert_eq!(claims.public_key_version, VERSION);
        assert!(
            reference_accepts(token.trim(), PRODUCT, NONCE, VERSION),
            "accepted a token the strict reference check refuses: {token:?}"
        );
    }
}

fn mutate(data: &[u8]) {
    let mut input = Reader(data);
    let all = variants();
    let original = &all[usize::from(input.u8()) % all.len()];
    let mut token = original.token.clone().into_bytes();
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        edit(&mut token, &mut input, all);
    }
    let token = String::from_utf8_lossy(&token);
    let key = SIGNER.key(original.version);
    let result = verify_registration(&token, &key, original.product, original.nonce);
    let answers = all.iter().any(|v| {
        v.token == token.trim()
            && (v.product, v.nonce, v.version)
                == (original.product, original.nonce, original.version)
    });
    match result {
        Ok(claims) => {
            assert!(answers, "accepted an altered token: {token:?}");
            check_claims(&claims, original.product, original.nonce, original.version);
        }
        Err(error) => assert!(!answers, "refused a signed token ({error}): {token:?}"),
    }
}

/// Applies one edit described by `input` to `token`.
fn edit(token: &mut Vec<u8>, input: &mut Reader<'_>, all: &[Signed]) {
    let op = input.u8() % 12;
    let at = |token: &Vec<u8>, pos: u16| usize::from(pos) % (token.len() + 1);
    match op {
        0 => {
            let (pos, bit) = (input.u16(), input.u8());
            if !token.is_empty() {
                let i = usize::from(pos) % token.len();
                token[i] ^= 1 << (bit % 8);
            }
        }
        1 => {
            let (pos, byte) = (input.u16(), input.u8());
            if !token.is_empty() {
                let i = usize::from(pos) % token.len();
                token[i] = byte;
            }
        }
        2 => {
            let (pos, byte) = (input.u16(), input.u8());
            let i = at(token, pos);
            token.insert(i, byte);
        }
        3 => {
            let (pos, len) = (input.u16(), input.u8());
            let i = at(token, pos);
            let end = (i + usize::from(len)).min(token.len());
            token.drain(i..end);
        }
        4 => {
            let pos = input.u16();
            let i = at(token, pos);
            token.truncate(i);
        }
        5 => {
            let len = input.u8();
            token.extend(input.bytes(usize::from(len)));
        }
        6 => {
            let (part, member, kind, len) = (input.u8(), input.u8(), input.u8(), input.u8());
            let value = json_value(kind, &input.bytes(usize::from(len)));
            edit_json(token, part, |object| {
                object.insert(
                    MEMBERS[usize::from(member) % MEMBERS.len()].to_owned(),
                    value,
                );
            });
        }
        7 => {
            let (part, member) = (input.u8(), input.u8());
            edit_json(token, part, |object| {
                object.remove(MEMBERS[usize::from(member) % MEMBERS.len()]);
            });
        }
        8 => {
            let (part, how) = (input.u8(), input.u8());
            reencode(token, part, how);
        }
        9 => {
            let (part, from) = (input.u8(), input.u8());
            let donor = &all[usize::from(from) % all.len()].token;
            let donor: Vec<&str> = donor.split('.').collect();
            with_parts(token, |parts| {
                let i = usize::from(part) % 3;
                if i < parts.len() {
                    donor[i].clone_into(&mut parts[i]);
                }
            });
        }
        10 => {
            let (kind, len) = (input.u8(), input.u8());
            let ws = WHITESPACE[usize::from(kind) % WHITESPACE.len()];
            let ws = ws.repeat(usize::from(len % 4) + 1);
            if kind & 0x80 == 0 {
                token.splice(0..0, ws.bytes());
            } else {
                token.extend(ws.bytes());
            }
        }
        _ => {
            let (part, len) = (input.u8(), input.u8());
            let bytes = input.bytes(usize::from(len));
            with_parts(token, |parts| {
                let i = usize::from(part) % 3;
                if i < parts.len() {
                    parts[i] = String::from_utf8_lossy(&bytes).into_owned();
                }
            });
        }
    }
}

/// Header and claim names worth setting: what the verifier reads, what
/// `jsonwebtoken` reads, and JOSE's dangerous ones.
const MEMBERS: &[&str] = &[
    "alg",
    "typ",
    "kid",
    "crit",
    "jku",
    "jwk",
    "x5u",
    "b64",
    "productCode",
    "ProductCode",
    "nonce",
    "Nonce",
    "publicKeyVersion",
    "PublicKeyVersion",
    "iat",
    "exp",
    "nbf",
    "aud",
    "iss",
    "sub",
];

/// What `str::trim` removes and what it does not (the BOM, U+200B).
const WHITESPACE: &[&str] = &[
    " ", "\t", "\n", "\r\n", "\u{a0}", "\u{2028}", "\u{3000}", "\u{feff}", "\u{200b}", "\0",
];

fn json_value(kind: u8, bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match kind % 10 {
        0 => Value::String(text),
        1 => Value::from(i64::from_le_bytes(padded(bytes))),
        2 => Value::from(u64::from_le_bytes(padded(bytes))),
        3 => serde_json::Number::from_f64(f64::from_le_bytes(padded(bytes)))
            .map_or(Value::Null, Value::Number),
        4 => Value::Bool(bytes.first().is_some_and(|b| b & 1 == 1)),
        5 => Value::Null,
        6 => Value::Array(vec![Value::String(text)]),
        7 => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        8 => Value::String(PRODUCT.to_owned() + &text),
        _ => ["PS256", "RS256", "none", "HS256", "ps256", "PS384", "EdDSA"]
            .get(usize::from(bytes.first().copied().unwrap_or_default()) % 7)
            .map_or(Value::Null, |alg| Value::from(*alg)),
    }
}

fn padded(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

/// Splits `token` at `.`, lets `f` change the parts, joins them again.
fn with_parts(token: &mut Vec<u8>, f: impl FnOnce(&mut Vec<String>)) {
    let text = String::from_utf8_lossy(token).into_owned();
    let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    f(&mut parts);
    *token = parts.join(".").into_bytes();
}

/// Decodes header (`part` even) or payload (odd) as a JSON object, lets `f`
/// change it and encodes it back, leaving the signature as it was.
fn edit_json(token: &mut Vec<u8>, part: u8, f: impl FnOnce(&mut Map<String, Value>)) {
    with_parts(token, |parts| {
        let i = usize::from(part % 2);
        let Some(encoded) = parts.get(i) else {
            return;
        };
        let Ok(Value::Object(mut object)) = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| ())
            .and_then(|json| serde_json::from_slice(&json).map_err(|_| ()))
        else {
            return;
        };
        f(&mut object);
        parts[i] = URL_SAFE_NO_PAD.encode(Value::Object(object).to_string());
    });
}

/// Writes a part's bytes in another base64 form: padded, the standard
/// alphabet, or with the unused low bits of its last character set.
fn reencode(token: &mut Vec<u8>, part: u8, how: u8) {
    with_parts(token, |parts| {
        let i = usize::from(part) % 3;
        let Some(Ok(bytes)) = parts.get(i).map(|p| URL_SAFE_NO_PAD.decode(p)) else {
            return;
        };
        parts[i] = match how % 4 {
            0 => URL_SAFE.encode(&bytes),
            1 => STANDARD.encode(&bytes),
            2 => STANDARD_NO_PAD.encode(&bytes),
            _ => {
                let mut text = URL_SAFE_NO_PAD.encode(&bytes).into_bytes();
                if let Some(last) = text.last_mut() {
                    // The next character of the alphabet differs in the
                    // lowest bit, which a 2- or 3-character tail never uses.
                    *last = match *last {
                        b'z' => b'0',
                        b'9' => b'-',
                        b'-' => b'_',
                        b'_' => b'A',
                        b'Z' => b'a',
                        other => other + 1,
                    };
                }
                String::from_utf8_lossy(&text).into_owned()
            }
        };
    });
}

fn signed(data: &[u8]) {
    let mut lines = data.splitn(5, |b| *b == b'\n');
    let mut line = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (product, nonce, version, header) = (line(), line(), line(), line());
    let payload = lines.next().unwrap_or_default();
    let version: u32 = version.trim().parse().unwrap_or(VERSION);
    let token = SIGNER.sign(header.as_bytes(), payload);
    let key = SIGNER.key(version);
    let result = verify_registration(&token, &key, &product, &nonce);
    let header: Option<Value> = serde_json::from_str(&header).ok();
    let payload: Option<Value> = serde_json::from_slice(payload).ok();
    if let Ok(claims) = &result {
        check_claims(claims, &product, &nonce, version);
        assert_eq!(
            header.as_ref().and_then(|h| h.get("alg")),
            Some(&Value::from("PS256")),
            "accepted a header without alg PS256: {header:?}"
        );
        let payload = payload.as_ref().and_then(Value::as_object);
        assert!(
            payload.is_some_and(|p| claims_answer(p, &product, &nonce, version)),
            "accepted claims that do not answer the request ({product:?}, {nonce:?}, \
             {version}): {payload:?}"
        );
    }
    let plain_header = header.as_ref().is_some_and(|h| {
        *h == serde_json::json!({"alg": "PS256"})
            || *h == serde_json::json!({"alg": "PS256", "typ": "JWT"})
    });
    let plain_payload = payload
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|p| {
            p.keys().all(|k| CLAIMS.contains(&k.as_str()))
                && p.get("iat").is_none_or(Value::is_i64)
                && claims_answer(p, &product, &nonce, version)
        });
    if plain_header && plain_payload {
        assert!(
            result.is_ok(),
            "refused a signed token that answers the request: {result:?}"
        );
    }
}

const CLAIMS: &[&str] = &[
    "productCode",
    "ProductCode",
    "nonce",
    "Nonce",
    "publicKeyVersion",
    "PublicKeyVersion",
    "iat",
];

fn request(data: &[u8]) {
    let mut input = Reader(data);
    let all = variants();
    let token = &all[usize::from(input.u8()) % all.len()];
    let rest = input.bytes(data.len());
    let mut lines = rest.splitn(3, |b| *b == b'\n');
    let mut line = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (product, nonce, version) = (line(), line(), line());
    let version: u32 = version.parse().unwrap_or(u32::MAX);
    let result = verify_registration(&token.token, &SIGNER.key(version), &product, &nonce);
    let answers =
        (product.as_str(), nonce.as_str(), version) == (token.product, token.nonce, token.version);
    assert_eq!(
        result.is_ok(),
        answers,
        "({product:?}, {nonce:?}, {version}) against a token for ({:?}, {:?}, {}): {result:?}",
        token.product,
        token.nonce,
        token.version
    );
}

fn check_claims(claims: &RegistrationClaims, product: &str, nonce: &str, version: u32) {
    assert_eq!(claims.product_code, product);
    assert_eq!(claims.nonce, nonce);
    assert_eq!(claims.public_key_version, version);
}

/// Whether the payload's claims are the request's: each claim present under
/// one spelling or both with one value; the version an integer or a decimal
/// string.
fn claims_answer(payload: &Map<String, Value>, product: &str, nonce: &str, version: u32) -> bool {
    let claim = |camel: &str, capital: &str| match (payload.get(camel), payload.get(capital)) {
        (Some(a), Some(b)) if a != b => None,
        (Some(v), _) | (None, Some(v)) => Some(v),
        (None, None) => None,
    };
    let version_ok = claim("publicKeyVersion", "PublicKeyVersion").is_some_and(|v| {
        v.as_u64() == Some(u64::from(version))
            || v.as_str().and_then(|s| s.parse::<u32>().ok()) == Some(version)
    });
    claim("productCode", "ProductCode") == Some(&Value::from(product))
        && claim("nonce", "Nonce") == Some(&Value::from(nonce))
        && version_ok
}

/// A strict compact-JWS check written from RFC 7515 and RFC 7518 §3.5 with
/// aws-lc-rs, independent of `jsonwebtoken`.
fn reference_accepts(token: &str, product: &str, nonce: &str, version: u32) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return false;
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .filter(|bytes| URL_SAFE_NO_PAD.encode(bytes) == part)
    };
    let (Some(h), Some(p), Some(s)) = (decode(header), decode(payload), decode(signature)) else {
        return false;
    };
    let signed = UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, SIGNER.rsa)
        .verify(format!("{header}.{payload}").as_bytes(), &s)
        .is_ok();
    let alg = serde_json::from_slice::<Value>(&h)
        .ok()
        .is_some_and(|h| h.get("alg") == Some(&Value::from("PS256")));
    let claims = serde_json::from_slice::<Value>(&p).ok().is_some_and(|p| {
        p.as_object()
            .is_some_and(|p| claims_answer(p, product, nonce, version))
    });
    signed && alg && claims
}
