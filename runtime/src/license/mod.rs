//! Contract products: the License Manager consumption a process holds, and
//! the features its allowed entitlements unlock.
//!
//! A `PROVISIONAL` checkout holds its seat for 60 minutes and is checked back
//! in automatically after that; AWS recommends re-checking entitlements
//! every 15 minutes
//! (<https://docs.aws.amazon.com/marketplace/latest/userguide/container-license-manager-integration.html>).

mod consumption;
mod lease;

use std::time::Duration;

pub(crate) use consumption::{Consumption, features_for};
pub(crate) use lease::{Schedule, check_in, maintain};

/// Default interval between license re-checks (AWS recommends 15 minutes).
pub(crate) const LICENSE_CHECK: Duration = Duration::from_mins(15);
/// Default interval between consumption extensions: half the 60-minute TTL.
pub(crate) const LICENSE_EXTEND: Duration = Duration::from_mins(30);
/// Longest allowed extension interval: a consumption must never lapse while
/// the process runs (that would free its seat for another container).
pub(crate) const LICENSE_EXTEND_MAX: Duration = Duration::from_mins(45);
