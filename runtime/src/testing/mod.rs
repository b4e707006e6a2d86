//! Grant entitlements without AWS, for tests.
//!
//! **Not a production switch.** This module exists only when the `testing`
//! cargo feature is enabled (or in marketgate's own unit tests). With it, any
//! code in the process can grant itself every paid feature. Enable it in
//! `[dev-dependencies]` only, never in a binary you ship:
//!
//! ```toml
//! [dev-dependencies]
//! marketgate = { version = "0.1", features = ["testing"] }
//! ```
//!
//! State is process-global, like the real runtime's. Tests that change it
//! should hold [`serial`] so that parallel test threads do not interleave.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::catalog::{Catalog, FeatureSet};
use crate::entitlement::{self, InstallError};

/// Errors from the testing API.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// The catalog could not be installed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// No product of that name in the catalog.
    #[error("no product named `{0}` in the catalog")]
    UnknownProduct(String),
    /// No feature of that name in the catalog.
    #[error("no feature named `{0}` in the catalog")]
    UnknownFeature(String),
    /// No dimension of that name in the catalog.
    #[error("no dimension named `{0}` in the catalog")]
    UnknownDimension(String),
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises tests that change entitlement state. Hold the guard for the
/// whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Acts as if start-up had verified `product`: it grants what that product
/// would grant (for a contract product, as if every entitlement were
/// allowed). Free products grant only free features, as in production.
///
/// # Errors
/// Unknown product, or a catalog that call sites disagree with.
pub fn activate(catalog: &'static Catalog, product: &str) -> Result<(), TestingError> {
    let p = catalog
        .product_by_name(product)
        .ok_or_else(|| TestingError::UnknownProduct(product.to_owned()))?;
    entitlement::install(catalog)?;
    entitlement::activate(catalog, p, p.features());
    Ok(())
}

/// Like [`activate`] for a contract product whose license allowed only the
/// entitlements that grant `features`.
///
/// # Errors
/// Unknown product or feature, or a catalog that call sites disagree with.
pub fn activate_licensed(
    catalog: &'static Catalog,
    product: &str,
    features: &[&str],
) -> Result<(), TestingError> {
    let p = catalog
        .product_by_name(product)
        .ok_or_else(|| TestingError::UnknownProduct(product.to_owned()))?;
    let mut set = FeatureSet::EMPTY;
    for name in features {
        let index = catalog
            .feature_index(name)
            .ok_or_else(|| TestingError::UnknownFeature((*name).to_owned()))?;
        set.0[index / 64] |= 1 << (index % 64);
    }
    entitlement::install(catalog)?;
    entitlement::activate(catalog, p, set);
    Ok(())
}

/// Lets `marketgate::draw!` count units of the drawdown entitlement `name`
/// without AWS, as a verified contract would: for tests and benchmarks of
/// code that draws. Nothing is ever drawn (no runtime runs); read what was
/// counted with [`counted_draws`].
pub fn open_drawdown(name: &'static str) {
    crate::units::drawdown::testing_open(name);
}

/// Units `marketgate::draw!` counted for `name` since [`open_drawdown`] (and
/// not drawn: no runtime runs).
#[must_use]
pub fn counted_draws(name: &'static str) -> u64 {
    crate::units::drawdown::testing_counted(name)
}

/// Revokes everything: every check is denied again.
pub fn deactivate() {
    entitlement::revoke_all();
}

/// Units recorded for `dimension` since the process started.
///
/// # Errors
/// Unknown dimension.
pub fn recorded(catalog: &Catalog, dimension: &str) -> Result<u64, TestingError> {
    let index = catalog
        .dimension_index(dimension)
        .ok_or_else(|| TestingError::UnknownDimension(dimension.to_owned()))?;
    Ok(crate::counters::totals()[index])
}

#[cfg(feature = "dev")]
pub mod simulation;
