//! Where the runtime connects and whom it trusts.
//!
//! Everything that decides this is compiled in: the endpoints come from the
//! Region by a fixed rule ([`endpoints`]) and TLS trusts only the Amazon Trust
//! Services roots ([`roots`]). The container's environment and file system —
//! `AWS_ENDPOINT_URL*`, `endpoint_url` in AWS config files, the SDK's
//! partition-file override, `SSL_CERT_FILE`, `SSL_CERT_DIR`, the system
//! certificate bundle — are never consulted by a build without `dev`.
//!
//! Proxies stay honoured (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, upper or lower case): buyers route egress through them, and
//! with a pinned trust store a proxy can only tunnel the TLS connection
//! (`CONNECT`); one that intercepts it cannot present a certificate for the
//! AWS host that chains to the compiled-in roots, so the handshake fails.

pub(crate) mod endpoints;
pub(crate) mod roots;

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Connector, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpConnectorSettings, SharedHttpClient, SharedHttpConnector, http_client_fn,
};

/// Which certificate authorities a client trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Only the compiled-in Amazon Trust Services roots.
    AwsRoots,
    /// The compiled-in roots and the system store (`SSL_CERT_FILE`,
    /// `SSL_CERT_DIR`, the system bundle): `dev` builds talking to a
    /// development endpoint, which may present a local CA's certificate.
    #[cfg_attr(not(feature = "dev"), allow(dead_code))]
    AwsRootsAndSystem,
}

/// The HTTP client both SDK clients use: rustls on aws-lc (the SDK's own
/// provider), `trust` as the trust store, proxies from the environment.
pub(crate) fn http_client(trust: Trust) -> SharedHttpClient {
    let mut store = TrustStore::empty().with_native_roots(trust == Trust::AwsRootsAndSystem);
    for root in roots::AMAZON_TRUST_SERVICES {
        store = store.with_pem_certificate(root.pem);
    }
    let context = match TlsContext::builder().with_trust_store(store).build() {
        Ok(context) => context,
        // Building a context only stores what it is given; it cannot fail
        // today. Should it ever, an empty store still trusts nothing.
        Err(_) => TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_native_roots(false))
            .build()
            .unwrap_or_default(),
    };
    // One connector (and so one connection pool and one rustls config) per
    // timeout setting, as the SDK's default client keeps them.
    let cache: Mutex<Vec<(CacheKey, SharedHttpConnector)>> = Mutex::new(Vec::new());
    let context = Arc::new(context);
    http_client_fn(move |settings, components| {
        let key = CacheKey::from(settings);
        let mut cache = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, connector)) = cache.iter().find(|(k, _)| *k == key) {
            return connector.clone();
        }
        let mut builder = ConnectorBuilder::default();
        builder.set_connector_settings(Some(settings.clone()));
        builder.set_sleep_impl(components.sleep_impl());
        let connector: Connector = builder
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::rustls(CryptoMode::AwsLc))
            .tls_context((*context).clone())
            .build();
        let connector = SharedHttpConnector::new(connector);
        cache.push((key, connector.clone()));
        connector
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CacheKey {
    connect_timeout: Option<std::time::Duration>,
    read_timeout: Option<std::time::Duration>,
}

impl From<&HttpConnectorSettings> for CacheKey {
    fn from(settings: &HttpConnectorSettings) -> Self {
        CacheKey {
            connect_timeout: settings.connect_timeout(),
            read_timeout: settings.read_timeout(),
        }
    }
}

/// The certificate problem, if `error` is a TLS handshake that failed
/// because the peer's certificate did not verify against the trust store
/// (an unknown issuer, a name it is not valid for, expired, ...).
pub(crate) fn untrusted_certificate(error: &(dyn StdError + 'static)) -> Option<String> {
    chain(error).find_map(|e| match e.downcast_ref::<rustls::Error>() {
        Some(tls @ rustls::Error::InvalidCertificate(_)) => Some(tls.to_string()),
        _ => None,
    })
}

/// The error and its sources, looking inside `io::Error`s too: their
/// `source()` skips the error they wrap, and rustls's handshake errors reach
/// the SDK wrapped in one or two of them.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn StdError + 'static))
            .or_else(|| e.source()),
        None => e.source(),
    })
}
