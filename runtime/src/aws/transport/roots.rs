//! The trust anchors compiled into the binary: the Amazon Trust Services
//! roots.
//!
//! AWS service endpoints present certificates issued by Amazon Trust
//! Services (ATS), which chain to Amazon Root CA 1–4; the Starfield Services
//! Root Certificate Authority – G2 cross-signs those roots for older
//! clients, so a chain may also end there. These five are the whole trust
//! store of a build without `dev`: the system store, `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are never read, so a certificate authority added to the
//! container image or named in its environment cannot vouch for a fake AWS.
//!
//! Why these and not the Mozilla set (`webpki-roots`): the Mozilla set
//! trusts about 150 authorities, any of which can be compelled or
//! compromised into issuing a certificate for an AWS host name; these five
//! are operated by Amazon, which answers for the endpoints anyway. The cost
//! is that if AWS moved these endpoints to another authority, TLS handshakes
//! would fail and start-up would refuse with "is not from AWS" (fail closed,
//! never open) until a marketgate release adds the new roots. The roots
//! expire in 2037–2040; AWS announces certificate-authority changes to its
//! endpoints well ahead (it did for the 2021 move to ATS).

/// One compiled-in root.
pub(crate) struct Root {
    /// The certificate's subject common name.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) name: &'static str,
    /// The certificate, PEM.
    pub(crate) pem: &'static [u8],
}

/// The trust store of every connection to AWS in a build without `dev`.
pub(crate) const AMAZON_TRUST_SERVICES: &[Root] = &[
    Root {
        name: "Amazon Root CA 1",
        pem: include_bytes!("roots/amazon-root-ca-1.pem"),
    },
    Root {
        name: "Amazon Root CA 2",
        pem: include_bytes!("roots/amazon-root-ca-2.pem"),
    },
    Root {
        name: "Amazon Root CA 3",
        pem: include_bytes!("roots/amazon-root-ca-3.pem"),
    },
    Root {
        name: "Amazon Root CA 4",
        pem: include_bytes!("roots/amazon-root-ca-4.pem"),
    },
    Root {
        name: "Starfield Services Root Certificate Authority - G2",
        pem: include_bytes!("roots/starfield-services-root-ca-g2.pem"),
    },
];

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use base64::Engine as _;

    use super::AMAZON_TRUST_SERVICES;

    /// SHA-256 fingerprints of the DER certificates, as published by Amazon
    /// Trust Services at <https://www.amazontrust.com/repository/> (the
    /// "SHA-256 Fingerprint" column of the root CA table) and identical in
    /// Mozilla's root store (CCADB, `certdata.txt`, as shipped in Debian's
    /// `ca-certificates` 20230311+deb12u1 under `/usr/share/ca-certificates/mozilla/`).
    const FINGERPRINTS: &[(&str, &str)] = &[
        (
            "Amazon Root CA 1",
            "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
        ),
        (
            "Amazon Root CA 2",
            "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
        ),
        (
            "Amazon Root CA 3",
            "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
        ),
        (
            "Amazon Root CA 4",
            "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
        ),
        (
            "Starfield Services Root Certificate Authority - G2",
            "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
        ),
    ];

    fn der(pem: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(pem).expect("PEM is ASCII");
        let mut blocks = text.split("-----BEGIN CERTIFICATE-----").skip(1);
        let body = blocks.next().expect("one certificate");
        assert!(blocks.next().is_none(), "exactly one certificate per file");
        let body = body
            .split("-----END CERTIFICATE-----")
            .next()
            .expect("end marker");
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    }

    #[test]
    fn the_compiled_in_roots_are_exactly_the_amazon_trust_services_set() {
        let actual: Vec<(&str, String)> = AMAZON_TRUST_SERVICES
            .iter()
            .map(|root| {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der(root.pem));
                let hex = digest.as_ref().iter().fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                });
                (root.name, hex)
            })
            .collect();
        let expected: Vec<(&str, String)> = FINGERPRINTS
            .iter()
            .map(|(name, hex)| (*name, (*hex).to_owned()))
            .collect();
        assert_eq!(actual, expected);
    }
}
