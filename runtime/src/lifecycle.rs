//! Start-up and shutdown: what `#[marketgate::main]` wraps around `main`.

use crate::catalog::Catalog;
use crate::entitlement::{self, InstallError};

/// Why the process may not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The catalog could not be installed (call sites disagree with it).
    #[error(transparent)]
    Catalog(#[from] InstallError),
    /// No way to verify entitlement is built into this binary.
    #[error(
        "entitlement cannot be verified: this build of marketgate has no AWS backend yet, \
         so every #[entitled] and #[metered] call stays denied"
    )]
    NoBackend,
}

/// Keeps the runtime's background work alive; shut it down when the program
/// ends.
#[derive(Debug)]
#[must_use = "dropping the guard skips the final flush"]
pub struct Guard {
    catalog: &'static Catalog,
}

impl Guard {
    /// The catalog this process runs under.
    #[must_use]
    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    /// Flushes and releases what the runtime holds.
    pub fn shutdown_blocking(self) {
        entitlement::revoke_all();
    }

    /// Async form of [`Guard::shutdown_blocking`].
    #[allow(clippy::unused_async)] // the flush it will await lands with the metering pipeline
    pub async fn shutdown(self) {
        self.shutdown_blocking();
    }
}

/// Verifies entitlement for `catalog` and starts the runtime's background
/// work. `#[marketgate::main]` calls this for you.
///
/// # Errors
/// [`StartError`] when the process must not run: call sites compiled
/// against another manifest, or entitlement not verified.
pub fn start_blocking(catalog: &'static Catalog) -> Result<Guard, StartError> {
    entitlement::install(catalog)?;
    Err(StartError::NoBackend)
}

/// Async form of [`start_blocking`].
///
/// # Errors
/// As [`start_blocking`].
#[allow(clippy::unused_async)] // verification over the network lands with the AWS backends
pub async fn start(catalog: &'static Catalog) -> Result<Guard, StartError> {
    start_blocking(catalog)
}

fn refuse(error: &StartError) -> ! {
    tracing::error!(target: "marketgate", %error, "refusing to start");
    // main's body, which would install a tracing subscriber, has not run:
    // stderr is the one place an operator is sure to see this.
    eprintln!("marketgate: refusing to start: {error}");
    std::process::exit(1)
}

#[doc(hidden)]
pub fn main_start_blocking(catalog: &'static Catalog) -> Guard {
    start_blocking(catalog).unwrap_or_else(|e| refuse(&e))
}

#[doc(hidden)]
pub async fn main_start(catalog: &'static Catalog) -> Guard {
    match start(catalog).await {
        Ok(guard) => guard,
        Err(e) => refuse(&e),
    }
}

#[doc(hidden)]
pub fn main_finish_blocking(guard: Guard) {
    guard.shutdown_blocking();
}

#[doc(hidden)]
pub async fn main_finish(guard: Guard) {
    guard.shutdown().await;
}
