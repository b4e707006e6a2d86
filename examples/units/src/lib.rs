//! A contract product sold by counted units. Each of AWS Marketplace's
//! contract license models, as seller code uses it:
//!
//! - what the buyer bought: [`provisioned_users`] reads the `Users` quantity;
//! - floating: [`run_job`] holds one `Jobs` unit while the job runs;
//! - drawdown: [`scan`] draws the scanned gigabytes from `Scans` for good.

use marketgate::{DenialReason, Denied, entitled};

/// How many user accounts to provision: what the buyer bought of `Users`.
///
/// # Errors
/// Before start-up verification, or when the license has no `Users`.
pub fn provisioned_users() -> Result<u64, Denied> {
    let users = marketgate::entitlement!("Users")?;
    Ok(users.max_count.unwrap_or(0))
}

/// What a job reports when it could not run.
#[derive(Debug)]
pub enum JobError {
    /// Every `Jobs` unit is in use by other jobs or tasks: try again later.
    TryLater,
    /// Anything else marketgate refused.
    Denied(Denied),
}

/// Runs a job while holding one floating `Jobs` unit; the unit goes back to
/// the buyer's pool when the job ends.
///
/// # Errors
/// [`JobError::TryLater`] when every unit the buyer bought is in use.
pub async fn run_job(name: &str, work: std::time::Duration) -> Result<String, JobError> {
    let unit = marketgate::checkout!("Jobs", 1)
        .await
        .map_err(|denied| match denied.reason() {
            DenialReason::Exhausted { .. } | DenialReason::Unavailable { .. } => JobError::TryLater,
            _ => JobError::Denied(denied),
        })?;
    tokio::time::sleep(work).await;
    drop(unit);
    Ok(format!("job {name} done"))
}

/// Scans `gigabytes` of data, drawing them from the buyer's `Scans`
/// balance. Counting is as cheap as a `#[metered]` call; the runtime draws
/// the counted gigabytes in batches.
///
/// # Errors
/// When the balance is used up (`DenialReason::Exhausted`).
pub fn scan(gigabytes: u64) -> Result<u64, Denied> {
    marketgate::draw!("Scans", gigabytes)?;
    Ok(gigabytes)
}

/// The reports page: every valid contract includes it.
///
/// # Errors
/// Without a license.
#[entitled("reports")]
pub fn reports() -> Result<&'static str, Denied> {
    Ok("reports")
}
