//! One image behind two listings. The deployment's
//! `MARKETGATE_PRODUCT_CODE` picks the listing; the free one unlocks only
//! features some free product grants, whatever the buyer's environment says.

use marketgate::{Denied, entitled};

/// Free in both tiers.
///
/// # Errors
/// Before verification.
#[entitled("search")]
pub fn search(query: &str) -> Result<usize, Denied> {
    Ok(query.len())
}

/// Paid tier only.
///
/// # Errors
/// Under the free listing.
#[entitled("export", "sso")]
pub fn export_to_sso_share(report: &str) -> Result<String, Denied> {
    Ok(format!("{report} shared"))
}
