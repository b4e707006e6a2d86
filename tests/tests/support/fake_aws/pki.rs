//! The buyer's own certificate authority, made afresh for each namespace:
//! its root goes into `SSL_CERT_FILE`, `SSL_CERT_DIR` or the system bundle,
//! and it issues the fake's certificates for AWS's real host names, the
//! buyer's domain, and whatever host an intercepting proxy is asked for.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;

/// A CA that is not AWS's (nor anyone's but this test's).
pub(crate) struct FakeCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl FakeCa {
    /// A new CA with a fresh key.
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "marketgate tamper suite CA (not AWS)");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let certificate = params.self_signed(&key).expect("the CA certificate");
        Self {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// A TLS server configuration presenting a certificate this CA issued
    /// for `names` (DNS names), with a fresh key, on the aws-lc-rs provider
    /// the SDK's client uses; no ALPN, so clients speak HTTP/1.1, which the
    /// simulator serves.
    pub(crate) fn server_config(&self, names: &[String]) -> Arc<ServerConfig> {
        let mut params = CertificateParams::new(names.to_vec()).expect("DNS names");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().expect("a name").as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("a server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .expect("a server certificate and key");
        Arc::new(config)
    }
}
