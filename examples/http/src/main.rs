//! The HTTP service. `#[marketgate::main]` verifies entitlement before the
//! body runs, so the port opens only once the process is entitled; on
//! SIGTERM or SIGINT the server stops accepting, finishes the requests in
//! flight and `main` returns, and then marketgate reports the usage they
//! recorded.
//!
//! `GET /metrics` serves the runtime's metrics (docs/operations.md) in the
//! Prometheus text format.
//!
//! Environment: `LISTEN_ADDR` (default `0.0.0.0:8080`), plus marketgate's
//! (`MARKETGATE_PRODUCT_CODE`, `MARKETGATE_STATE_DIR`, ...). The first line
//! on stdout is `listening on http://HOST:PORT`, the address actually bound.

use std::io::Write as _;

/// Where the service listens unless `LISTEN_ADDR` says otherwise.
const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";

#[marketgate::main]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("LISTEN_ADDR")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
    // Installed before the port is announced: whoever reads the line and
    // then sends a signal is sure that this handler sees it. marketgate has
    // its own handler, which gets the signal too: it checkpoints usage at
    // once and gives `main` MARKETGATE_SIGNAL_GRACE_SECS (default 10) to
    // return before it ends the process itself.
    let shutdown = shutdown_signal()?;
    // `/metrics`: the runtime's metrics in the Prometheus text format.
    let metrics = marketgate_example_http::install_metrics().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{local}")?;
    stdout.flush()?;
    drop(stdout);
    let app =
        marketgate_example_http::router().merge(marketgate_example_http::metrics_router(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on the first SIGTERM (what ECS and Kubernetes send) or SIGINT.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
