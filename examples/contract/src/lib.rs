//! A contract product: the license's entitlements decide the features; the
//! runtime holds one seat while the process runs and returns it at exit.

use marketgate::{Denied, entitled};

/// The dashboard: every valid license includes it.
///
/// # Errors
/// Without a license.
#[entitled("dashboard")]
pub fn dashboard() -> Result<&'static str, Denied> {
    Ok("dashboard")
}

/// Single sign-on: the `ProEdition` entitlement.
///
/// # Errors
/// When the license lacks `ProEdition`.
#[entitled("sso")]
pub fn sso_login(user: &str) -> Result<String, Denied> {
    Ok(format!("{user} signed in"))
}
