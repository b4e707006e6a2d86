//! A fake AWS for the tamper suite (`tamper.rs`), the way a buyer who controls
//! a container's environment, image layers, DNS and egress would build one:
//! the in-process simulator (plain HTTP on loopback) behind a TLS terminator
//! on `127.0.0.1:443` that presents a certificate for AWS's real host names
//! from a CA the test makes ([`pki`]), with `/etc/hosts` sending those names
//! to it ([`namespace`]), and proxies on loopback ([`proxy`]): one that only
//! tunnels and one that intercepts with forged certificates.
//!
//! Every component records what it saw in a shared [`Witness`]: `CONNECT`
//! requests, the server name (SNI) of every `ClientHello`, and every TLS
//! handshake a client completed, i.e. every time a client trusted a fake
//! certificate. Nothing here listens anywhere but loopback, and everything
//! runs inside the network and mount namespaces that `tamper.rs` creates.

pub(crate) mod child;
pub(crate) mod namespace;
pub(crate) mod pki;
pub(crate) mod proxy;
pub(crate) mod tls;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The Region every run uses (the simulator's task Region).
pub(crate) const REGION: &str = "us-east-1";
/// AWS Marketplace Metering's real host name in [`REGION`].
pub(crate) const METERING_HOST: &str = "metering.marketplace.us-east-1.amazonaws.com";
/// AWS License Manager's real host name in [`REGION`].
pub(crate) const LICENSE_MANAGER_HOST: &str = "license-manager.us-east-1.amazonaws.com";
/// AWS's DNS suffix in the `aws` partition.
pub(crate) const AWS_SUFFIX: &str = ".amazonaws.com";
/// A domain the buyer owns (reserved `.example` TLD: never resolvable for real).
pub(crate) const BUYER_DOMAIN: &str = "buyer-owned.example";

/// The longest any one connection through the fake or a proxy may live.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// `aws_host` with AWS's DNS suffix replaced by [`BUYER_DOMAIN`], as the
/// SDK's endpoint rules build it from a partition file that renames `aws`'s
/// `dnsSuffix`.
pub(crate) fn buyer_host(aws_host: &str) -> String {
    let stem = aws_host
        .strip_suffix(AWS_SUFFIX)
        .expect("an amazonaws.com host");
    format!("{stem}.{BUYER_DOMAIN}")
}

/// Every host name the fake answers for: AWS's two and the buyer's two.
pub(crate) fn fake_host_names() -> Vec<String> {
    vec![
        METERING_HOST.to_owned(),
        LICENSE_MANAGER_HOST.to_owned(),
        buyer_host(METERING_HOST),
        buyer_host(LICENSE_MANAGER_HOST),
    ]
}

/// One thing a component of the fake saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A proxy received this request line (`CONNECT host:port HTTP/1.1`).
    Connect {
        /// Which proxy.
        at: &'static str,
        /// The request line as received.
        line: String,
    },
    /// The tunnelling proxy connected a tunnel to `to`.
    Tunnel {
        /// The `host:port` asked for.
        target: String,
        /// The address it resolved to (through `/etc/hosts`).
        to: String,
    },
    /// A TLS `ClientHello` arrived.
    ClientHello {
        /// Which component terminated TLS.
        at: &'static str,
        /// Its server name indication, if any.
        sni: Option<String>,
    },
    /// A client completed the TLS handshake: it accepted the fake's
    /// certificate. Whatever it sends next is forwarded to the simulator.
    Handshake {
        /// Which component terminated TLS.
        at: &'static str,
        /// The server name the client asked for.
        sni: Option<String>,
    },
}

/// What the fake's components saw, in order. Cheap to clone; all clones
/// share one log.
#[derive(Clone, Debug, Default)]
pub(crate) struct Witness(Arc<Mutex<Vec<Event>>>);

impl Witness {
    pub(crate) fn record(&self, event: Event) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    /// Everything seen since the last call.
    pub(crate) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The server names of the `ClientHello`s in `events` seen `at`.
pub(crate) fn server_names(events: &[Event], at: &str) -> Vec<Option<String>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ClientHello { at: seen, sni } if *seen == at => Some(sni.clone()),
            _ => None,
        })
        .collect()
}

/// The request lines `events` shows a proxy received, at `at`.
pub(crate) fn connect_lines(events: &[Event], at: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Connect { at: seen, line } if *seen == at => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// The completed handshakes in `events`, as `at (sni)`.
pub(crate) fn handshakes(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Handshake { at, sni } => {
                Some(format!("{at} ({})", sni.as_deref().unwrap_or("no SNI")))
            }
            _ => None,
        })
        .collect()
}
