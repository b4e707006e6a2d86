//! `CONNECT` proxies on loopback, as the buyer's egress could have them:
//!
//! - a **tunnelling** proxy, the legitimate kind: it resolves the requested
//!   host (through `/etc/hosts`, so AWS's names reach the fake), connects,
//!   and copies bytes both ways without looking at them;
//! - an **intercepting** proxy: it answers `CONNECT` itself, terminates TLS
//!   with a certificate forged on the spot for the requested host by the
//!   fake CA, and forwards the decrypted requests to the simulator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;

use super::pki::FakeCa;
use super::{CONNECTION_LIFETIME, Event, Witness, tls};

/// The name the tunnelling proxy records its events under.
pub(crate) const TUNNELLING: &str = "tunnelling proxy";
/// The name the intercepting proxy records its events under.
pub(crate) const INTERCEPTING: &str = "intercepting proxy";

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n";
const NOT_ALLOWED: &[u8] = b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n";

/// Starts the tunnelling proxy on an ephemeral loopback port.
pub(crate) async fn start_tunnelling(witness: Witness) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let witness = witness.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, tunnel(stream, witness)).await;
            });
        }
    });
    addr
}

async fn tunnel(mut client: TcpStream, witness: Witness) {
    let Some(target) = read_connect(&mut client, TUNNELLING, &witness).await else {
        let _ = client.write_all(NOT_ALLOWED).await;
        return;
    };
    // Loopback only: nothing this test starts may reach another address.
    let resolved = tokio::net::lookup_host(target.as_str())
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback()));
    let Some(to) = resolved else {
        let _ = client.write_all(BAD_GATEWAY).await;
        return;
    };
    let Ok(mut server) = TcpStream::connect(to).await else {
        let _ = client.write_all(BAD_GATEWAY).await;
        return;
    };
    witness.record(Event::Tunnel {
        target,
        to: to.to_string(),
    });
    if client.write_all(ESTABLISHED).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Starts the intercepting proxy on an ephemeral loopback port; what it
/// decrypts goes to `upstream` (the simulator).
pub(crate) async fn start_intercepting(
    ca: Arc<FakeCa>,
    upstream: SocketAddr,
    witness: Witness,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let forged: Arc<Mutex<HashMap<String, Arc<ServerConfig>>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (ca, forged, witness) = (Arc::clone(&ca), Arc::clone(&forged), witness.clone());
            tokio::spawn(async move {
                let Ok(Some(target)) = tokio::time::timeout(
                    CONNECTION_LIFETIME,
                    read_connect(&mut client, INTERCEPTING, &witness),
                )
                .await
                else {
                    let _ = client.write_all(NOT_ALLOWED).await;
                    return;
                };
                let host = target
                    .rsplit_once(':')
                    .map_or(target.as_str(), |(host, _)| host)
                    .to_owned();
                let config = Arc::clone(
                    forged
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(host.clone())
                        .or_insert_with(|| ca.server_config(&[host])),
                );
                if client.write_all(ESTABLISHED).await.is_err() {
                    return;
                }
                tls::terminate(client, config, upstream, witness, INTERCEPTING).await;
            });
        }
    });
    addr
}

/// Reads a proxy request's head and records its request line; returns the
/// `host:port` of a `CONNECT`, `None` for anything else. At most 8 KiB and
/// 5 s; reads byte by byte so nothing after the head is consumed.
async fn read_connect(
    stream: &mut TcpStream,
    at: &'static str,
    witness: &Witness,
) -> Option<String> {
    let mut head = Vec::new();
    let read = async {
        let mut byte = [0_u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()??;
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default().to_owned();
    witness.record(Event::Connect {
        at,
        line: line.clone(),
    });
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("CONNECT"), Some(target)) => Some(target.to_owned()),
        _ => None,
    }
}
