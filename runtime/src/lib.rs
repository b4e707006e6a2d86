//! # marketgate
//!
//! AWS Marketplace licensing and metering for Rust container products, as
//! attributes on ordinary functions.
//!
//! - [`#[entitled("feature")]`](entitled) runs a function only if the
//!   container's verified entitlement grants the feature.
//! - [`#[metered(dimension)]`](metered) records usage of a custom pricing
//!   dimension for hourly `MeterUsage` reports.
//! - [`#[marketgate::main]`](main) verifies entitlement before `main`'s body
//!   runs and refuses to start when the container is not entitled.
//!
//! The trusted products live in the seller's `Marketplace.toml`, next to
//! `Cargo.toml`. It is validated at compile time and embedded in the binary;
//! nothing reads it at run time.
//!
//! ## Quick start
//!
//! ```toml
//! # Marketplace.toml
//! [[product]]
//! name = "pro"
//! code = "prodcode123"
//! tier = "paid"
//! pricing = "custom"
//! dimensions = ["api_calls"]
//! features = ["export"]
//! ```
//!
//! ```no_run
//! use marketgate::{Denied, entitled, metered};
//!
//! #[derive(Debug)]
//! enum AppError { NotEntitled(Denied) }
//! impl From<Denied> for AppError {
//!     fn from(d: Denied) -> Self { AppError::NotEntitled(d) }
//! }
//!
//! #[entitled("export")]
//! fn export(report: &str) -> Result<String, AppError> {
//!     Ok(format!("exported {report}"))
//! }
//!
//! #[metered(api_calls)]
//! fn handle(request: &str) -> Result<usize, AppError> {
//!     Ok(request.len())
//! }
//!
//! #[marketgate::main]
//! fn main() -> Result<(), AppError> {
//!     export("q3")?;
//!     handle("ping")?;
//!     Ok(())
//! }
//! ```
//!
//! Until start-up has verified entitlement, every check is denied: the
//! runtime fails closed.

// docs.rs (package.metadata.docs.rs) marks what each feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]
// An optimised build is what gets shipped; `dev` or `testing` in one is a
// packaging mistake that would let the container's environment redirect AWS
// calls or grant entitlements. Catch it at compile time.
#[cfg(all(
    any(feature = "dev", feature = "testing"),
    not(debug_assertions),
    not(feature = "allow-dev-in-optimized-builds")
))]
compile_error!(
    "marketgate's `dev` or `testing` feature is enabled in an optimised build (no debug \
     assertions, e.g. `cargo build --release`). Those features let the environment redirect AWS \
     calls or grant entitlements, so a binary you ship must not have them: build it with \
     `--no-default-features` if your crate turns them on by default (as marketgate's examples \
     do). For benchmarks or optimised test runs only, also enable marketgate's \
     `allow-dev-in-optimized-builds` feature."
);

mod aws;
mod call_site;
mod catalog;
mod counters;
mod denied;
#[cfg(feature = "dev")]
mod dev_clock;
mod entitlement;
mod frames;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod license;
mod metering;
mod metrics;
mod random;
mod region;
mod signature;
mod start;
mod status;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod time;
mod units;
mod usage;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aws::credentials::CredentialSource;
pub use aws::failure::AwsFailure;
pub use aws::transport::endpoints::EndpointError;
pub use call_site::CatalogMismatch;
pub use catalog::{
    Catalog, EntitlementSpec, FeatureSet, LicenseSpec, MAX_DIMENSIONS, MAX_FEATURES, Pricing,
    Product, RegistrationKey, Tier, UnitModel,
};
pub use denied::{DenialReason, Denied, Subject};
pub use entitlement::InstallError;
pub use region::{DiscoveredRegion, RegionError, RegionSource};
pub use signature::SignatureError;
pub use start::{
    CHECKPOINT_INTERVAL_ENV, DEFAULT_STATE_DIR, Guard, MAX_SEAT_WAIT, MAX_SIGNAL_GRACE_FROM_ENV,
    MAX_UNREPORTED_ENV, Options, PRODUCT_CODE_ENV, SEAT_WAIT_ENV, SIGNAL_GRACE_ENV,
    STARTUP_TIMEOUT_ENV, STATE_DIR_ENV, StartError, start, start_blocking, start_blocking_with,
    start_with,
};
pub use status::{
    CallStatus, CredentialsStatus, LeaseState, LicenseStatus, MeteringStatus, PendingRecord,
    ProductStatus, RegionStatus, RunState, Status, UnbillableRecord, status,
};
pub use units::{Quantity, Units};
pub use usage::record_tagged_usage;

#[doc(inline)]
pub use marketgate_macros::{catalog, checkout, draw, entitled, entitlement, main, metered};
