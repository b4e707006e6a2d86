//! An hourly-priced product: AWS meters running tasks after `RegisterUsage`,
//! so the code only gates its paid features.

use marketgate::{Denied, entitled};

/// A monthly report (paid feature `reports`).
///
/// # Errors
/// When the running product does not grant `reports`.
#[entitled("reports")]
pub fn monthly_report(month: &str) -> Result<String, Denied> {
    Ok(format!("report for {month}"))
}

/// CSV export (paid feature `export`).
///
/// # Errors
/// When the running product does not grant `export`.
#[entitled("export")]
pub fn export_csv(rows: usize) -> Result<String, Denied> {
    Ok(format!("{rows} rows exported"))
}
