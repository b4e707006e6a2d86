//! Annotated library code for marketgate's end-to-end tests.
//!
//! It is a library on purpose: its call sites are compiled in this crate and
//! linked into the test binaries, as a seller's library would be, and
//! `missing_docs` proves the attributes keep documentation.
#![deny(missing_docs)]

use std::fmt;

use marketgate::{Catalog, Denied, entitled, metered};

/// Errors of the test application.
#[derive(Debug, PartialEq, Eq)]
pub enum AppError {
    /// marketgate refused the call.
    Denied(Denied),
    /// The input was bad.
    Invalid(String),
}

impl From<Denied> for AppError {
    fn from(denied: Denied) -> Self {
        AppError::Denied(denied)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(e: std::num::ParseIntError) -> Self {
        AppError::Invalid(e.to_string())
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Denied(d) => write!(f, "{d}"),
            AppError::Invalid(why) => write!(f, "invalid input: {why}"),
        }
    }
}

impl std::error::Error for AppError {}

impl AppError {
    /// The denial inside, if this is one.
    #[must_use]
    pub fn denied(&self) -> Option<&Denied> {
        match self {
            AppError::Denied(d) => Some(d),
            AppError::Invalid(_) => None,
        }
    }
}

/// The catalog compiled from this crate's `Marketplace.toml`.
#[must_use]
pub fn catalog() -> &'static Catalog {
    marketgate::catalog!()
}

/// Exports a report: a paid feature.
///
/// # Errors
/// Denied unless a paid product granting `export` is active.
#[entitled("export")]
pub fn export(report: &str) -> Result<String, AppError> {
    Ok(format!("report {report}"))
}

/// Answers an API call, metered per call.
///
/// # Errors
/// Denied unless the active product meters `api_calls`.
#[metered(api_calls)]
pub fn api_call(request: &str) -> Result<usize, AppError> {
    Ok(request.len())
}

/// A feature every product has, free ones included.
///
/// # Errors
/// Denied until start-up verification.
#[entitled("basic")]
pub fn basic() -> Result<&'static str, AppError> {
    Ok("basic")
}

/// Work for one licensed seat: the contract product's `Seats` entitlement
/// grants it.
///
/// # Errors
/// Denied unless the license consumption this process holds allowed a seat.
#[entitled("seat")]
pub fn seat_work() -> Result<&'static str, AppError> {
    Ok("seat")
}

/// Scans `gigabytes`, drawing them from the contract's `Scans` balance
/// (drawdown).
///
/// # Errors
/// When marketgate denies the draw.
pub fn scan(gigabytes: u64) -> Result<u64, AppError> {
    marketgate::draw!("Scans", gigabytes)?;
    Ok(gigabytes)
}

/// Takes one floating `Jobs` unit for as long as the guard lives.
///
/// # Errors
/// When marketgate denies the checkout (e.g. the pool is exhausted).
pub async fn start_job() -> Result<marketgate::Units, Denied> {
    marketgate::checkout!("Jobs", 1).await
}
