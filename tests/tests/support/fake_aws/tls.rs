//! TLS termination in front of the simulator: records each `ClientHello`'s
//! server name, completes the handshake with a certificate from the fake CA
//! if the client accepts it, and then forwards the decrypted bytes (HTTP/1.1)
//! to the simulator, which answers them as AWS would.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::Acceptor;

use super::{CONNECTION_LIFETIME, Event, Witness};

/// Where the fake listens: the HTTPS port of the loopback address that
/// `/etc/hosts` gives AWS's names inside the namespace.
pub(crate) const FAKE_ADDR: &str = "127.0.0.1:443";
/// The name the terminator on [`FAKE_ADDR`] records its events under.
pub(crate) const TERMINATOR: &str = "fake AWS on 127.0.0.1:443";

/// Starts the terminator on [`FAKE_ADDR`] (binding port 443 needs the
/// namespace's root), forwarding to `upstream`.
pub(crate) async fn start_terminator(
    config: Arc<ServerConfig>,
    upstream: SocketAddr,
    witness: Witness,
) -> SocketAddr {
    let listener = TcpListener::bind(FAKE_ADDR)
        .await
        .expect("bind 127.0.0.1:443 inside the network namespace");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (config, witness) = (Arc::clone(&config), witness.clone());
            tokio::spawn(terminate(stream, config, upstream, witness, TERMINATOR));
        }
    });
    addr
}

/// Terminates TLS on `stream` with `config` and forwards what the client
/// sends to `upstream`, for at most [`CONNECTION_LIFETIME`].
pub(crate) async fn terminate<S>(
    stream: S,
    config: Arc<ServerConfig>,
    upstream: SocketAddr,
    witness: Witness,
    at: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, async move {
        let Ok(start) = LazyConfigAcceptor::new(Acceptor::default(), stream).await else {
            return;
        };
        let sni = start.client_hello().server_name().map(str::to_owned);
        witness.record(Event::ClientHello {
            at,
            sni: sni.clone(),
        });
        // A client that does not trust the certificate aborts here.
        let Ok(mut tls) = start.into_stream(config).await else {
            return;
        };
        witness.record(Event::Handshake { at, sni });
        let Ok(mut simulator) = TcpStream::connect(upstream).await else {
            return;
        };
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut simulator).await;
    })
    .await;
}
